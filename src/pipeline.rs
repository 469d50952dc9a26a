//! The hot path on a few shared, pipelined connections.
//!
//! tokio-postgres lets many tasks issue statements on one `Client` at once: each request goes
//! out as soon as it is made, and the server answers them in order. So a handful of
//! connections can carry many callers, without a caller waiting for a connection of its own.
//! [`Pipeline`] keeps [`PipelineSettings::connections`] such connections, opened by the pool's
//! own manager (the same configuration: TLS, `statement_timeout`, READ COMMITTED, keepalive),
//! each with its own statement cache, and hands them out round-robin.
//!
//! No call waits on a dead network: each has a deadline (see `SessionRepo::with_client`),
//! a connection on which a call missed it is retired and its other calls failed ([`Lease`]),
//! one connect attempt per slot serves every caller waiting for it, with a short backoff
//! after a failure, and connections retired while still busy are bounded.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use deadpool::managed::Manager as _;
use deadpool_postgres::{ClientWrapper, Pool};
use tokio::sync::watch;

use crate::Error;
use crate::error::DatabaseError;

/// Most shared connections [`PipelineSettings`] accepts.
pub const MAX_PIPELINE_CONNECTIONS: usize = 64;

/// Longest [`PipelineSettings::connect_backoff`].
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(60);

/// How long a hot-path call may take, from its start to its answer, unless
/// [`crate::SessionRepo::with_deadline`] says otherwise: the pool's default wait timeout.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);

/// Longest deadline [`crate::SessionRepo::with_deadline`] accepts.
pub const MAX_DEADLINE: Duration = Duration::from_secs(60 * 60);

/// How [`crate::SessionRepo`] runs its hot-path calls: the single-statement calls a service
/// makes per request (lookup, validate, list, count; and, when asked, create, rotate,
/// activity and revocations).
/// Cleanup, stats, migrations and distribution always use the exclusive pool, whatever this
/// says. See the README's "Choosing the hot path" for when to pick which.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HotPath {
    /// Each call checks a connection out of the pool for itself and returns it afterwards
    /// (the default).
    #[default]
    Exclusive,
    /// Calls share a few connections of their own, many in flight on each at once (see
    /// [`PipelineSettings`]).
    Pipelined(PipelineSettings),
}

/// Settings of the pipelined hot path ([`HotPath::Pipelined`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipelineSettings {
    /// How many shared connections to open (lazily, on first use), from 1 to
    /// [`MAX_PIPELINE_CONNECTIONS`]. They are opened in addition to the pool's own, which
    /// bulk calls keep using. Default: 2.
    pub connections: usize,
    /// Whether the calls that may commit a write (create, rotate, record activity, the
    /// revocations) share the connections too. Default: `false`, they check a connection out
    /// of the pool. A commit waits for its WAL flush; on separate connections concurrent
    /// commits share one flush (group commit), but the statements of one shared connection
    /// run one after another, each waiting for its own flush, so writes behind a few shared
    /// connections are limited to a few flushes at a time (several times slower at 8
    /// callers in BENCHMARKS.md). Worth it only where a flush costs little
    /// (`synchronous_commit = off`, fast storage) and server connections are scarce.
    pub pipeline_writes: bool,
    /// How long, after a shared connection failed to open, the calls that need it fail at
    /// once with the same error instead of trying again (at most 1 minute). Concurrent calls
    /// always share one attempt per connection; this keeps a down or silent server from
    /// costing every later caller a connect timeout of its own. Default: 1 s.
    pub connect_backoff: Duration,
    /// Most connections retired while other calls were still in flight on them (at most
    /// [`MAX_PIPELINE_CONNECTIONS`]): the server connections beyond
    /// [`PipelineSettings::connections`]. A call whose future is dropped retires its
    /// connection so that later calls do not queue behind its statement; at this limit the
    /// connection stays in use instead, and later calls wait behind that statement at most
    /// until their deadline. Default: 2.
    pub retired_limit: usize,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            connections: 2,
            pipeline_writes: false,
            connect_backoff: Duration::from_secs(1),
            retired_limit: 2,
        }
    }
}

impl PipelineSettings {
    /// `connections` shared connections, for read-only calls.
    pub fn new(connections: usize) -> Self {
        Self {
            connections,
            ..Self::default()
        }
    }

    /// Sets whether writing calls share the connections too (see
    /// [`PipelineSettings::pipeline_writes`]).
    pub fn pipeline_writes(mut self, pipeline_writes: bool) -> Self {
        self.pipeline_writes = pipeline_writes;
        self
    }

