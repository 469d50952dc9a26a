//! Measurement: a run's latencies (`Run`), timed workers (`measure`), a baseline and a
//! contender in alternating slices (`compare`), and the report row most tables print.

use std::future::Future;
use std::time::{Duration, Instant};

/// Latencies of one measured run.
pub(crate) struct Run {
    pub(crate) calls: u64,
    pub(crate) elapsed: Duration,
    pub(crate) latencies_us: Vec<u64>,
}

impl Run {
    pub(crate) fn empty() -> Self {
        Self {
            calls: 0,
            elapsed: Duration::ZERO,
            latencies_us: Vec::new(),
        }
    }

    pub(crate) fn absorb(&mut self, other: Run) {
        self.calls += other.calls;
        self.elapsed += other.elapsed;
        self.latencies_us.extend(other.latencies_us);
    }

    pub(crate) fn throughput(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index] as f64 / 1000.0
    }
}

/// Runs one worker per state, each calling `op` with (a clone of) its state in a loop for
/// `seconds`, and collects every call's latency.
pub(crate) async fn measure<S, F, Fut>(seconds: f64, states: Vec<S>, op: F) -> Run
where
    S: Clone + Send + 'static,
    F: Fn(S, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send,
{
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = states
        .into_iter()
        .enumerate()
        .map(|(worker, state)| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut seed = 0x9E37_79B9_7F4A_7C15u64
                    ^ (worker as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                while Instant::now() < deadline {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let call = Instant::now();
                    op(state.clone(), seed).await;
                    latencies.push(call.elapsed().as_micros() as u64);
                }
                latencies
            })
        })
        .collect();
    let mut latencies_us = Vec::new();
    for task in tasks {
        latencies_us.extend(task.await.expect("worker"));
    }
    Run {
        calls: latencies_us.len() as u64,
        elapsed: started.elapsed(),
        latencies_us,
    }
}

/// Measures a baseline and a contender in alternating slices (baseline, contender, baseline,
/// contender...), so that drift in the machine's load hits both alike.
pub(crate) async fn compare<S1, F1, Fut1, S2, F2, Fut2>(
    seconds: f64,
    baseline: (Vec<S1>, F1),
    contender: (Vec<S2>, F2),
) -> (Run, Run)
where
    S1: Clone + Send + 'static,
    F1: Fn(S1, u64) -> Fut1 + Send + Sync + Clone + 'static,
    Fut1: Future<Output = ()> + Send,
    S2: Clone + Send + 'static,
    F2: Fn(S2, u64) -> Fut2 + Send + Sync + Clone + 'static,
    Fut2: Future<Output = ()> + Send,
{
    const SLICES: u32 = 4;
    let slice = seconds / f64::from(SLICES);
    let (mut a, mut b) = (Run::empty(), Run::empty());
    for _ in 0..SLICES {
        a.absorb(measure(slice, baseline.0.clone(), baseline.1.clone()).await);
        b.absorb(measure(slice, contender.0.clone(), contender.1.clone()).await);
    }
    (a, b)
}

pub(crate) fn row(name: &str, run: &Run, baseline: Option<&Run>) -> String {
    let ratio = baseline.map_or("1.00 (baseline)".to_owned(), |b| {
        format!("{:.2}", run.throughput() / b.throughput())
    });
    format!(
        "| {name} | {:.0} | {:.3} | {:.3} | {ratio} |",
        run.throughput(),
        run.percentile(0.5),
        run.percentile(0.99)
    )
}
