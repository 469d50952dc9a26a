//! Holding up under abuse: slow and idle connections, metrics cardinality, login throttling,
//! the trusted proxy, the same-origin rule, response headers, and the smaller checks. Real
//! PostgreSQL, a real instance on loopback, no mocks; no test compares wall-clock times.

mod common;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use auth_sessions::SessionPolicy;
use common::{PASSWORD, SECRET, TestDb, http, settings, start};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn s(value: &Value, key: &str) -> String {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {value}"))
        .to_owned()
}

/// A client whose connections leave from `source` (any address of 127.0.0.0/8 is loopback).
fn http_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .local_address(source.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

fn host_port(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// A TCP connection to `base` leaving from `source` (an address of 127.0.0.0/8).
async fn connect_from(source: &str, base: &str) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::new(source.parse().unwrap(), 0))?;
    socket.connect(host_port(base).parse().unwrap()).await
}

/// Whether the server has closed `stream` within `wait`: a read returns end-of-file or an error.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A response (e.g. 408) before the close: keep reading until the close.
            Ok(Ok(_)) => continue,
        }
    }
}

async fn login_status(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(format!("{base}/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

// ---------------------------------------------------------------- connections

/// A client sending one header line a second never finishes its request: the server closes the
/// connection once the header-read bound is over, long before the client gives up (60 lines).
#[tokio::test]
async fn slow_header_connection_is_closed() {
    let db = TestDb::new().await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let mut stream = TcpStream::connect(host_port(&base)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let mut sent = 0;
    let mut closed = false;
    while sent < 60 {
        if closed_within(&mut stream, Duration::from_secs(1)).await {
            closed = true;
            break;
        }
        if stream
            .write_all(format!("X-Slow-{sent}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        sent += 1;
    }
    assert!(
        closed,
        "a connection sending one header line a second was still open after {sent} lines"
    );
    db.drop().await;
}

/// Thousands of connections that send nothing: a login still succeeds meanwhile, and the server
/// closes the idle connections (it never waits for a request head forever).
#[tokio::test]
async fn idle_connection_thousands_do_not_stop_a_login_and_are_closed() {
    let db = TestDb::new().await;
    db.user("idle@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    // From six hosts, 500 each (one host alone is held to its share, see below).
    let mut idle = Vec::new();
    for i in 0..3000 {
        let source = format!("127.0.1.{}", 1 + i % 6);
        idle.push(connect_from(&source, &base).await.unwrap());
    }
    let response = login_status(&http(), &base, "idle@example.test", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    // After one request, a kept-alive connection that sends nothing more is closed too.
    let mut kept = TcpStream::connect(host_port(&base)).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 1024];
    let read = kept.read(&mut buffer).await.unwrap();
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut idle[0], Duration::from_secs(60)).await,
        "an idle connection was still open after 60 s"
    );
    assert!(
        closed_within(&mut kept, Duration::from_secs(60)).await,
        "an idle kept-alive connection was still open after 60 s"
    );
    drop(idle);
    db.drop().await;
}

// ---------------------------------------------------------------- metrics

/// Made-up methods are labelled `other`, unmatched paths `unmatched`, and `/metrics` is not on
/// the public listener.
#[tokio::test]
async fn metrics_label_a_fixed_method_set_and_matched_routes_only_off_the_public_api() {
    let db = TestDb::new().await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let client = http();
    for method in ["BREWCOFFEE", "XMADEUP1", "XMADEUP2"] {
        client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{base}/login"),
            )
            .send()
            .await
            .unwrap();
    }
    let probe = uuid::Uuid::new_v4().to_string();
    client
        .get(format!("{base}/no-such-path/{probe}"))
        .send()
        .await
        .unwrap();
    let public = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(
        public.status(),
        StatusCode::NOT_FOUND,
        "/metrics answered on the public listener"
    );
    let text = auth_service::telemetry::prometheus().render();
    for leaked in ["BREWCOFFEE", "XMADEUP1", "XMADEUP2", probe.as_str()] {
        assert!(!text.contains(leaked), "{leaked} became a label:\n{text}");
    }
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(text.contains("route=\"unmatched\""), "{text}");
    db.drop().await;
}

// ---------------------------------------------------------------- throttling

/// Guesses at one account from many addresses (one each) are throttled per account, every
/// 429 says when to come back, and the owner, signed in from a network of theirs, still gets in.
#[tokio::test]
async fn throttling_counts_guesses_at_one_account_from_many_addresses() {
    let db = TestDb::new().await;
    db.user("target@example.test").await;
    let mut limits = settings();
    limits.account_per_minute = NonZeroU32::new(10).unwrap();
    limits.account_burst = NonZeroU32::new(20).unwrap();
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), limits).await;
    // The owner has a session from 127.0.0.1.
    let owner = login_status(&http(), &base, "target@example.test", PASSWORD).await;
    assert_eq!(owner.status(), StatusCode::OK);
    let mut limited = 0;
    for host in 2..62 {
        let response = login_status(
            &http_from(&format!("127.0.0.{host}")),
            &base,
            "target@example.test",
            "guess",
        )
        .await;
        match response.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                let retry: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry >= 1);
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        limited > 0,
        "60 guesses from 60 addresses were never throttled"
    );
    let owner = login_status(&http(), &base, "target@example.test", PASSWORD).await;
    assert_eq!(owner.status(), StatusCode::OK, "the owner was locked out");
    db.drop().await;
}

/// Past the per-address quota, the right password from that address (a shared NAT) still gets
/// in for an account signed in from there, and a 429 (of the per-address quota) carries
/// `Retry-After`.
#[tokio::test]
async fn throttling_never_locks_the_right_password_out_of_a_busy_address() {
    let db = TestDb::new().await;
    db.user("nat@example.test").await;
    db.user("other@example.test").await;
    let mut tight = settings();
    tight.login_per_minute = std::num::NonZeroU32::new(1).unwrap();
    tight.login_burst = std::num::NonZeroU32::new(2).unwrap();
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), tight).await;
    let client = http();
    // Signed in from this address earlier (a phone on the same network).
    let earlier = login_status(&client, &base, "nat@example.test", PASSWORD).await;
    assert_eq!(earlier.status(), StatusCode::OK);
    let mut saw_429 = false;
    for _ in 0..4 {
        let response = login_status(&client, &base, "other@example.test", "guess").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            saw_429 = true;
            assert!(response.headers().contains_key("retry-after"));
        }
    }
    assert!(saw_429);
    let response = login_status(&client, &base, "nat@example.test", PASSWORD).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the right password from a throttled address was refused"
    );
    db.drop().await;
}

