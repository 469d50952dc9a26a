//! The hot path on a few shared, pipelined connections.
//!
//! tokio-postgres lets many tasks issue statements on one `Client` at once: each request goes
//! out as soon as it is made, and the server answers them in order. So a handful of
//! connections can carry many callers, without a caller waiting for a connection of its own.
//! [`Pipeline`] keeps [`PipelineSettings::connections`] such connections, opened by the pool's
//! own manager (the same configuration: TLS, `statement_timeout`, READ COMMITTED), each with
//! its own statement cache, and hands them out round-robin.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use deadpool::managed::Manager as _;
use deadpool_postgres::{ClientWrapper, Pool};

use crate::Error;
use crate::error::DatabaseError;

/// Most shared connections [`PipelineSettings`] accepts.
pub const MAX_PIPELINE_CONNECTIONS: usize = 64;

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
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            connections: 2,
            pipeline_writes: false,
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

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if (1..=MAX_PIPELINE_CONNECTIONS).contains(&self.connections) {
            Ok(())
        } else {
            Err(Error::InvalidInput {
                field: "connections",
                problem: crate::InputProblem::OutOfRange,
            })
        }
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
    /// replaced (closed by the server, or retired after an abandoned call).
    pub opened: u64,
}

/// The shared connections of one repository (and its clones).
pub(crate) struct Pipeline {
    pool: Pool,
    writes: bool,
    slots: Box<[Slot]>,
    next: AtomicUsize,
    opened: AtomicU64,
}

#[derive(Default)]
struct Slot {
    /// The connection in use; `None` before the first call and after it was retired.
    current: Mutex<Option<Arc<Shared>>>,
    /// Held while this slot opens a connection, so that one caller opens it and the others
    /// wait for it.
    connecting: tokio::sync::Mutex<()>,
}

/// One shared connection.
pub(crate) struct Shared {
    /// Dropping it (with the last call that holds it) closes the connection.
    client: ClientWrapper,
    /// Calls issued on it that have not completed.
    in_flight: AtomicUsize,
}

impl Pipeline {
    pub(crate) fn new(pool: Pool, settings: &PipelineSettings) -> Self {
        Self {
            pool,
            writes: settings.pipeline_writes,
            slots: (0..settings.connections).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            opened: AtomicU64::new(0),
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
                .filter(|slot| {
                    lock(&slot.current)
                        .as_ref()
                        .is_some_and(|shared| !shared.client.is_closed())
                })
                .count(),
            opened: self.opened.load(Ordering::Relaxed),
        }
    }

    /// A shared connection for one call, the next slot's in turn; opens it when the slot has
    /// none or its connection was closed (a server restart, a terminated backend).
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when the connection cannot be opened, [`Error::PoolTimeout`] when
    /// opening it takes longer than the pool's create timeout.
    pub(crate) async fn lease(self: &Arc<Self>) -> Result<Lease, Error> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let slot = &self.slots[index];
        if let Some(lease) = self.take_open(index) {
            return Ok(lease);
        }
        let _connecting = slot.connecting.lock().await;
        // Another caller may have opened it while this one waited.
        if let Some(lease) = self.take_open(index) {
            return Ok(lease);
        }
        let create = self.pool.manager().create();
        let client = match self.pool.timeouts().create {
            Some(limit) => tokio::time::timeout(limit, create)
                .await
                .map_err(|_| Error::PoolTimeout)?,
            None => create.await,
        }
        .map_err(|err| Error::Connect(DatabaseError::new(err)))?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            client,
            in_flight: AtomicUsize::new(1),
        });
        *lock(&slot.current) = Some(shared.clone());
        Ok(self.lease_of(index, shared))
    }

    /// The slot's connection, counted in flight, when it is open.
    fn take_open(self: &Arc<Self>, index: usize) -> Option<Lease> {
        let current = lock(&self.slots[index].current);
        let shared = current
            .as_ref()
            .filter(|shared| !shared.client.is_closed())?;
        // Counted under the slot's lock, so `retire` sees every call issued on it.
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        drop(current);
        Some(self.lease_of(index, shared))
    }

    fn lease_of(self: &Arc<Self>, index: usize, shared: Arc<Shared>) -> Lease {
        Lease {
            pipeline: self.clone(),
            index,
            shared,
            complete: false,
        }
    }

    /// Takes `shared` out of its slot (when it is still there), so the next call opens a new
    /// connection. Returns how many calls were in flight on it.
    fn retire(&self, index: usize, shared: &Arc<Shared>) -> usize {
        let mut current = lock(&self.slots[index].current);
        if current
            .as_ref()
            .is_some_and(|held| Arc::ptr_eq(held, shared))
        {
            *current = None;
        }
        shared.in_flight.load(Ordering::Relaxed)
    }
}

/// A shared connection lent to one call.
///
/// When the call's future is dropped before the call completed, its statement may still be
/// queued or running on the connection, and the server cannot cancel one statement among
/// several pipelined ones (a cancel request stops whatever the backend runs at that moment).
/// So the connection is retired: later calls get a new one and never queue behind the
/// abandoned statement. When no other call is in flight on it, the abandoned statement is
/// the one running: it is canceled and the connection closed, as on the exclusive path.
/// Otherwise the calls already in flight finish, and the connection closes after the last.
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

    /// The call is over, whatever its result: the connection stays in use.
    pub(crate) fn complete(mut self) {
        self.complete = true;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.complete {
            let in_flight = self.pipeline.retire(self.index, &self.shared);
            if in_flight == 1 {
                let cancel = self.shared.client.cancel_token();
                let tls = crate::pool::pool_connector(&self.pipeline.pool);
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        if let Err(err) = crate::pool::cancel_query(cancel, tls).await {
                            tracing::debug!(error = %err, "cancel request for an abandoned call failed");
                        }
                    });
                }
            }
            tracing::debug!(
                in_flight,
                "hot-path call abandoned mid-flight: shared connection retired"
            );
        }
        self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