    /// Sets the number of shared connections.
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    /// Sets how long calls fail fast after a failed connect (see
    /// [`PipelineSettings::connect_backoff`]).
    pub fn connect_backoff(mut self, backoff: Duration) -> Self {
        self.connect_backoff = backoff;
        self
    }

    /// Sets how many retired connections may still be busy (see
    /// [`PipelineSettings::retired_limit`]).
    pub fn retired_limit(mut self, limit: usize) -> Self {
        self.retired_limit = limit;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let out_of_range = |field| {
            Err(Error::InvalidInput {
                field,
                problem: crate::InputProblem::OutOfRange,
            })
        };
        if !(1..=MAX_PIPELINE_CONNECTIONS).contains(&self.connections) {
            return out_of_range("connections");
        }
        if self.connect_backoff > MAX_CONNECT_BACKOFF {
            return out_of_range("connect_backoff");
        }
        if self.retired_limit > MAX_PIPELINE_CONNECTIONS {
            return out_of_range("retired_limit");
        }
        Ok(())
    }
}

/// What the pipelined hot path holds now ([`crate::SessionRepo::pipeline_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipelineStatus {
    /// Shared connections configured.
    pub connections: usize,
    /// Shared connections open now (each is opened on first use).
    pub open: usize,
    /// Connections opened so far, the first ones included: above `connections`, some were
    /// replaced (closed by the server, retired after an abandoned call, or after a call on
    /// them missed its deadline).
    pub opened: u64,
    /// Retired connections still open because calls are in flight on them (at most
    /// [`PipelineSettings::retired_limit`], plus those closing after a missed deadline).
    pub retired: usize,
}

