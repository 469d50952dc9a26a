//! Live sessions in memory, with every end of a session pushed by the database.
//!
//! [`LiveSessions`] answers "is this session live?" from memory for the sessions this instance
//! met recently, and learns of every session that ends (revoked, evicted, deleted) from a
//! `NOTIFY` the database raises in the transaction that ends it (schema/015). A listening
//! connection per database node hears them; a heartbeat sent through that connection proves
//! every ending committed before it was heard, and memory answers only within
//! [`LiveSettings::staleness_bound`] of the last heartbeat heard. See the README, "Live
//! sessions".

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::DatabaseError;
use crate::{Error, InputProblem, SessionKey, SessionRepo};

/// The channel schema/015 raises `NOTIFY` on when a session ends: payload `<user_id> <id>`.
pub const ENDED_CHANNEL: &str = "auth_sessions_ended";

/// Most entries a [`LiveSessions`] may keep ([`LiveSettings::capacity`]).
pub const MAX_LIVE_CAPACITY: usize = 10_000_000;

/// Longest [`LiveSettings::staleness_bound`]: one hour.
pub const MAX_STALENESS_BOUND: Duration = Duration::from_secs(60 * 60);

/// Largest [`LiveSettings::max_batch`].
pub const MAX_ACTIVITY_BATCH: usize = 10_000;

/// How [`SessionRepo::live_sessions`] keeps sessions in memory. Build with
/// [`LiveSettings::default`] and the setters; [`SessionRepo::live_sessions`] checks the ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveSettings {
    /// Most sessions kept (live or known ended); the least recently checked go first.
    /// Default 100 000 (a few hundred bytes each). 1 to [`MAX_LIVE_CAPACITY`].
    pub capacity: usize,
    /// The promise: a session that ended at time T is never reported live from memory after
    /// T + this bound, whatever fails (the listening connection, the server, the network).
    /// Past it without a heartbeat heard, every check reads the database. Default 5 s; 10 ms
    /// to [`MAX_STALENESS_BOUND`].
    pub staleness_bound: Duration,
    /// How often each listening connection sends a heartbeat. Shorter than the bound (a
    /// third of it or less keeps memory answering through a lost heartbeat or two). Default
    /// 1 s.
    pub heartbeat_interval: Duration,
    /// How often recorded activity is written, in one statement for many sessions. Together
    /// with the policy's activity interval it must stay under the idle timeout, so a session
    /// in use on one instance never looks idle to another. Default 1 s; more than zero and,
    /// with an idle timeout, less than the idle timeout minus the activity interval.
    pub flush_interval: Duration,
    /// Most sessions per activity statement; more pending than this writes at once. Default
    /// 1000; 1 to [`MAX_ACTIVITY_BATCH`].
    pub max_batch: usize,
    /// Wait before opening a listening connection again after it failed. Default 250 ms.
    pub reconnect_backoff: Duration,
    /// Also listen on every active primary node that the database's `pg_dist_node` lists (a
    /// Citus coordinator, or a worker with the metadata): notifications raised on a worker
    /// reach only that worker's listeners. Default false (one node: the pool's server).
    pub citus_nodes: bool,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            staleness_bound: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(1),
            flush_interval: Duration::from_secs(1),
            max_batch: 1000,
            reconnect_backoff: Duration::from_millis(250),
            citus_nodes: false,
        }
    }
}

impl LiveSettings {
    /// Sets [`LiveSettings::capacity`].
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets [`LiveSettings::staleness_bound`] and, to a third of it, the heartbeat interval.
    pub fn staleness_bound(mut self, bound: Duration) -> Self {
        self.staleness_bound = bound;
        self.heartbeat_interval = bound / 3;
        self
    }

    /// Sets [`LiveSettings::heartbeat_interval`].
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Sets [`LiveSettings::flush_interval`].
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Sets [`LiveSettings::max_batch`].
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// Sets [`LiveSettings::reconnect_backoff`].
    pub fn reconnect_backoff(mut self, backoff: Duration) -> Self {
        self.reconnect_backoff = backoff;
        self
    }

    /// Sets [`LiveSettings::citus_nodes`].
    pub fn citus_nodes(mut self, citus_nodes: bool) -> Self {
        self.citus_nodes = citus_nodes;
        self
    }

    /// Checks the ranges against the repository's policy (the idle timeout and activity
    /// interval).
    fn validate(&self, policy: &crate::SessionPolicy) -> Result<(), Error> {
        let out_of_range = |field| {
            Err(Error::InvalidInput {
                field,
                problem: InputProblem::OutOfRange,
            })
        };
        if self.capacity == 0 || self.capacity > MAX_LIVE_CAPACITY {
            return out_of_range("capacity");
        }
        if self.staleness_bound < Duration::from_millis(10)
            || self.staleness_bound > MAX_STALENESS_BOUND
        {
            return out_of_range("staleness_bound");
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.staleness_bound {
            return out_of_range("heartbeat_interval");
        }
        if self.max_batch == 0 || self.max_batch > MAX_ACTIVITY_BATCH {
            return out_of_range("max_batch");
        }
        if self.reconnect_backoff > MAX_STALENESS_BOUND {
            return out_of_range("reconnect_backoff");
        }
        let flush_room = match policy.idle_timeout {
            Some(idle) => Duration::from_secs(idle.as_secs())
                .saturating_sub(Duration::from_secs(policy.activity_interval.as_secs())),
            None => MAX_STALENESS_BOUND,
        };
        if self.flush_interval.is_zero() || self.flush_interval >= flush_room {
            return out_of_range("flush_interval");
        }
        Ok(())
    }
}

/// A live session as [`LiveSessions::check`] sees it (database clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveSession {
    /// The session's user and id.
    pub key: SessionKey,
    /// Absolute expiry.
    pub expires_at: DateTime<Utc>,
    /// Last activity: the latest written to the database as this instance knows it, or
    /// recorded here and not yet written.
    pub last_active_at: DateTime<Utc>,
}

