//! Faults: a server restart under load. Lookups and creates run on several workers while the
//! server restarts; every acknowledged write survives, and calls recover after it.
//!
//! The test runs against a private PostgreSQL that it starts itself (`PrivateServer` from
//! tests/common/server.rs, in a temporary directory on a free port), never the shared server.
//!
//! Every test runs with both hot paths (`HotPath::Exclusive` and `HotPath::Pipelined`): each
//! body is an `async fn` taking the hot path, and two `#[tokio::test]`s call it. The helpers
//! all fault tests share are in tests/common/faults.rs.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auth_sessions::{HotPath, NewSession, PoolSettings, RefreshToken};
use common::faults::{insert_user, outage_variant, pipelined, private_server};
use common::fixtures::DAY;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// a. A restart under load
// ---------------------------------------------------------------------------------------------

const BEFORE: u8 = 0;
const RESTARTING: u8 = 1;
const AFTER: u8 = 2;

/// What one worker saw.
#[derive(Default)]
struct WorkerLog {
    /// Sessions whose create returned Ok: id -> token.
    created: Vec<(Uuid, RefreshToken)>,
    /// Successful calls by the phase in which they started.
    ok_by_start_phase: [u64; 3],
    /// Errors: (phase at start, phase at end, variant, elapsed since the restart finished).
    errors: Vec<(u8, u8, String, Option<Duration>)>,
    /// Lookups of an acknowledged session that found nothing or another session.
    wrong_lookups: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_during_lookups_and_creates_recovers_exclusive() {
    restart_during_lookups_and_creates_recovers_without_losing_acknowledged_writes(
        HotPath::Exclusive,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_during_lookups_and_creates_recovers_pipelined() {
    restart_during_lookups_and_creates_recovers_without_losing_acknowledged_writes(pipelined(2))
        .await;
}

async fn restart_during_lookups_and_creates_recovers_without_losing_acknowledged_writes(
    hot_path: HotPath,
) {
    let settings = PoolSettings::default()
        .max_size(8)
        .create_timeout(Duration::from_secs(2))
        .wait_timeout(Duration::from_secs(2))
        .recycle_timeout(Duration::from_secs(2));
    let (server, repo) = private_server(&settings, hot_path).await;
    let admin = server.client().await;
    let mut users = Vec::new();
    for _ in 0..8 {
        users.push(insert_user(&admin).await);
    }
    drop(admin);

    let phase = Arc::new(AtomicU8::new(BEFORE));
    let stop = Arc::new(AtomicBool::new(false));
    let restarted_at: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    // Successful calls per worker, to see the load going before the restart.
    let successes: Arc<Vec<AtomicU64>> =
        Arc::new(users.iter().map(|_| AtomicU64::new(0)).collect());
    let mut workers = Vec::new();
    for (n, user) in users.into_iter().enumerate() {
        let (repo, phase, stop, restarted_at, successes) = (
            repo.clone(),
            phase.clone(),
            stop.clone(),
            restarted_at.clone(),
            successes.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut log = WorkerLog::default();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let start_phase = phase.load(Ordering::SeqCst);
                // Every third call creates; the others look up a session this worker created.
                let result = if log.created.is_empty() || (i + n).is_multiple_of(3) {
                    let new = NewSession::new(user, DAY).with_device_info(format!("worker {n}"));
                    match tokio::time::timeout(Duration::from_secs(10), repo.create(&new)).await {
                        Ok(Ok((session, token))) => {
                            log.created.push((session.id, token));
                            Ok(())
                        }
                        Ok(Err(err)) => Err(Some(err)),
                        Err(_) => Err(None),
                    }
                } else {
                    let (id, token) = &log.created[i % log.created.len()];
                    let lookup = repo.find_by_token(token.expose_secret());
                    match tokio::time::timeout(Duration::from_secs(10), lookup).await {
                        Ok(Ok(found)) => {
                            if found.map(|s| s.id) != Some(*id) {
                                log.wrong_lookups += 1;
                            }
                            Ok(())
                        }
                        Ok(Err(err)) => Err(Some(err)),
                        Err(_) => Err(None),
                    }
                };
                let end_phase = phase.load(Ordering::SeqCst);
                match result {
                    Ok(()) => {
                        log.ok_by_start_phase[usize::from(start_phase)] += 1;
                        successes[n].fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => {
                        let variant = match &err {
                            Some(err) => {
                                outage_variant(err).unwrap_or_else(|| format!("UNEXPECTED {err:?}"))
                            }
                            None => "UNEXPECTED: the call hung for 10 s".into(),
                        };
                        let since = restarted_at.get().map(|at| at.elapsed());
                        log.errors.push((start_phase, end_phase, variant, since));
                        // Do not spin while the server is away.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            log
        }));
    }

    // The load first: every worker has created sessions and looked them up, 20 calls each.
    let deadline = Instant::now() + Duration::from_secs(20);
    while successes.iter().any(|n| n.load(Ordering::Relaxed) < 20) {
        assert!(
            Instant::now() < deadline,
            "the load did not get going within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    phase.store(RESTARTING, Ordering::SeqCst);
    let restart_began = Instant::now();
    let restarter = server.clone();
    tokio::task::spawn_blocking(move || restarter.restart())
        .await
        .expect("restart");
    let restart_took = restart_began.elapsed();
    restarted_at.set(Instant::now()).unwrap();
    phase.store(AFTER, Ordering::SeqCst);
    // Not a wait for an event but the window watched after the restart: the pool must serve
    // without errors through its last second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);

    let mut created: HashMap<Uuid, RefreshToken> = HashMap::new();
    let mut ok_by_start_phase = [0u64; 3];
    let mut variants: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut wrong_lookups = 0;
    for worker in workers {
        let log = tokio::time::timeout(Duration::from_secs(30), worker)
            .await
            .expect("workers stop within 30 s")
            .expect("worker panicked");
        created.extend(log.created);
        for (total, n) in ok_by_start_phase.iter_mut().zip(log.ok_by_start_phase) {
            *total += n;
        }
        for error in &log.errors {
            *variants.entry(error.2.clone()).or_default() += 1;
        }
        errors.extend(log.errors);
        wrong_lookups += log.wrong_lookups;
    }
    let last_error_after_restart = errors.iter().filter_map(|e| e.3).max();
    println!(
        "restart took {restart_took:?}; successful calls by starting phase \
         [before, restarting, after] = {ok_by_start_phase:?}; {} errors; \
         last error {last_error_after_restart:?} after the restart finished; variants seen: \
         {variants:#?}",
        errors.len()
    );

    assert!(
        ok_by_start_phase[usize::from(BEFORE)] > 0,
        "nothing succeeded before the restart"
    );
    let unexpected: Vec<_> = errors
        .iter()
        .filter(|e| e.2.starts_with("UNEXPECTED"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "errors other than Connect, PoolTimeout or Database: {unexpected:?}"
    );
    let before: Vec<_> = errors.iter().filter(|e| e.1 == BEFORE).collect();
    assert!(
        before.is_empty(),
        "errors before the restart began: {before:?}"
    );
    assert!(
        !errors.is_empty(),
        "a fast restart under load should surface at least one error"
    );
    assert!(
        ok_by_start_phase[usize::from(AFTER)] > 0,
        "the pool served no successful call after the restart"
    );
    // The pool recovers promptly: no error in the last second of the run.
    let late: Vec<_> = errors
        .iter()
        .filter(|e| e.3.is_some_and(|since| since > Duration::from_millis(1500)))
        .collect();
    assert!(
        late.is_empty(),
        "errors more than 1.5 s after the restart: {late:?}"
    );
    assert_eq!(
        wrong_lookups, 0,
        "lookups of acknowledged sessions found nothing or another session"
    );

    // Every acknowledged create is in the table, with its token's hash.
    let admin = server.client().await;
    let ids: Vec<Uuid> = created.keys().copied().collect();
    let rows = admin
        .query(
            "SELECT id, refresh_token_hash FROM auth.user_sessions WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .expect("read back the sessions");
    let stored: HashMap<Uuid, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let lost: Vec<_> = ids.iter().filter(|id| !stored.contains_key(id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged creates are missing: {lost:?}",
        lost.len(),
        ids.len()
    );
    for (id, token) in &created {
        assert_eq!(stored[id], token.hash().as_str(), "session {id} hash");
    }
    println!("{} acknowledged creates all present", ids.len());
}
