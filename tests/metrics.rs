//! The counters operators scrape, read back through a recorder. One test in its own binary:
//! the recorder is process-wide.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use auth_sessions::metrics::{
    CAP_REFUSALS, CLEANUP_BATCHES, CLEANUP_ROWS, EVICTIONS, POOL_TIMEOUTS, POOL_WAIT, ROTATIONS,
};
use auth_sessions::{
    CapPolicy, Error, NewSession, PoolSettings, Rotation, RotationKey, SessionPolicy, SessionRepo,
};
use common::TestDb;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};

/// Running totals: a snapshot drains the recorder (counters are swapped to zero, histograms
/// emptied), so every read adds what it drained.
#[derive(Default)]
struct Totals {
    counters: BTreeMap<(String, Vec<(String, String)>), u64>,
    samples: BTreeMap<String, usize>,
}

impl Totals {
    fn drain(&mut self, snapshotter: &Snapshotter) {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key: CompositeKey = key;
            let name = key.key().name().to_owned();
            match (key.kind(), value) {
                (MetricKind::Counter, DebugValue::Counter(n)) => {
                    let mut labels: Vec<(String, String)> = key
                        .key()
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect();
                    labels.sort();
                    *self.counters.entry((name, labels)).or_default() += n;
                }
                (MetricKind::Histogram, DebugValue::Histogram(values)) => {
                    *self.samples.entry(name).or_default() += values.len();
                }
                _ => {}
            }
        }
    }

    /// The total of counter `name` with exactly these labels (0 when never recorded).
    fn counter(&mut self, snapshotter: &Snapshotter, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.drain(snapshotter);
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        self.counters
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0)
    }

    fn histogram_samples(&mut self, snapshotter: &Snapshotter, name: &str) -> usize {
        self.drain(snapshotter);
        self.samples.get(name).copied().unwrap_or(0)
    }
}

#[tokio::test]
async fn counters_report_rotations_evictions_refusals_cleanup_and_pool_waits() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this process");
    auth_sessions::metrics::describe();
    let mut totals = Totals::default();

    let db = TestDb::new().await;
    let key = RotationKey::from_bytes(&[5; 32]).unwrap();
    let policy = SessionPolicy::default()
        .rotation_key(key)
        .rotation_grace(Duration::from_secs(60))
        .max_sessions_per_user(Some(2), CapPolicy::EvictLeastRecentlyActive);
    let repo = SessionRepo::with_policy(db.pool.clone(), policy.clone()).unwrap();
    let user = db.user().await;
    let new = NewSession::new(user, Duration::from_secs(3600));

    // Rotations: rotated, grace, unknown, reused (the first token after its successor was
    // rotated), then revoked (the holder's token after the theft alarm).
    let (_, t0) = repo.create(&new).await.unwrap();
    let Rotation::Rotated { token: t1, .. } = repo.rotate(t0.expose_secret()).await.unwrap() else {
        panic!("rotate");
    };
    assert!(matches!(
        repo.rotate(t0.expose_secret()).await.unwrap(),
        Rotation::Rotated { .. }
    ));
    let foreign = RotationKey::from_bytes(&[6; 32]).unwrap();
    let forged = foreign.successor(&t1).unwrap();
    assert_eq!(
        repo.rotate(forged.expose_secret()).await.unwrap(),
        Rotation::Unknown
    );
    let Rotation::Rotated { token: t2, .. } = repo.rotate(t1.expose_secret()).await.unwrap() else {
        panic!("rotate");
    };
    assert!(matches!(
        repo.rotate(t0.expose_secret()).await.unwrap(),
        Rotation::TokenReused { .. }
    ));
    assert!(matches!(
        repo.rotate(t2.expose_secret()).await.unwrap(),
        Rotation::Revoked(_)
    ));
    for (outcome, expected) in [
        ("rotated", 2),
        ("grace", 1),
        ("unknown", 1),
        ("reused", 1),
        ("revoked", 1),
        ("expired", 0),
    ] {
        assert_eq!(
            totals.counter(&snapshotter, ROTATIONS, &[("outcome", outcome)]),
            expected,
            "{outcome}"
        );
    }

    // Evictions at a cap of 2: the third and fourth logins evict one each.
    for _ in 0..4 {
        repo.create(&new).await.unwrap();
    }
    assert_eq!(totals.counter(&snapshotter, EVICTIONS, &[]), 2);

    // A refusal.
    let refusing = SessionRepo::with_policy(
        db.pool.clone(),
        policy.max_sessions_per_user(Some(2), CapPolicy::Refuse),
    )
    .unwrap();
    assert!(matches!(
        refusing.create(&new).await,
        Err(Error::SessionCapReached)
    ));
    assert_eq!(totals.counter(&snapshotter, CAP_REFUSALS, &[]), 1);

    // Cleanup: three expired sessions, batches of two.
    for _ in 0..3 {
        let (session, _) = repo
            .create(&NewSession::new(db.user().await, Duration::from_secs(60)))
            .await
            .unwrap();
        db.expire(session.id).await;
    }
    let mut batches = 0;
    while repo.delete_expired_batch(2).await.unwrap().deleted() == 2 {
        batches += 1;
    }
    batches += 1;
    assert_eq!(totals.counter(&snapshotter, CLEANUP_BATCHES, &[]), batches);
    assert!(totals.counter(&snapshotter, CLEANUP_ROWS, &[]) >= 3);

    // Every call above waited for a connection; one that finds none in time is a timeout.
    assert!(totals.histogram_samples(&snapshotter, POOL_WAIT) > 10);
    let tiny = common::pool_for(
        db.config(),
        &PoolSettings::default()
            .max_size(1)
            .wait_timeout(Duration::from_millis(100)),
    );
    let held = tiny.get().await.unwrap();
    let starved = SessionRepo::new(tiny.clone());
    assert!(matches!(
        starved.count_live(user).await,
        Err(Error::PoolTimeout)
    ));
    drop(held);
    assert_eq!(totals.counter(&snapshotter, POOL_TIMEOUTS, &[]), 1);
}