impl LiveSession {
    /// The session's user.
    pub fn user_id(&self) -> uuid::Uuid {
        self.key.user_id
    }
}

/// What a [`LiveSessions`] is doing, for health checks and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveStatus {
    /// True while checks may answer from memory: every node's listening connection had a
    /// heartbeat heard within the bound.
    pub fresh: bool,
    /// How much longer memory may answer without another heartbeat heard (zero when not
    /// fresh).
    pub fresh_for: Duration,
    /// Nodes listened on (0 until the background task found them).
    pub nodes: usize,
    /// Nodes whose listening connection is open.
    pub nodes_listening: usize,
    /// Sessions kept (live or known ended).
    pub entries: usize,
    /// Sessions with activity recorded and not yet written.
    pub pending_activity: usize,
    /// Checks answered from memory.
    pub memory_answers: u64,
    /// Checks that read the database.
    pub database_answers: u64,
    /// Session endings heard.
    pub endings_heard: u64,
    /// Heartbeats sent, over every node.
    pub heartbeats_sent: u64,
    /// Heartbeats heard back.
    pub heartbeats_heard: u64,
    /// Times memory was emptied because a listening connection was (re)opened: what was
    /// raised while it was not listening is assumed missed.
    pub clears: u64,
    /// Listening connections that failed (to open, or later).
    pub listen_failures: u64,
    /// Activity statements run.
    pub activity_batches: u64,
    /// Sessions those statements wrote.
    pub activity_written: u64,
    /// Activity records dropped because `capacity` sessions were already pending.
    pub activity_dropped: u64,
}

/// Sessions kept in memory, with every end of a session pushed by the database; from
/// [`SessionRepo::live_sessions`]. Cheap to clone: clones share one memory and one background
/// task.
///
/// The promise, with `B` the [`LiveSettings::staleness_bound`]: [`LiveSessions::check`]
/// never reports live a session that ended (revoked, evicted, deleted, expired, idle) more
/// than `B` earlier, whatever fails. Sessions that ended in a transaction that committed
/// while this instance was listening are refused as soon as the notification arrives
/// (milliseconds). Every answer from memory is given within `B` of a heartbeat that
/// went through the listening connection and was heard back: everything committed before the
/// heartbeat was sent was heard before it (the notification queue is in commit order). When
/// no heartbeat came back for `B`, every check reads the database, and a connection opened
/// again starts from an empty memory.
///
/// The background task stops with [`LiveSessions::shutdown`], which also writes the pending
/// activity, or when the last clone is dropped (pending activity is then lost).
#[derive(Clone)]
pub struct LiveSessions {
    inner: Arc<Inner>,
    /// Dropped with the last clone: stops the background task, which holds `inner` but not
    /// this.
    _owner: Arc<Owner>,
}

struct Owner(Arc<Inner>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.shutdown.send_replace(true);
    }
}

impl std::fmt::Debug for LiveSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSessions")
            .field("settings", &self.inner.settings)
            .field("status", &self.status())
            .finish()
    }
}

struct Inner {
    repo: SessionRepo,
    settings: LiveSettings,
    /// The policy's idle timeout in whole seconds, as the database applies it.
    idle: Option<Duration>,
    /// The policy's activity interval in whole seconds.
    activity_interval: Duration,
    state: Mutex<State>,
    /// This instance's heartbeat channel: only its own listening connections hear it.
    heartbeat_channel: String,
    /// Wakes the flusher when a batch is full.
    flush_now: Notify,
    /// Wakes waiters of [`LiveSessions::listening`] on each heartbeat heard.
    heard: Notify,
    /// Asks every listening connection for a heartbeat now ([`LiveSessions::caught_up`]).
    beat_now: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    memory_answers: AtomicU64,
    database_answers: AtomicU64,
    endings_heard: AtomicU64,
    heartbeats_sent: AtomicU64,
    heartbeats_heard: AtomicU64,
    clears: AtomicU64,
    listen_failures: AtomicU64,
    activity_batches: AtomicU64,
    activity_written: AtomicU64,
    activity_dropped: AtomicU64,
}

struct State {
    cache: lru::Lru<SessionKey, Entry>,
    pending: HashMap<SessionKey, Option<IpAddr>>,
    /// Endings heard so far: a read that started before one may not fill memory.
    endings: u64,
    /// Clears so far: a read that started before one may not fill memory.
    clears: u64,
    nodes: Vec<NodeState>,
}

#[derive(Default)]
struct NodeState {
    /// Memory may answer before this instant, as far as this node goes.
    fresh_until: Option<Instant>,
    /// Heartbeats sent on the current connection and not heard yet.
    sent: VecDeque<(u64, Instant)>,
    listening: bool,
}

impl State {
    fn fresh_until(&self) -> Option<Instant> {
        if self.nodes.is_empty() {
            return None;
        }
        self.nodes
            .iter()
            .map(|node| node.fresh_until)
            .try_fold(None, |min: Option<Instant>, until| {
                let until = until?;
                Some(Some(min.map_or(until, |min| min.min(until))))
            })
            .flatten()
    }

    fn fresh(&self, now: Instant) -> bool {
        self.fresh_until().is_some_and(|until| now < until)
    }

    fn clear(&mut self) {
        self.cache.clear();
        self.clears += 1;
    }
}

enum Entry {
    Live(Cached),
    /// Ended for good: revoked, deleted, expired or idle (none comes back).
    Ended,
}

