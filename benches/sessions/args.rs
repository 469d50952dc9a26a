//! The command line: flags, their defaults, and what `--quick` shortens.

use std::str::FromStr;

pub(crate) struct Args {
    pub(crate) sessions: i64,
    pub(crate) seconds: f64,
    pub(crate) expired: i64,
    pub(crate) tombstones: usize,
    pub(crate) cleanup_batch: u32,
    pub(crate) cleanup_pause_ms: u64,
    pub(crate) only_cleanup: bool,
    pub(crate) only_lookups: bool,
    pub(crate) only_pipelined: bool,
    pub(crate) only_reuse_proof: bool,
    pub(crate) only_live: bool,
    pub(crate) pipeline_connections: usize,
}

pub(crate) fn args() -> Args {
    let mut args = Args {
        sessions: 1_000_000,
        seconds: 5.0,
        expired: 1_000_000,
        tombstones: 10_000,
        cleanup_batch: 1000,
        cleanup_pause_ms: 50,
        only_cleanup: false,
        only_lookups: false,
        only_pipelined: false,
        only_reuse_proof: false,
        only_live: false,
        pipeline_connections: 2,
    };
    let mut it = std::env::args().skip(1);
    fn value<T: FromStr>(it: &mut impl Iterator<Item = String>, flag: &str) -> T {
        it.next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number"))
    }
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => {
                args.sessions = 100_000;
                args.expired = 100_000;
                args.seconds = 2.0;
            }
            "--sessions" => args.sessions = value(&mut it, "--sessions"),
            "--expired" => args.expired = value(&mut it, "--expired"),
            "--seconds" => args.seconds = value(&mut it, "--seconds"),
            "--tombstones" => args.tombstones = value(&mut it, "--tombstones"),
            "--cleanup-batch" => args.cleanup_batch = value(&mut it, "--cleanup-batch"),
            "--cleanup-pause-ms" => args.cleanup_pause_ms = value(&mut it, "--cleanup-pause-ms"),
            "--only-cleanup" => args.only_cleanup = true,
            "--only-lookups" => args.only_lookups = true,
            "--only-pipelined" => args.only_pipelined = true,
            "--only-reuse-proof" => args.only_reuse_proof = true,
            "--only-live" => args.only_live = true,
            "--pipeline-connections" => {
                args.pipeline_connections = value(&mut it, "--pipeline-connections")
            }
            _ => {} // cargo bench passes --bench
        }
    }
    args
}