// ---------------------------------------------------------------- trusted proxy

/// A direct client (not a configured proxy) cannot choose its address with the header.
#[tokio::test]
async fn proxy_header_from_a_peer_that_is_no_proxy_is_ignored() {
    let db = TestDb::new().await;
    db.user("px@example.test").await;
    let mut proxied = settings();
    proxied.trusted_proxy_header = Some("x-forwarded-for".parse().unwrap());
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), proxied).await;
    let response = http_from("127.0.0.7")
        .post(format!("{base}/login"))
        .header("x-forwarded-for", "8.8.8.8")
        .json(&json!({"email": "px@example.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(db.stored_address().await, "127.0.0.7");
    db.drop().await;
}

// ---------------------------------------------------------------- same origin (CSRF)

async fn page_cookie(base: &str, email: &str) -> String {
    let response = http()
        .post(format!("{base}/devices/login"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("email", email), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| {
            value
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned()
        })
        .find(|cookie| cookie.starts_with("access_token="))
        .unwrap()
}

/// A same-site but cross-origin POST (a sibling subdomain) changes nothing; nor does a page
/// login without Fetch Metadata or Origin (login CSRF); a request from the own origin passes.
#[tokio::test]
async fn origin_other_than_the_own_is_refused_for_state_changes() {
    let db = TestDb::new().await;
    db.user("or@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let cookie = page_cookie(&base, "or@example.test").await;
    let _phone = common_login(&base, "or@example.test").await;
    let before = db.snapshot().await;
    let response = http()
        .post(format!("{base}/devices/revoke-others"))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "same-site")
        .header("origin", "https://evil.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = http()
        .post(format!("{base}/devices/login"))
        .form(&[("email", "or@example.test"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "a form without Origin or Fetch Metadata signed the browser in"
    );
    // A JSON call relying on a cookie, from another origin: refused too.
    let response = http()
        .post(format!("{base}/refresh"))
        .header("origin", "https://evil.example.test")
        .header("cookie", "refresh_token=whatever")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(db.snapshot().await, before);
    // The own origin (here the Host's, no public origin being configured): done.
    let response = http()
        .post(format!("{base}/devices/revoke-others"))
        .header("cookie", &cookie)
        .header("origin", &base)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    db.drop().await;
}

async fn common_login(base: &str, email: &str) -> Value {
    let response = login_status(&http(), base, email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

// ---------------------------------------------------------------- headers

/// Token responses and the session list are `no-store`; every response has `nosniff` and a
/// `Referrer-Policy`; too many header lines get the JSON error body.
#[tokio::test]
async fn no_store_on_tokens_and_security_headers_everywhere() {
    let db = TestDb::new().await;
    db.user("hd@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let login = login_status(&http(), &base, "hd@example.test", PASSWORD).await;
    assert_eq!(login.headers()["cache-control"], "no-store");
    let session: Value = login.json().await.unwrap();
    let refresh = http()
        .post(format!("{base}/refresh"))
        .json(&json!({"refresh_token": s(&session, "refresh_token")}))
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), StatusCode::OK);
    assert_eq!(refresh.headers()["cache-control"], "no-store");
    let rotated: Value = refresh.json().await.unwrap();
    let list = http()
        .get(format!("{base}/sessions"))
        .bearer_auth(s(&rotated, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(list.headers()["cache-control"], "no-store");
    for path in ["/healthz", "/no-such-endpoint", "/devices/login"] {
        let response = http().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(
            response.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
        assert!(response.headers().contains_key("referrer-policy"), "{path}");
    }
    // 200 header lines: hyper refuses them with 431, with the documented JSON body.
    let mut stream = TcpStream::connect(host_port(&base)).await.unwrap();
    let mut request = String::from("GET /healthz HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..200 {
        request.push_str(&format!("X-Many-{i}: y\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {answer}"));
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{body}"
    );
    db.drop().await;
}

// ---------------------------------------------------------------- smaller

#[test]
fn passwords_are_8_to_256_characters_without_composition_rules() {
    use auth_service::users::check_password;
    assert!(check_password("1234567").is_err(), "7 characters accepted");
    assert!(
        check_password("abcdefgh").is_ok(),
        "8 lower-case letters refused"
    );
    assert!(check_password(&"é".repeat(256)).is_ok());
    assert!(check_password(&"a".repeat(257)).is_err());
}

fn forge(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Tokens not yet valid (`nbf`, `iat` in the future) or without the audience are refused; the
/// scheme `bearer` is accepted in any case.
#[tokio::test]
async fn access_tokens_check_nbf_iat_and_aud_and_any_case_of_bearer() {
    let db = TestDb::new().await;
    db.user("jw@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let session = common_login(&base, "jw@example.test").await;
    let access = s(&session, "access_token");
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = http()
            .get(format!("{base}/me"))
            .header("authorization", format!("{scheme} {access}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
    let now = jsonwebtoken::get_current_timestamp();
    let (sub, sid) = (s(&session, "user_id"), s(&session, "session_id"));
    let base_claims =
        json!({"iss": "auth-service", "sub": sub, "sid": sid, "iat": now, "exp": now + 300});
    let mut future_nbf = base_claims.clone();
    future_nbf["nbf"] = json!(now + 3600);
    future_nbf["aud"] = json!("auth-service");
    let mut future_iat = base_claims.clone();
    future_iat["iat"] = json!(now + 3600);
    future_iat["aud"] = json!("auth-service");
    let no_aud = base_claims.clone();
    let mut other_aud = base_claims.clone();
    other_aud["aud"] = json!("another-service");
    for (what, claims) in [
        ("nbf in the future", future_nbf),
        ("iat in the future", future_iat),
        ("no aud", no_aud),
        ("another aud", other_aud),
    ] {
        let response = http()
            .get(format!("{base}/me"))
            .bearer_auth(forge(claims))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{what} accepted"
        );
    }
    db.drop().await;
}

fn clears_refresh_cookie(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|value| {
            let value = value.to_str().unwrap();
            value.starts_with("refresh_token=")
                && value.contains("Path=/refresh")
                && (value.contains("Max-Age=0") || value.contains("1970"))
        })
}

/// Logging out (JSON and page) tells the browser to drop the refresh cookie, which is scoped to
/// `/refresh` and so never sent to the logout paths.
#[tokio::test]
async fn logout_clears_the_refresh_cookie_too() {
    let db = TestDb::new().await;
    db.user("lo@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let session = common_login(&base, "lo@example.test").await;
    let response = http()
        .post(format!("{base}/logout"))
        .bearer_auth(s(&session, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(clears_refresh_cookie(&response), "{:?}", response.headers());
    let cookie = page_cookie(&base, "lo@example.test").await;
    let response = http()
        .post(format!("{base}/devices/logout"))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("confirm=yes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(clears_refresh_cookie(&response), "{:?}", response.headers());
    db.drop().await;
}

#[test]
fn serve_help_warns_about_the_secret_flag_and_offers_a_file() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_auth-service"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--jwt-secret-file"), "{help}");
    assert!(help.contains("process list"), "{help}");
}

// ---------------------------------------------------------------- tests of the new settings

/// At the connection cap, a new connection is not served until an open one closes.
#[tokio::test]
async fn idle_connection_cap_holds_new_connections_until_one_closes() {
    let db = TestDb::new().await;
    let mut capped = settings();
    capped.connections.max_connections = 20;
    capped.connections.header_read_timeout = Duration::from_secs(120);
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), capped).await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(host_port(&base)).await.unwrap());
    }
    // Accepted by the kernel, but not served: no answer while all 20 slots are held.
    let mut waiting = TcpStream::connect(host_port(&base)).await.unwrap();
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 1024];
    assert!(
        tokio::time::timeout(Duration::from_secs(1), waiting.read(&mut buffer))
            .await
            .is_err(),
        "a connection beyond the cap was served"
    );
    // One idle connection goes: the waiting one is served.
    drop(idle.pop());
    let read = tokio::time::timeout(Duration::from_secs(30), waiting.read(&mut buffer))
        .await
        .expect("served once a slot was free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));
    drop(idle);
    db.drop().await;
}

/// Past the per-account-and-address burst, attempts wait their turn instead of being refused:
/// a wrong password is answered 401 after it, the right one gets in after it; only a queue
/// longer than the longest delay is refused (429 with `Retry-After`).
#[tokio::test]
async fn throttling_slows_guesses_per_account_and_address_and_the_right_password_gets_in() {
    let db = TestDb::new().await;
    db.user("slowed@example.test").await;
    let mut limits = settings();
    limits.pair_per_minute = NonZeroU32::new(600).unwrap();
    limits.pair_burst = NonZeroU32::new(2).unwrap();
    let (base, state) = start(db.pool.clone(), SessionPolicy::default(), limits).await;
    let client = http();
    for _ in 0..2 {
        let response = login_status(&client, &base, "slowed@example.test", "guess").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(state.delayed_logins(), 0, "within the burst: no wait");
    let response = login_status(&client, &base, "slowed@example.test", "guess").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        state.delayed_logins(),
        1,
        "past the burst: the guess waited"
    );
    let response = login_status(&client, &base, "slowed@example.test", PASSWORD).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the right password got in"
    );
    assert_eq!(state.delayed_logins(), 2, "after its wait");

    let mut strict = settings();
    strict.pair_per_minute = NonZeroU32::new(1).unwrap();
    strict.pair_burst = NonZeroU32::new(1).unwrap();
    strict.login_max_delay = Duration::from_secs(1);
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), strict).await;
    let response = login_status(&client, &base, "slowed@example.test", "guess").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = login_status(&client, &base, "slowed@example.test", "guess").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((50..=60).contains(&retry), "Retry-After {retry}");
    db.drop().await;
}

/// Behind a chain of proxies, the client is the right-most address that is not a trusted proxy.
#[tokio::test]
async fn proxy_chain_gives_the_right_most_address_not_a_trusted_proxy() {
    let db = TestDb::new().await;
    db.user("chain@example.test").await;
    let mut proxied = settings();
    proxied.trusted_proxy_header = Some("x-forwarded-for".parse().unwrap());
    proxied.trusted_proxies = vec![
        "127.0.0.1/32".parse().unwrap(),
        "10.0.0.0/8".parse().unwrap(),
    ];
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), proxied).await;
    let response = http_from("127.0.0.1")
        .post(format!("{base}/login"))
        .header("x-forwarded-for", "8.8.8.8, 203.0.113.9, 10.1.1.1")
        .json(&json!({"email": "chain@example.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(db.stored_address().await, "203.0.113.9");
    db.drop().await;
}

/// With a public origin configured, it is the only origin accepted, and an https one turns on
/// `Strict-Transport-Security`.
#[tokio::test]
async fn origin_public_is_the_only_one_accepted_and_https_brings_hsts() {
    let db = TestDb::new().await;
    db.user("po@example.test").await;
    let mut public = settings();
    public.public_origin = Some("https://auth.example.test".into());
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), public).await;
    let cookie = page_cookie(&base, "po@example.test").await;
    let response = http()
        .post(format!("{base}/devices/revoke-others"))
        .header("cookie", &cookie)
        .header("origin", &base)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "the Host's origin is not the public one"
    );
    let response = http()
        .post(format!("{base}/devices/revoke-others"))
        .header("cookie", &cookie)
        .header("origin", "https://auth.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    // A Bearer call without cookie or Origin (not a browser) passes.
    let session = common_login(&base, "po@example.test").await;
    let response = http()
        .post(format!("{base}/logout"))
        .bearer_auth(s(&session, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = http().get(format!("{base}/healthz")).send().await.unwrap();
    assert!(
        response.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age=")
    );
    db.drop().await;
}

/// IPv6 addresses of one /64 are one network: rotating through them does not reset the
/// per-network limit; another /64 has its own.
#[tokio::test]
async fn throttling_counts_an_ipv6_64_as_one_network() {
    let db = TestDb::new().await;
    let mut limits = settings();
    limits.login_per_minute = NonZeroU32::new(1).unwrap();
    limits.login_burst = NonZeroU32::new(2).unwrap();
    limits.trusted_proxy_header = Some("x-forwarded-for".parse().unwrap());
    limits.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), limits).await;
    let attempt = |client: &'static str, email: &'static str| {
        let base = base.clone();
        async move {
            http()
                .post(format!("{base}/login"))
                .header("x-forwarded-for", client)
                .json(&json!({"email": email, "password": "guess"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        attempt("2001:db8:1:2::1", "a@example.test").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        attempt("2001:db8:1:2::2", "b@example.test").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        attempt("2001:db8:1:2:ffff::3", "c@example.test").await,
        StatusCode::TOO_MANY_REQUESTS,
        "a third address of the same /64 was not counted with the others"
    );
    assert_eq!(
        attempt("2001:db8:1:3::1", "d@example.test").await,
        StatusCode::UNAUTHORIZED
    );
    db.drop().await;
}

/// One address holds at most its share of connections: past it, its new connections are
/// closed at once, while another address is still served.
#[tokio::test]
async fn idle_connection_share_of_one_address_is_capped() {
    let db = TestDb::new().await;
    let mut capped = settings();
    capped.connections.max_per_address = 5;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), capped).await;
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(connect_from("127.0.0.2", &base).await.unwrap());
    }
    // Let the server accept those five before the sixth.
    let response = http_from("127.0.0.3")
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut sixth = connect_from("127.0.0.2", &base).await.unwrap();
    let _ = sixth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), sixth.read_to_end(&mut answer)).await;
    assert!(
        answer.is_empty(),
        "a sixth connection of one address was served: {}",
        String::from_utf8_lossy(&answer)
    );
    let response = http_from("127.0.0.3")
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "another address is served"
    );
    drop(idle);
    db.drop().await;
}