struct Cached {
    expires_at: DateTime<Utc>,
    /// The last activity written to the database, as last read or written here.
    last_active_at: DateTime<Utc>,
    ip_address: Option<IpAddr>,
    /// The database clock at `anchor` (or a little earlier: never later, so the local
    /// estimate of the database clock runs ahead, and expiry and idleness come early).
    anchor_db: DateTime<Utc>,
    anchor: Instant,
    /// Activity recorded here since.
    local_activity: Option<Instant>,
}

impl Cached {
    fn from_row(row: &db::queries::sessions::LiveSessionByKey, anchor: Instant) -> Self {
        Self {
            expires_at: row.expires_at,
            last_active_at: row.last_active_at,
            ip_address: row.ip_address,
            anchor_db: row.db_now,
            anchor,
            local_activity: None,
        }
    }

    /// The database clock at `at`, estimated from the anchor.
    fn db_time(&self, at: Instant) -> DateTime<Utc> {
        let elapsed = at.saturating_duration_since(self.anchor);
        chrono::TimeDelta::from_std(elapsed)
            .ok()
            .and_then(|elapsed| self.anchor_db.checked_add_signed(elapsed))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    fn last_active(&self) -> DateTime<Utc> {
        match self.local_activity {
            Some(local) => self.last_active_at.max(self.db_time(local)),
            None => self.last_active_at,
        }
    }

    /// What the session's own times say at `now`, as the database decides liveness
    /// (`auth.session_is_live`): expired once `expires_at <= now`, idle once
    /// `last_active + idle <= now`.
    fn verdict(&self, now: Instant, idle: Option<Duration>) -> Verdict {
        let db_now = self.db_time(now);
        if self.expires_at <= db_now {
            return Verdict::Expired;
        }
        if let Some(idle) = idle {
            let idle = chrono::TimeDelta::from_std(idle).unwrap_or(chrono::TimeDelta::MAX);
            if self
                .last_active()
                .checked_add_signed(idle)
                .is_some_and(|until| until <= db_now)
            {
                return Verdict::Idle;
            }
        }
        Verdict::Live
    }

    fn view(&self, key: SessionKey) -> LiveSession {
        LiveSession {
            key,
            expires_at: self.expires_at,
            last_active_at: self.last_active(),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Live,
    Expired,
    Idle,
}

/// What memory says of a session.
enum Local {
    Live(LiveSession),
    Ended,
    /// Not known, not fresh, or idle by the local view: ask the database.
    Ask,
}

impl LiveSessions {
    pub(crate) fn start(repo: SessionRepo, settings: LiveSettings) -> Result<Self, Error> {
        settings.validate(repo.policy())?;
        let connect = crate::pool::pool_connect_settings(repo.pool()).ok_or_else(|| {
            Error::Config(
                "live sessions need a pool built by this crate (build_pool and friends): \
                 the listening connection is opened with the pool's settings"
                    .to_owned(),
            )
        })?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Config("live sessions need a running tokio runtime".to_owned()))?;
        let mut tag = [0u8; 8];
        getrandom::fill(&mut tag).map_err(Error::Randomness)?;
        let policy = repo.policy();
        let inner = Arc::new(Inner {
            idle: policy
                .idle_timeout
                .map(|idle| Duration::from_secs(idle.as_secs())),
            activity_interval: Duration::from_secs(policy.activity_interval.as_secs()),
            state: Mutex::new(State {
                cache: lru::Lru::new(settings.capacity),
                pending: HashMap::new(),
                endings: 0,
                clears: 0,
                nodes: Vec::new(),
            }),
            heartbeat_channel: format!("auth_sessions_heartbeat_{}", hex::encode(tag)),
            flush_now: Notify::new(),
            heard: Notify::new(),
            beat_now: watch::channel(0).0,
            shutdown: watch::channel(false).0,
            task: Mutex::new(None),
            counters: Counters::default(),
            repo,
            settings,
        });
        let task = runtime.spawn(run(inner.clone(), connect));
        *lock(&inner.task) = Some(task);
        Ok(Self {
            _owner: Arc::new(Owner(inner.clone())),
            inner,
        })
    }

    /// Whether session `key` is live, with its user, expiry and last activity; `None` when
    /// it is not (revoked, evicted, deleted, expired, idle, or unknown).
    ///
    /// From memory, with no database call, while fresh (see [`LiveSessions`]) for a session
    /// this instance read within its capacity: expiry and idle timeout are decided from the
    /// session's own times. One statement otherwise (the first check of a session, after a
    /// clear, while not fresh), and when memory says idle: another instance may have kept
    /// the session alive, so the database decides. A session read while fresh is kept.
    ///
    /// `key` must come from something the caller authenticated (an access token it verified):
    /// the check trusts it as [`SessionRepo::record_activity`] does.
    ///
    /// # Errors
    ///
    /// Only when it reads the database: pool and database errors, [`Error::DeadlineExceeded`]
    /// (the repository's deadline). Never an answer from memory past the bound instead.
    pub async fn check(&self, key: SessionKey) -> Result<Option<LiveSession>, Error> {
        let inner = &self.inner;
        let (endings, clears) = {
            let mut state = lock(&inner.state);
            match inner.local(&mut state, key, Instant::now()) {
                Local::Live(session) => {
                    inner
                        .counters
                        .memory_answers
                        .fetch_add(1, Ordering::Relaxed);
                    crate::metrics::live_check(true);
                    return Ok(Some(session));
                }
                Local::Ended => {
                    inner
                        .counters
                        .memory_answers
                        .fetch_add(1, Ordering::Relaxed);
                    crate::metrics::live_check(true);
                    return Ok(None);
                }
                Local::Ask => (state.endings, state.clears),
            }
        };
        inner
            .counters
            .database_answers
            .fetch_add(1, Ordering::Relaxed);
        crate::metrics::live_check(false);
        let started = Instant::now();
        let row = inner.repo.live_session_by_key(key).await?;
        let mut state = lock(&inner.state);
        let may_keep = state.clears == clears && state.fresh(Instant::now());
        let Some(row) = row else {
            // Ended for good, whatever was heard meanwhile.
            if may_keep {
                state.cache.insert(key, Entry::Ended);
            }
            return Ok(None);
        };
        let read = Cached::from_row(&row, started);
        let session = read.view(key);
        let unchanged = state.endings == endings;
        if may_keep {
            match state.cache.get_mut(&key) {
                Some(Entry::Ended) => return Ok(None),
                Some(Entry::Live(cached)) => {
                    // Still live in memory, so no ending of it was heard since it was kept.
                    cached.last_active_at = cached.last_active_at.max(read.last_active_at);
                    cached.ip_address = read.ip_address;
                    cached.anchor_db = read.anchor_db;
                    cached.anchor = read.anchor;
                    return Ok(Some(cached.view(key)));
                }
                None if unchanged => {
                    state.cache.insert(key, Entry::Live(read));
                }
                // An ending heard during the read may be this session's: keep nothing.
                None => {}
            }
        }
        Ok(Some(session))
    }

    /// Records activity on session `key` (from a client at `ip_address`, when known),
    /// without a statement: kept in memory, and written with the other sessions' activity in
    /// one statement at the next flush ([`LiveSettings::flush_interval`]), or at once when
    /// [`LiveSettings::max_batch`] sessions are pending. As
    /// [`SessionRepo::record_activity`], the database writes a session only when its stored
    /// activity is older than the activity interval or its address changed, and only while
    /// it is live; sessions that memory knows need no write are not even sent.
    ///
    /// When [`LiveSettings::capacity`] sessions are already pending (the database has been
    /// unreachable for a while), the record is dropped and counted
    /// ([`LiveStatus::activity_dropped`]).
    pub fn record_activity(&self, key: SessionKey, ip_address: Option<IpAddr>) {
        let inner = &self.inner;
        let now = Instant::now();
        let mut state = lock(&inner.state);
        if let Some(Entry::Live(cached)) = state.cache.peek_mut(&key) {
            cached.local_activity = Some(now);
        }
        let pending = state.pending.len();
        match state.pending.get_mut(&key) {
            Some(ip) => {
                if ip_address.is_some() {
                    *ip = ip_address;
                }
            }
            None if pending >= inner.settings.capacity => {
                inner
                    .counters
                    .activity_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
            None => {
                state.pending.insert(key, ip_address);
                if pending + 1 >= inner.settings.max_batch {
                    inner.flush_now.notify_one();
                }
            }
        }
    }

    /// Writes the pending activity now, in statements of at most
    /// [`LiveSettings::max_batch`] sessions. Returns how many sessions were written. The
    /// background task does this every [`LiveSettings::flush_interval`].
    ///
    /// # Errors
    ///
    /// Pool and database errors; the activity not written stays pending.
    pub async fn flush(&self) -> Result<u64, Error> {
        self.inner.flush().await
    }

    /// Waits until checks may answer from memory (every listening connection open and a
    /// heartbeat heard), at most `within`. Returns whether they may.
    pub async fn listening(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let heard = self.inner.heard.notified();
            if lock(&self.inner.state).fresh(Instant::now()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, heard).await.is_err() {
                return lock(&self.inner.state).fresh(Instant::now());
            }
        }
    }

    /// Waits until every session ending committed before this call is reflected by
    /// [`check`](Self::check), at most `within`: each listening connection sends a heartbeat
    /// at once, and notifications arrive in commit order, so hearing it back proves the
    /// endings committed before it were heard. Returns `true` then. When `within` passes
    /// first, memory is cleared instead (the next checks read the database) and it returns
    /// `false`: either way the endings are reflected when it returns.
    ///
    /// A service calls it after ending sessions itself (logout, revoking one, all or all but
    /// one, a reuse detected), so that its own next request refuses them: other instances
    /// hear of them as quickly, by the same push.
    pub async fn caught_up(&self, within: Duration) -> bool {
        let target = Instant::now() + self.inner.settings.staleness_bound;
        let reached = |state: &State| state.fresh_until().is_some_and(|until| until >= target);
        let deadline = Instant::now() + within;
        self.inner
            .beat_now
            .send_modify(|asked| *asked = asked.wrapping_add(1));
        loop {
            let heard = self.inner.heard.notified();
            if reached(&lock(&self.inner.state)) {
                return true;
            }
            if tokio::time::timeout_at(deadline, heard).await.is_err() {
                let mut state = lock(&self.inner.state);
                if reached(&state) {
                    return true;
                }
                state.clear();
                self.inner.counters.clears.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
    }

    /// What it is doing.
    pub fn status(&self) -> LiveStatus {
        let inner = &self.inner;
        let now = Instant::now();
        let state = lock(&inner.state);
        let fresh_until = state.fresh_until();
        let counter = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        LiveStatus {
            fresh: state.fresh(now),
            fresh_for: fresh_until
                .map_or(Duration::ZERO, |until| until.saturating_duration_since(now)),
            nodes: state.nodes.len(),
            nodes_listening: state.nodes.iter().filter(|node| node.listening).count(),
            entries: state.cache.len(),
            pending_activity: state.pending.len(),
            memory_answers: counter(&inner.counters.memory_answers),
            database_answers: counter(&inner.counters.database_answers),
            endings_heard: counter(&inner.counters.endings_heard),
            heartbeats_sent: counter(&inner.counters.heartbeats_sent),
            heartbeats_heard: counter(&inner.counters.heartbeats_heard),
            clears: counter(&inner.counters.clears),
            listen_failures: counter(&inner.counters.listen_failures),
            activity_batches: counter(&inner.counters.activity_batches),
            activity_written: counter(&inner.counters.activity_written),
            activity_dropped: counter(&inner.counters.activity_dropped),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &LiveSettings {
        &self.inner.settings
    }

    /// Stops the background task: closes the listening connections, writes the pending
    /// activity a last time, and waits for it. Checks afterwards always read the database
    /// (nothing is heard any more). Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        let task = lock(&self.inner.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let mut state = lock(&self.inner.state);
        for node in &mut state.nodes {
            node.fresh_until = None;
            node.listening = false;
        }
    }
}

impl Inner {
    /// What memory says of `key` at `now`.
    fn local(&self, state: &mut State, key: SessionKey, now: Instant) -> Local {
        if !state.fresh(now) {
            return Local::Ask;
        }
        let idle = self.idle;
        let Some(entry) = state.cache.get_mut(&key) else {
            return Local::Ask;
        };
        let Entry::Live(cached) = entry else {
            return Local::Ended;
        };
        match cached.verdict(now, idle) {
            Verdict::Expired => {
                *entry = Entry::Ended;
                return Local::Ended;
            }
            Verdict::Idle => return Local::Ask,
            Verdict::Live => {}
        }
        Local::Live(cached.view(key))
    }

    /// Applies a notification heard on node `node`'s listening connection.
    fn heard(&self, node: usize, channel: &str, payload: &str) {
        let mut state = lock(&self.state);
        if channel == ENDED_CHANNEL {
            self.counters.endings_heard.fetch_add(1, Ordering::Relaxed);
            crate::metrics::live_ending();
            state.endings += 1;
            match parse_ending(payload) {
                Some(key) => {
                    if let Some(entry) = state.cache.peek_mut(&key) {
                        *entry = Entry::Ended;
                    }
                }
                None => {
                    // Not ours to understand: assume the worst.
                    tracing::warn!("unreadable session ending notification: memory cleared");
                    state.clear();
                    self.counters.clears.fetch_add(1, Ordering::Relaxed);
                }
            }
        } else if channel == self.heartbeat_channel {
            let Ok(seq) = payload.parse::<u64>() else {
                return;
            };
            let bound = self.settings.staleness_bound;
            let Some(node) = state.nodes.get_mut(node) else {
                return;
            };
            while let Some(&(sent_seq, sent_at)) = node.sent.front() {
                if sent_seq > seq {
                    break;
                }
                node.sent.pop_front();
                if sent_seq == seq {
                    let until = sent_at + bound;
                    node.fresh_until = Some(node.fresh_until.map_or(until, |u| u.max(until)));
                    self.counters
                        .heartbeats_heard
                        .fetch_add(1, Ordering::Relaxed);
                    self.heard.notify_waiters();
                }
            }
        }
    }

    /// A listening connection to node `node` is open and listening: whatever was raised
    /// before is assumed missed.
    fn opened(&self, node: usize) {
        let mut state = lock(&self.state);
        state.clear();
        if let Some(node) = state.nodes.get_mut(node) {
            node.fresh_until = None;
            node.sent.clear();
            node.listening = true;
        }
        self.counters.clears.fetch_add(1, Ordering::Relaxed);
    }

    fn closed(&self, node: usize) {
        let mut state = lock(&self.state);
        if let Some(node) = state.nodes.get_mut(node) {
            node.sent.clear();
            node.listening = false;
        }
    }

    /// Whether a heartbeat sent on node `node`'s current connection went unheard for longer
    /// than the bound.
    fn overdue(&self, node: usize) -> bool {
        let state = lock(&self.state);
        state
            .nodes
            .get(node)
            .and_then(|node| node.sent.front())
            .is_some_and(|&(_, sent_at)| sent_at.elapsed() > self.settings.staleness_bound)
    }

    /// The next heartbeat of node `node`, sent now.
    fn heartbeat(&self, node: usize, seq: u64) {
        let mut state = lock(&self.state);
        if let Some(node) = state.nodes.get_mut(node) {
            if node.sent.len() >= 64 {
                node.sent.pop_front();
            }
            node.sent.push_back((seq, Instant::now()));
        }
        self.counters
            .heartbeats_sent
            .fetch_add(1, Ordering::Relaxed);
    }

    async fn flush(&self) -> Result<u64, Error> {
        let batch = {
            let mut state = lock(&self.state);
            let pending = std::mem::take(&mut state.pending);
            let now = Instant::now();
            let interval = chrono::TimeDelta::from_std(self.activity_interval)
                .unwrap_or(chrono::TimeDelta::MAX);
            let mut batch: Vec<(SessionKey, Option<IpAddr>)> = pending
                .into_iter()
                .filter(|(key, ip)| match state.cache.peek_mut(key) {
                    // Ended: nothing to write.
                    Some(Entry::Ended) => false,
                    // The database already holds activity recent enough, and the address:
                    // the statement would write nothing.
                    Some(Entry::Live(cached)) => {
                        let recent = cached
                            .last_active_at
                            .checked_add_signed(interval)
                            .is_some_and(|until| until > cached.db_time(now));
                        !(recent && (ip.is_none() || *ip == cached.ip_address))
                    }
                    None => true,
                })
                .collect();
            batch.sort_unstable_by_key(|(key, _)| *key);
            batch
        };
        let mut written = 0;
        for (done, chunk) in batch.chunks(self.settings.max_batch).enumerate() {
            let rows = match self.repo.record_activity_batch(chunk).await {
                Ok(rows) => rows,
                Err(err) => {
                    let mut state = lock(&self.state);
                    for (key, ip) in batch.iter().skip(done * self.settings.max_batch) {
                        if state.pending.len() >= self.settings.capacity {
                            break;
                        }
                        state.pending.entry(*key).or_insert(*ip);
                    }
                    return Err(err);
                }
            };
            let rows_written = rows.iter().filter(|(_, activity)| activity.written).count() as u64;
            self.counters
                .activity_batches
                .fetch_add(1, Ordering::Relaxed);
            crate::metrics::live_activity_batch(rows_written);
            written += rows_written;
            let mut state = lock(&self.state);
            // A session of the batch the statement did not return is not live in the database
            // (it returns every live one, written or not): ended, whether or not its end was
            // heard (on Citus, cleanup's deletions are not pushed; see schema/015).
            let live: std::collections::HashSet<SessionKey> =
                rows.iter().map(|(key, _)| *key).collect();
            for (key, _) in chunk {
                if !live.contains(key)
                    && let Some(entry @ Entry::Live(_)) = state.cache.peek_mut(key)
                {
                    *entry = Entry::Ended;
                }
            }
            // What is stored now, written or not: the next flush sends none of these until
            // their activity is due again.
            for (key, activity) in rows {
                if let Some(Entry::Live(cached)) = state.cache.peek_mut(&key) {
                    cached.last_active_at = cached.last_active_at.max(activity.last_active_at);
                }
            }
            for (key, ip) in chunk {
                if let (Some(ip), Some(Entry::Live(cached))) = (ip, state.cache.peek_mut(key)) {
                    cached.ip_address = Some(*ip);
                }
            }
        }
        self.counters
            .activity_written
            .fetch_add(written, Ordering::Relaxed);
        Ok(written)
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// `<user_id> <id>`, as schema/015 raises it.
fn parse_ending(payload: &str) -> Option<SessionKey> {
    let (user_id, session_id) = payload.split_once(' ')?;
    Some(SessionKey::new(
        user_id.parse().ok()?,
        session_id.parse().ok()?,
    ))
}

/// The background task: finds the nodes, listens on each, and writes activity.
async fn run(inner: Arc<Inner>, connect: (tokio_postgres::Config, MakeRustlsConnect)) {
    let (config, tls) = connect;
    let mut shutdown = inner.shutdown.subscribe();
    let nodes = loop {
        match nodes(&inner, &config).await {
            Ok(nodes) => break nodes,
            Err(err) => {
                tracing::warn!(error = %err, "live sessions: cannot list the nodes to listen on");
                inner
                    .counters
                    .listen_failures
                    .fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    () = stopped(&mut shutdown) => return,
                    () = tokio::time::sleep(inner.settings.reconnect_backoff.max(Duration::from_millis(10))) => {}
                }
            }
        }
    };
    lock(&inner.state).nodes = nodes.iter().map(|_| NodeState::default()).collect();
    let mut listeners = tokio::task::JoinSet::new();
    for (index, node) in nodes.into_iter().enumerate() {
        listeners.spawn(listen(inner.clone(), index, node, tls.clone()));
    }
    let mut tick = tokio::time::interval(inner.settings.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            _ = tick.tick() => {}
            () = inner.flush_now.notified() => {}
        }
        if let Err(err) = inner.flush().await {
            tracing::warn!(error = %err, "live sessions: activity batch failed; kept pending");
        }
    }
    while listeners.join_next().await.is_some() {}
    if let Err(err) = inner.flush().await {
        tracing::warn!(error = %err, "live sessions: last activity batch failed");
    }
}

/// The nodes to listen on: the pool's server, and with [`LiveSettings::citus_nodes`] every
/// other active primary that its `pg_dist_node` lists (the workers from the coordinator; the
/// coordinator, when registered, and the other workers from a worker). The pool's own node is
/// told apart by its group (`pg_dist_local_group`), not by a host name that may be spelled
/// otherwise.
async fn nodes(
    inner: &Inner,
    config: &tokio_postgres::Config,
) -> Result<Vec<tokio_postgres::Config>, Error> {
    let mut nodes = vec![config.clone()];
    if !inner.settings.citus_nodes {
        return Ok(nodes);
    }
    let client = inner.repo.pool().get().await?;
    let rows = client
        .query(
            "SELECT nodename, nodeport FROM pg_dist_node
             WHERE isactive AND noderole = 'primary'
               AND groupid <> (SELECT groupid FROM pg_dist_local_group)
             ORDER BY nodeid",
            &[],
        )
        .await?;
    for row in rows {
        let host: String = row.get(0);
        let port: i32 = row.get(1);
        let port = u16::try_from(port)
            .map_err(|_| Error::UnexpectedResponse("pg_dist_node lists a port out of range"))?;
        nodes.push(node_config(config, &host, port));
    }
    Ok(nodes)
}

/// `base` (user, password, database, options, TLS mode, timeouts, keepalives) for another
/// host and port.
fn node_config(base: &tokio_postgres::Config, host: &str, port: u16) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    if let Some(user) = base.get_user() {
        config.user(user);
    }
    if let Some(password) = base.get_password() {
        config.password(password);
    }
    if let Some(dbname) = base.get_dbname() {
        config.dbname(dbname);
    }
    if let Some(options) = base.get_options() {
        config.options(options);
    }
    if let Some(name) = base.get_application_name() {
        config.application_name(name);
    }
    config.ssl_mode(base.get_ssl_mode());
    config.ssl_negotiation(base.get_ssl_negotiation());
    config.channel_binding(base.get_channel_binding());
    if let Some(timeout) = base.get_connect_timeout() {
        config.connect_timeout(*timeout);
    }
    if let Some(timeout) = base.get_tcp_user_timeout() {
        config.tcp_user_timeout(*timeout);
    }
    config.keepalives(base.get_keepalives());
    config.keepalives_idle(base.get_keepalives_idle());
    if let Some(interval) = base.get_keepalives_interval() {
        config.keepalives_interval(interval);
    }
    if let Some(retries) = base.get_keepalives_retries() {
        config.keepalives_retries(retries);
    }
    config.host(host).port(port);
    config
}

/// Keeps a listening connection open on node `index`, opening it again after each failure.
async fn listen(
    inner: Arc<Inner>,
    index: usize,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
) {
    let mut shutdown = inner.shutdown.subscribe();
    let mut seq = 0u64;
    loop {
        if inner.stopping() {
            return;
        }
        let outcome = listen_once(&inner, index, &config, tls.clone(), &mut seq).await;
        inner.closed(index);
        match outcome {
            Ok(()) => return,
            Err(err) => {
                inner
                    .counters
                    .listen_failures
                    .fetch_add(1, Ordering::Relaxed);
                crate::metrics::live_listen_failure();
                tracing::warn!(node = index, error = %err,
                    "live sessions: listening connection lost; opening another");
            }
        }
        tokio::select! {
            () = stopped(&mut shutdown) => return,
            () = tokio::time::sleep(inner.settings.reconnect_backoff) => {}
        }
    }
}

/// One listening connection, until it fails (`Err`) or the task stops (`Ok`).
async fn listen_once(
    inner: &Arc<Inner>,
    index: usize,
    config: &tokio_postgres::Config,
    tls: MakeRustlsConnect,
    seq: &mut u64,
) -> Result<(), Error> {
    let bound = inner.settings.staleness_bound;
    let mut shutdown = inner.shutdown.subscribe();
    let (client, mut connection) =
        tokio::time::timeout(bound.max(Duration::from_secs(1)), config.connect(tls))
            .await
            .map_err(|_| Error::DeadlineExceeded)?
            .map_err(|err| Error::Connect(DatabaseError::new(err)))?;
    let driver_inner = inner.clone();
    let mut driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(note))) => {
                    driver_inner.heard(index, note.channel(), note.payload());
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Some(err),
                None => return None,
            }
        }
    });
    let _abort = AbortOnDrop(driver.abort_handle());
    let statement = format!("LISTEN {ENDED_CHANNEL}; LISTEN {}", inner.heartbeat_channel);
    within(bound, client.batch_execute(&statement)).await?;
    inner.opened(index);
    let mut tick = tokio::time::interval(inner.settings.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beats = inner.beat_now.subscribe();
    beats.mark_unchanged();
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => return Ok(()),
            ended = &mut driver => {
                return Err(match ended {
                    Ok(Some(err)) => Error::Database(DatabaseError::new(err)),
                    _ => Error::UnexpectedResponse("listening connection closed"),
                });
            }
            _ = tick.tick() => {
                // The connection answers but its heartbeats do not come back: something
                // between the queue and this connection is wrong; start over.
                if inner.overdue(index) {
                    return Err(Error::UnexpectedResponse(
                        "heartbeats of the listening connection not heard back",
                    ));
                }
            }
            // Somebody waits in `caught_up`: a heartbeat now.
            asked = beats.changed() => {
                if asked.is_err() {
                    return Ok(());
                }
            }
        }
        *seq += 1;
        inner.heartbeat(index, *seq);
        let statement = format!("SELECT pg_notify('{}', '{}')", inner.heartbeat_channel, seq);
        within(bound, client.batch_execute(&statement)).await?;
    }
}