/// The shared connections of one repository (and its clones).
pub(crate) struct Pipeline {
    pool: Pool,
    writes: bool,
    connect_backoff: Duration,
    retired_limit: usize,
    slots: Box<[Slot]>,
    next: AtomicUsize,
    opened: AtomicU64,
    /// Connections taken out of their slot that are still open.
    retired: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Slot {
    /// The connection in use; `None` before the first call and after it was retired.
    current: Mutex<Option<Arc<Shared>>>,
    /// The slot's connect attempt: running (callers wait for it) or failed recently (callers
    /// fail at once).
    attempt: Mutex<Attempt>,
}

#[derive(Default)]
enum Attempt {
    #[default]
    None,
    /// A task is opening the connection; its sender is dropped when it is done.
    Running(watch::Receiver<()>),
    /// The last attempt failed; until `until`, callers get its error.
    Failed { until: Instant, error: Failure },
}

/// The error of a failed connect attempt, handed to every caller that shared it.
#[derive(Clone)]
enum Failure {
    Timeout,
    Connect(DatabaseError),
}

impl Failure {
    fn error(&self) -> Error {
        match self {
            Self::Timeout => Error::PoolTimeout,
            Self::Connect(err) => Error::Connect(err.clone()),
        }
    }
}

/// One shared connection.
pub(crate) struct Shared {
    /// Dropping it (with the last call that holds it) closes the connection.
    client: ClientWrapper,
    /// Calls issued on it that have not completed.
    in_flight: AtomicUsize,
    /// Set once a call on it missed its deadline: every call on it then fails.
    failed: watch::Sender<bool>,
    /// Whether it was taken out of its slot (and counted in `retired`).
    is_retired: AtomicBool,
    retired: Arc<AtomicUsize>,
}

impl Shared {
    /// Counts it as retired, once.
    fn mark_retired(&self) {
        if !self.is_retired.swap(true, Ordering::AcqRel) {
            self.retired.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if *self.is_retired.get_mut() {
            self.retired.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Pipeline {
    pub(crate) fn new(pool: Pool, settings: &PipelineSettings) -> Self {
        Self {
            pool,
            writes: settings.pipeline_writes,
            connect_backoff: settings.connect_backoff,
            retired_limit: settings.retired_limit,
            slots: (0..settings.connections).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            opened: AtomicU64::new(0),
            retired: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether writing calls share the connections too.
    pub(crate) fn writes(&self) -> bool {
        self.writes
    }

    pub(crate) fn status(&self) -> PipelineStatus {
        PipelineStatus {
            connections: self.slots.len(),
            open: self
                .slots
                .iter()
                .filter(|slot| lock(&slot.current).as_ref().is_some_and(|s| s.usable()))
                .count(),
            opened: self.opened.load(Ordering::Relaxed),
            retired: self.retired.load(Ordering::Acquire),
        }
    }

    /// A shared connection for one call, the next slot's in turn; opens it when the slot has
    /// none or its connection was closed (a server restart, a terminated backend) or retired.
    ///
    /// One attempt per slot at a time, run by a task of its own: concurrent callers wait for
    /// the same attempt (and a caller that gives up does not cancel it for the others). After
    /// a failed attempt, callers get its error at once for
    /// [`PipelineSettings::connect_backoff`].
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when the connection cannot be opened, [`Error::PoolTimeout`] when
    /// opening it takes longer than the pool's create timeout.
    pub(crate) async fn lease(self: &Arc<Self>) -> Result<Lease, Error> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        loop {
            if let Some(lease) = self.take_open(index) {
                return Ok(lease);
            }
            let mut done = {
                let mut attempt = lock(&self.slots[index].attempt);
                match &*attempt {
                    Attempt::Failed { until, error } if Instant::now() < *until => {
                        return Err(error.error());
                    }
                    // A running attempt whose task is gone (its runtime shut down) is none.
                    Attempt::Running(done) if done.has_changed().is_ok() => done.clone(),
                    _ => {
                        // Opened while this caller looked at the slot?
                        if let Some(lease) = self.take_open(index) {
                            return Ok(lease);
                        }
                        let (sender, done) = watch::channel(());
                        *attempt = Attempt::Running(done.clone());
                        tokio::spawn(self.clone().connect(index, sender));
                        done
                    }
                }
            };
            // Ends when the attempt's task drops its sender, whatever the outcome.
            let _ = done.changed().await;
            let failed = match &*lock(&self.slots[index].attempt) {
                Attempt::Failed { error, .. } => Some(error.error()),
                _ => None,
            };
            if let Some(error) = failed {
                // The attempt this caller waited for failed: no second one for it.
                return self.take_open(index).ok_or(error);
            }
        }
    }

    /// Opens slot `index`'s connection (within the pool's create timeout) and installs it, or
    /// records the failure; then drops `done`, waking the callers waiting for it.
    async fn connect(self: Arc<Self>, index: usize, done: watch::Sender<()>) {
        let create = self.pool.manager().create();
        let result = match self.pool.timeouts().create {
            Some(limit) => match tokio::time::timeout(limit, create).await {
                Ok(result) => result.map_err(|err| Failure::Connect(DatabaseError::new(err))),
                Err(_) => Err(Failure::Timeout),
            },
            None => create
                .await
                .map_err(|err| Failure::Connect(DatabaseError::new(err))),
        };
        let slot = &self.slots[index];
        let mut attempt = lock(&slot.attempt);
        match result {
            Ok(client) => {
                self.opened.fetch_add(1, Ordering::Relaxed);
                let shared = Arc::new(Shared {
                    client,
                    in_flight: AtomicUsize::new(0),
                    failed: watch::channel(false).0,
                    is_retired: AtomicBool::new(false),
                    retired: self.retired.clone(),
                });
                *lock(&slot.current) = Some(shared);
                *attempt = Attempt::None;
            }
            Err(error) => {
                tracing::debug!(error = %error.error(), "shared connection could not be opened");
                *attempt = Attempt::Failed {
                    until: Instant::now() + self.connect_backoff,
                    error,
                };
            }
        }
        drop(attempt);
        drop(done);
    }
}

impl Pipeline {
    /// The slot's connection, counted in flight, when it is usable.
    fn take_open(self: &Arc<Self>, index: usize) -> Option<Lease> {
        let current = lock(&self.slots[index].current);
        let shared = current.as_ref().filter(|shared| shared.usable())?;
        // Counted under the slot's lock, so that retiring sees every call issued on it.
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        let shared = shared.clone();
        drop(current);
        Some(Lease {
            pipeline: self.clone(),
            index,
            shared,
            complete: false,
        })
    }

    /// Takes `shared` out of its slot when it is still there, counting it as retired; `None`
    /// when it was not (already retired or replaced). With `bounded` (an abandoned call), a
    /// connection that other calls still use is taken out only while fewer than
    /// [`PipelineSettings::retired_limit`] are retired, and kept in its slot otherwise.
    fn take_out(&self, index: usize, shared: &Arc<Shared>, bounded: bool) -> Option<Taken> {
        let mut current = lock(&self.slots[index].current);
        if !current
            .as_ref()
            .is_some_and(|held| Arc::ptr_eq(held, shared))
        {
            return None;
        }
        let in_flight = shared.in_flight.load(Ordering::Acquire);
        // Alone on it, the abandoned call's connection closes with it: no limit applies.
        if bounded && in_flight > 1 {
            let reserved = self
                .retired
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |retired| {
                    (retired < self.retired_limit).then_some(retired + 1)
                })
                .is_ok();
            if !reserved {
                return Some(Taken::Kept { in_flight });
            }
            shared.is_retired.store(true, Ordering::Release);
        } else {
            shared.mark_retired();
        }
        *current = None;
        Some(Taken::Retired { in_flight })
    }

    /// Asks the server to cancel what `shared`'s backend runs now, in a task of its own,
    /// giving up after the pool's create timeout.
    fn cancel(&self, shared: &Shared) {
        let cancel = shared.client.cancel_token();
        let tls = crate::pool::pool_connector(&self.pool);
        let limit = crate::pool::cancel_limit(Some(&self.pool));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = crate::pool::cancel_query(cancel, tls, limit).await {
                    tracing::debug!(error = %err, "cancel request on a retired shared connection failed");
                }
            });
        }
    }
}

/// What [`Pipeline::take_out`] did.
enum Taken {
    /// Out of its slot, with this many calls in flight (this one included).
    Retired { in_flight: usize },
    /// Left in its slot: [`PipelineSettings::retired_limit`] connections are retired already.
    Kept { in_flight: usize },
}

impl Shared {
    /// Open, and no call on it missed its deadline.
    fn usable(&self) -> bool {
        !self.client.is_closed() && !*self.failed.borrow()
    }
}

/// A shared connection lent to one call.
///
/// A call ends one of three ways:
/// - it completes ([`Lease::complete`]), whatever its result: the connection stays in use;
/// - it misses its deadline ([`Lease::time_out`]): the connection is presumed dead (or stuck
///   behind a statement that will not end soon). It is retired, every other call in flight
///   on it fails at once with [`Error::DeadlineExceeded`] (they are answered in order, so they
///   would wait as long), the server is asked to cancel what runs on it, and it closes once
///   those calls let go of it;
/// - its future is dropped (the caller went away): its statement may still be queued or
///   running, and the server cannot cancel one statement among several pipelined ones (a
///   cancel request stops whatever the backend runs at that moment). So the connection is
///   retired: later calls get a new one and never queue behind the abandoned statement. When
///   no other call is in flight on it, the abandoned statement is the one running: it is
///   canceled and the connection closed, as on the exclusive path. Otherwise the calls
///   already in flight finish (or miss their deadline), and the connection closes after the
///   last; at most [`PipelineSettings::retired_limit`] such connections exist, and past that
///   the connection stays in use (later calls wait behind the abandoned statement at most
///   until their deadline).
///
/// Each hot-path call is one autocommit statement, so nothing is left half done either way.
pub(crate) struct Lease {
    pipeline: Arc<Pipeline>,
    index: usize,
    shared: Arc<Shared>,
    complete: bool,
}

impl Lease {
    pub(crate) fn client(&self) -> &ClientWrapper {
        &self.shared.client
    }

