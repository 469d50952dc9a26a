//! Live sessions report through the `metrics` facade: answers from memory and from the
//! database, endings heard, activity statements. A process of its own, for its own recorder.

mod common;

use std::time::Duration;

use auth_sessions::metrics::{
    LIVE_ACTIVITY_BATCHES, LIVE_ACTIVITY_ROWS, LIVE_CHECKS, LIVE_ENDINGS,
};
use auth_sessions::{LiveSettings, NewSession, SessionRepo};
use common::TestDb;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[tokio::test]
async fn live_sessions_count_answers_endings_and_activity_batches_push() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this process");
    let db = TestDb::new().await;
    let live = SessionRepo::new(db.pool.clone())
        .live_sessions(
            LiveSettings::default()
                .staleness_bound(Duration::from_secs(60))
                .flush_interval(Duration::from_secs(50)),
        )
        .unwrap();
    assert!(live.listening(Duration::from_secs(10)).await);
    let user = db.user().await;
    let key = db
        .repo
        .create(&NewSession::new(user, Duration::from_secs(3600)))
        .await
        .unwrap()
        .0
        .key();
    assert!(live.check(key).await.unwrap().is_some()); // database
    assert!(live.check(key).await.unwrap().is_some()); // memory
    live.record_activity(key, Some("198.51.100.9".parse().unwrap()));
    assert_eq!(live.flush().await.unwrap(), 1);
    assert!(db.repo.revoke(key).await.unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while live.status().endings_heard == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(live.check(key).await.unwrap().is_none()); // memory
    live.shutdown().await;

    let mut counters = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if let DebugValue::Counter(n) = value {
            let labels: Vec<String> = key
                .key()
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            *counters
                .entry((key.key().name().to_owned(), labels.join(",")))
                .or_insert(0) += n;
        }
    }
    let counter = |name: &str, labels: &str| {
        counters
            .get(&(name.to_owned(), labels.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(counter(LIVE_CHECKS, "answer=database"), 1, "{counters:?}");
    assert_eq!(counter(LIVE_CHECKS, "answer=memory"), 2, "{counters:?}");
    assert_eq!(counter(LIVE_ENDINGS, ""), 1, "{counters:?}");
    assert_eq!(counter(LIVE_ACTIVITY_BATCHES, ""), 1, "{counters:?}");
    assert_eq!(counter(LIVE_ACTIVITY_ROWS, ""), 1, "{counters:?}");
}