async fn within(
    limit: Duration,
    statement: impl Future<Output = Result<(), tokio_postgres::Error>>,
) -> Result<(), Error> {
    match tokio::time::timeout(limit, statement).await {
        Ok(result) => result.map_err(Error::from),
        Err(_) => Err(Error::DeadlineExceeded),
    }
}

/// Resolves once the task is asked to stop.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A map of bounded size that drops its least recently used entry to make room: a slab of
/// entries in a doubly linked list, most recently used first, and an index from key to slot.
/// Every operation is O(1).
mod lru {
    use std::collections::HashMap;
    use std::hash::Hash;

    const NIL: usize = usize::MAX;

    struct Slot<K, V> {
        key: K,
        value: V,
        prev: usize,
        next: usize,
    }

    pub(super) struct Lru<K, V> {
        capacity: usize,
        index: HashMap<K, usize>,
        slots: Vec<Slot<K, V>>,
        head: usize,
        tail: usize,
    }

    impl<K: Copy + Eq + Hash, V> Lru<K, V> {
        pub(super) fn new(capacity: usize) -> Self {
            Self {
                capacity: capacity.max(1),
                index: HashMap::new(),
                slots: Vec::new(),
                head: NIL,
                tail: NIL,
            }
        }

        pub(super) fn len(&self) -> usize {
            self.index.len()
        }

