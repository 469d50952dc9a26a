//! The `auth-sessions` command running in the background for a test, its output collected
//! as it comes. Shared by tests/cli.rs and tests/cleanup_cli.rs.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::TestDb;

/// The command running in the background, its output collected line by line as it comes.
pub struct Running {
    pub child: std::process::Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

/// How long any wait on the background command may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

impl Running {
    pub fn spawn(db: &TestDb, args: &[&str]) -> Self {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("auth-sessions"))
            .env_remove("DATABASE_URL")
            .env_remove("RUST_LOG")
            .arg("--database-url")
            .arg(db.url())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let collect = |pipe: Box<dyn std::io::Read + Send>| {
            let text = Arc::new(Mutex::new(String::new()));
            let sink = text.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut sink = sink.lock().unwrap();
                    sink.push_str(&line);
                    sink.push('\n');
                }
            });
            text
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    pub fn output(&self) -> (String, String) {
        (
            self.stdout.lock().unwrap().clone(),
            self.stderr.lock().unwrap().clone(),
        )
    }

    /// Polls until `ready(stdout, stderr)` holds, failing the test after [`DEADLINE`].
    pub async fn wait_for(&mut self, what: &str, ready: impl Fn(&str, &str) -> bool) {
        let started = Instant::now();
        loop {
            let (out, err) = self.output();
            if ready(&out, &err) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("exited ({status}) before {what}:\n{out}\n{err}");
            }
            assert!(
                started.elapsed() < DEADLINE,
                "timed out waiting for {what}:\n{out}\n{err}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends SIGINT, as Ctrl-C does.
    pub fn interrupt(&self) {
        let sent = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Polls until the process exits, failing the test after `within`.
    pub async fn exit_status(&mut self, within: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The pipes are read to their end before the output is looked at.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return status;
            }
            if started.elapsed() > within {
                let _ = self.child.kill();
                let (out, err) = self.output();
                panic!("still running {within:?} after the signal:\n{out}\n{err}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