    /// Resolves once a call on this connection missed its deadline.
    pub(crate) fn failed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut failed = self.shared.failed.subscribe();
        async move {
            // The sender lives as long as the connection, which this lease holds.
            let _ = failed.wait_for(|failed| *failed).await;
        }
    }

    /// The call is over, whatever its result: the connection stays in use.
    pub(crate) fn complete(mut self) {
        self.complete = true;
    }

    /// The call missed its deadline, or another call on its connection did: the connection
    /// is retired, the calls in flight on it fail, and its statement is canceled.
    pub(crate) fn time_out(mut self) {
        self.complete = true;
        if self.shared.failed.send_replace(true) {
            return; // Another call on it already failed it.
        }
        // Taken out of its slot if still there; counted as retired either way.
        let in_flight = self
            .pipeline
            .take_out(self.index, &self.shared, false)
            .map(|taken| match taken {
                Taken::Retired { in_flight } | Taken::Kept { in_flight } => in_flight,
            });
        self.shared.mark_retired();
        self.pipeline.cancel(&self.shared);
        tracing::warn!(
            ?in_flight,
            "hot-path call missed its deadline: shared connection retired, its calls failed"
        );
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.complete && !*self.shared.failed.borrow() {
            match self.pipeline.take_out(self.index, &self.shared, true) {
                Some(Taken::Retired { in_flight }) => {
                    if in_flight == 1 {
                        self.pipeline.cancel(&self.shared);
                    }
                    tracing::debug!(
                        in_flight,
                        "hot-path call abandoned mid-flight: shared connection retired"
                    );
                }
                Some(Taken::Kept { in_flight }) => tracing::debug!(
                    in_flight,
                    "hot-path call abandoned mid-flight: retired-connection limit reached, \
                     shared connection kept"
                ),
                None => {}
            }
        }
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