        pub(super) fn clear(&mut self) {
            self.index.clear();
            self.slots.clear();
            self.head = NIL;
            self.tail = NIL;
        }

        /// The value of `key`, now the most recently used.
        pub(super) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
            let slot = *self.index.get(key)?;
            self.unlink(slot);
            self.push_front(slot);
            Some(&mut self.slots[slot].value)
        }

        /// The value of `key`, its place unchanged.
        pub(super) fn peek_mut(&mut self, key: &K) -> Option<&mut V> {
            let slot = *self.index.get(key)?;
            Some(&mut self.slots[slot].value)
        }

        /// Sets `key` to `value`, the most recently used; drops the least recently used entry
        /// when full.
        pub(super) fn insert(&mut self, key: K, value: V) {
            if let Some(&slot) = self.index.get(&key) {
                self.slots[slot].value = value;
                self.unlink(slot);
                self.push_front(slot);
                return;
            }
            let slot = if self.index.len() >= self.capacity {
                // Reuse the least recently used slot.
                let slot = self.tail;
                self.unlink(slot);
                self.index.remove(&self.slots[slot].key);
                self.slots[slot].key = key;
                self.slots[slot].value = value;
                slot
            } else {
                self.slots.push(Slot {
                    key,
                    value,
                    prev: NIL,
                    next: NIL,
                });
                self.slots.len() - 1
            };
            self.index.insert(key, slot);
            self.push_front(slot);
        }

