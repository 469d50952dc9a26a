//! The hand-written baseline: tokio-postgres on one connection per caller, the repository's
//! own SQL (read from `queries/sessions.sql`) prepared once, the same parameters bound and the
//! same fields decoded.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use auth_sessions::{RefreshToken, RotationKey, SessionKey};
use tokio_postgres::{Client, Config};
use uuid::Uuid;

use crate::BoxError;
use crate::callers::{Chain, Revocations, Shared, presented};
use crate::data::{bench_key, connect};

/// The default idle timeout of `SessionPolicy`, in seconds: the hand-written queries pass the
/// same value.
pub(crate) const IDLE_SECONDS: i64 = 14 * 24 * 60 * 60;

/// The default rotation grace window of `SessionPolicy`, in seconds.
const GRACE_SECONDS: i64 = 10;

/// The default per-user cap of `SessionPolicy`.
const CAP: i32 = 10;

/// One query of `queries/sessions.sql` with its named parameters turned into `$n` in order of
/// first appearance (as the generated code binds them), and the names in that order.
fn query(name: &str) -> (String, Vec<String>) {
    let file =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("queries/sessions.sql"))
            .expect("queries/sessions.sql");
    let start = file
        .find(&format!("--! {name} "))
        .or_else(|| file.find(&format!("--! {name}\n")))
        .expect("query");
    let body: Vec<&str> = file[start..]
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("--"))
        .collect();
    let body = body.join("\n");
    let text = &body[..body.find(';').expect("query end")];
    let (mut sql, mut names) = (String::new(), Vec::<String>::new());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts_param = chars[i] == ':'
            && (i == 0 || chars[i - 1] != ':')
            && chars.get(i + 1).is_some_and(|c| c.is_ascii_lowercase());
        if starts_param {
            let mut j = i + 1;
            while j < chars.len()
                && (chars[j].is_ascii_lowercase() || chars[j] == '_' || chars[j].is_ascii_digit())
            {
                j += 1;
            }
            let param: String = chars[i + 1..j].iter().collect();
            let index = names.iter().position(|n| *n == param).unwrap_or_else(|| {
                names.push(param.clone());
                names.len() - 1
            });
            sql.push_str(&format!("${}", index + 1));
            i = j;
        } else {
            sql.push(chars[i]);
            i += 1;
        }
    }
    (sql, names)
}

/// A query's SQL, checking that its parameters are the expected ones in the expected order.
fn query_with(name: &str, params: &[&str]) -> String {
    let (sql, names) = query(name);
    assert_eq!(names, params, "parameters of {name}");
    sql
}

/// The statements the hand-written side prepares: the repository's queries, each checked for
/// the parameters it binds, in order.
#[derive(Clone, Copy)]
pub(crate) enum Query {
    Lookup,
    Create,
    Rotate,
    Activity,
    List,
    Count,
    Revoke,
}

impl Query {
    pub(crate) fn sql(self) -> String {
        let (name, params): (&str, &[&str]) = match self {
            Query::Lookup => (
                "get_session_by_token",
                &["user_id", "id", "refresh_token_hash", "idle_seconds"],
            ),
            Query::Create => (
                "create_session",
                &[
                    "user_id",
                    "id",
                    "generation",
                    "refresh_token_hash",
                    "device_info",
                    "ip_address",
                    "user_agent",
                    "ttl_seconds",
                    "idle_seconds",
                    "max_sessions",
                    "evict",
                ],
            ),
            Query::Rotate => (
                "rotate_session",
                &[
                    "user_id",
                    "id",
                    "generation",
                    "presented_hash",
                    "successor_hash",
                    "idle_seconds",
                    "grace_seconds",
                ],
            ),
            Query::Activity => (
                "update_session_activity",
                &[
                    "user_id",
                    "id",
                    "idle_seconds",
                    "ip_address",
                    "min_interval_seconds",
                ],
            ),
            Query::List => ("get_user_sessions", &["user_id", "idle_seconds"]),
            Query::Count => ("count_user_sessions", &["user_id", "idle_seconds"]),
            Query::Revoke => ("revoke_session", &["user_id", "id"]),
        };
        query_with(name, params)
    }
}

/// One caller of a hand-written operation: its own connection and prepared statement.
pub(crate) struct Hand {
    pub(crate) client: Client,
    pub(crate) statement: tokio_postgres::Statement,
}

impl Hand {
    /// One caller, on a connection of its own with `query` prepared.
    pub(crate) async fn connect(config: &Config, query: Query) -> Result<Arc<Hand>, BoxError> {
        let client = connect(config).await?;
        let statement = client.prepare(&query.sql()).await?;
        Ok(Arc::new(Hand { client, statement }))
    }

    /// `callers` callers, each on a connection of its own.
    pub(crate) async fn callers(
        config: &Config,
        query: Query,
        callers: usize,
    ) -> Result<Vec<Arc<Hand>>, BoxError> {
        let mut hands = Vec::with_capacity(callers);
        for _ in 0..callers {
            hands.push(Hand::connect(config, query).await?);
        }
        Ok(hands)
    }
}