        fn unlink(&mut self, slot: usize) {
            let (prev, next) = (self.slots[slot].prev, self.slots[slot].next);
            if prev == NIL {
                self.head = next;
            } else {
                self.slots[prev].next = next;
            }
            if next == NIL {
                self.tail = prev;
            } else {
                self.slots[next].prev = prev;
            }
            self.slots[slot].prev = NIL;
            self.slots[slot].next = NIL;
        }

        fn push_front(&mut self, slot: usize) {
            self.slots[slot].next = self.head;
            self.slots[slot].prev = NIL;
            if self.head != NIL {
                self.slots[self.head].prev = slot;
            }
            self.head = slot;
            if self.tail == NIL {
                self.tail = slot;
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::Lru;

        #[test]
        fn the_least_recently_used_entry_goes_first() {
            let mut lru = Lru::new(3);
            for key in 1..=3 {
                lru.insert(key, key * 10);
            }
            assert_eq!(lru.get_mut(&1), Some(&mut 10)); // 1 is now the most recent
            lru.insert(4, 40); // evicts 2
            assert_eq!(lru.len(), 3);
            assert!(lru.peek_mut(&2).is_none());
            assert_eq!(lru.peek_mut(&3), Some(&mut 30));
            lru.insert(5, 50); // evicts 3 (peek does not promote)
            assert!(lru.peek_mut(&3).is_none());
            assert_eq!(lru.peek_mut(&1), Some(&mut 10));
            lru.insert(1, 11); // update in place
            assert_eq!(lru.len(), 3);
            assert_eq!(lru.get_mut(&1), Some(&mut 11));
            lru.clear();
            assert_eq!(lru.len(), 0);
            lru.insert(6, 60);
            assert_eq!(lru.get_mut(&6), Some(&mut 60));
        }

        #[test]
        fn capacity_one_keeps_the_last() {
            let mut lru = Lru::new(1);
            lru.insert(1, ());
            lru.insert(2, ());
            assert_eq!(lru.len(), 1);
            assert!(lru.peek_mut(&1).is_none());
            assert!(lru.peek_mut(&2).is_some());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_idleness_at_their_edges_as_the_database_decides() {
        let anchor = Instant::now();
        let anchor_db = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let second = chrono::TimeDelta::seconds(1);
        let cached = Cached {
            expires_at: anchor_db + second * 10,
            last_active_at: anchor_db - second * 5,
            ip_address: None,
            anchor_db,
            anchor,
            local_activity: None,
        };
        let idle = Some(Duration::from_secs(8));
        let at = |secs: u64, millis: u64| {
            anchor + Duration::from_secs(secs) + Duration::from_millis(millis)
        };
        assert_eq!(cached.verdict(anchor, idle), Verdict::Live);
        // Idle exactly when last_active + idle = now (5 s + 3 s), as in the database.
        assert_eq!(cached.verdict(at(2, 999), idle), Verdict::Live);
        assert_eq!(cached.verdict(at(3, 0), idle), Verdict::Idle);
        // Activity recorded here moves idleness on, not expiry.
        let active = Cached {
            local_activity: Some(at(2, 0)),
            ..cached
        };
        assert_eq!(active.verdict(at(9, 999), idle), Verdict::Live);
        assert_eq!(active.verdict(at(10, 0), idle), Verdict::Expired);
        // Without an idle timeout only expiry counts, and exactly at it the session is over.
        assert_eq!(cached.verdict(at(9, 999), None), Verdict::Live);
        assert_eq!(cached.verdict(at(10, 0), None), Verdict::Expired);
        // An instant before the anchor (a clock that cannot go back) counts as the anchor.
        assert_eq!(cached.db_time(anchor), anchor_db);
    }

    #[test]
    fn endings_parse_and_garbage_does_not() {
        let user = uuid::Uuid::from_u128(1);
        let session = uuid::Uuid::from_u128(2);
        assert_eq!(
            parse_ending(&format!("{user} {session}")),
            Some(SessionKey::new(user, session))
        );
        assert_eq!(parse_ending(""), None);
        assert_eq!(parse_ending("*"), None);
        assert_eq!(parse_ending(&format!("{user}")), None);
        assert_eq!(parse_ending(&format!("{user} nope")), None);
    }

    #[test]
    fn settings_out_of_range_are_refused_by_name() {
        let policy = crate::SessionPolicy::default()
            .idle_timeout(Some(Duration::from_secs(120)))
            .activity_interval(Duration::from_secs(60));
        let field = |settings: LiveSettings| match settings.validate(&policy) {
            Err(Error::InvalidInput { field, .. }) => Some(field),
            _ => None,
        };
        assert_eq!(field(LiveSettings::default()), None);
        assert_eq!(field(LiveSettings::default().capacity(0)), Some("capacity"));
        assert_eq!(
            field(LiveSettings::default().staleness_bound(Duration::ZERO)),
            Some("staleness_bound")
        );
        assert_eq!(
            field(
                LiveSettings::default()
                    .staleness_bound(Duration::from_secs(1))
                    .heartbeat_interval(Duration::from_secs(1))
            ),
            Some("heartbeat_interval")
        );
        assert_eq!(
            field(LiveSettings::default().max_batch(0)),
            Some("max_batch")
        );
        // 60 s of room under the idle timeout: a flush every minute could let a busy session
        // look idle elsewhere.
        assert_eq!(
            field(LiveSettings::default().flush_interval(Duration::from_secs(60))),
            Some("flush_interval")
        );
        assert_eq!(
            field(LiveSettings::default().flush_interval(Duration::ZERO)),
            Some("flush_interval")
        );
    }
}