/// What a hand-written lookup decodes: the fields of `auth_sessions::Session`.
#[allow(dead_code)] // Read only through black_box.
struct HandSession {
    id: Uuid,
    user_id: Uuid,
    device_info: Option<String>,
    ip_address: Option<IpAddr>,
    user_agent: Option<String>,
    last_active_at: chrono::DateTime<chrono::Utc>,
    expires_at: chrono::DateTime<chrono::Utc>,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl HandSession {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            id: row.get(0),
            user_id: row.get(1),
            device_info: row.get(2),
            ip_address: row.get(3),
            user_agent: row.get(4),
            last_active_at: row.get(5),
            expires_at: row.get(6),
            created_at: row.get(7),
        }
    }
}

/// What a hand-written list decodes per row: the fields of `auth_sessions::Device`.
#[allow(dead_code)] // Read only through black_box.
struct HandDevice {
    id: Uuid,
    device_info: Option<String>,
    ip_address: Option<IpAddr>,
    last_active_at: chrono::DateTime<chrono::Utc>,
    expires_at: chrono::DateTime<chrono::Utc>,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl HandDevice {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            id: row.get(0),
            device_info: row.get(1),
            ip_address: row.get(2),
            last_active_at: row.get(3),
            expires_at: row.get(4),
            created_at: row.get(5),
        }
    }
}

/// A hand-written lookup: parse the presented text and hash it (as `SessionRepo` does), then
/// the prepared statement, decoding the fields `SessionRepo` returns.
pub(crate) async fn find(client: &Client, statement: &tokio_postgres::Statement, presented: &str) {
    let token = RefreshToken::parse(presented).expect("well-formed token");
    let hash = token.hash();
    let row = client
        .query_opt(
            statement,
            &[
                &token.user_id(),
                &token.session_id(),
                &hash.as_str(),
                &Some(IDLE_SECONDS),
            ],
        )
        .await
        .expect("lookup")
        .expect("found");
    std::hint::black_box(HandSession::from_row(&row));
}

/// [`find`] of a token picked by `seed`, on the caller's own connection.
pub(crate) async fn lookup(h: Arc<Hand>, tokens: Arc<Vec<RefreshToken>>, seed: u64) {
    find(&h.client, &h.statement, presented(&tokens, seed)).await;
}

/// Hand-written `create`: `auth.create_session` with the parameters the repository binds.
pub(crate) async fn create(h: Arc<Hand>, user: Uuid) {
    let token = bench_key().mint(user).expect("token");
    let hash = token.hash();
    let device: Option<&str> = Some("bench device");
    let ip: Option<IpAddr> = Some("192.0.2.1".parse().expect("ip"));
    let agent: Option<&str> = Some("Bench/1.0");
    let (generation, ttl, cap, evict) = (0i32, 86_400i64, Some(CAP), true);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 11] = [
        &user,
        &token.session_id(),
        &generation,
        &hash.as_str(),
        &device,
        &ip,
        &agent,
        &ttl,
        &Some(IDLE_SECONDS),
        &cap,
        &evict,
    ];
    h.client
        .query_one(&h.statement, &params)
        .await
        .expect("create");
}

/// Hand-written `rotate` of the chain's next token, with the successor the repository derives.
pub(crate) async fn rotate(h: Arc<Hand>, chain: Shared<Chain>, key: Arc<RotationKey>) {
    let (i, current) = Chain::take(&chain);
    let token = RefreshToken::parse(&current).expect("token");
    let next = key.successor(&token).expect("successor");
    let generation = i32::try_from(token.generation()).expect("generation");
    let row = h
        .client
        .query_opt(
            &h.statement,
            &[
                &token.user_id(),
                &token.session_id(),
                &generation,
                &token.hash().as_str(),
                &next.hash().as_str(),
                &Some(IDLE_SECONDS),
                &GRACE_SECONDS,
            ],
        )
        .await
        .expect("rotate")
        .expect("row");
    assert_eq!(row.get::<_, &str>(0), "rotated");
    Chain::put(&chain, i, next.expose_secret().to_owned());
}

/// Hand-written `record_activity` on a live session, written unless it was active in the last
/// `min_interval_seconds`.
pub(crate) async fn activity(h: Arc<Hand>, key: SessionKey, min_interval_seconds: i64) {
    let ip: Option<IpAddr> = None;
    h.client
        .query_opt(
            &h.statement,
            &[
                &key.user_id,
                &key.session_id,
                &Some(IDLE_SECONDS),
                &ip,
                &min_interval_seconds,
            ],
        )
        .await
        .expect("activity")
        .expect("live");
}

/// Hand-written `list_devices`, each row decoded as `SessionRepo` decodes it.
pub(crate) async fn list(h: Arc<Hand>, user: Uuid) {
    let rows = h
        .client
        .query(&h.statement, &[&user, &Some(IDLE_SECONDS)])
        .await
        .expect("list");
    for row in &rows {
        std::hint::black_box(HandDevice::from_row(row));
    }
}

/// Hand-written `count_live`.
pub(crate) async fn count(h: Arc<Hand>, user: Uuid) {
    let rows = h
        .client
        .query(&h.statement, &[&user, &Some(IDLE_SECONDS)])
        .await
        .expect("count");
    std::hint::black_box(rows[0].get::<_, i64>(0));
}

/// Hand-written `revoke` of the next live session of `list`.
pub(crate) async fn revoke(h: Arc<Hand>, list: Revocations) {
    let key = list.next();
    h.client
        .query_opt(&h.statement, &[&key.user_id, &key.session_id])
        .await
        .expect("revoke")
        .expect("revoked");
}
