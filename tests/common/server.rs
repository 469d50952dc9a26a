//! PostgreSQL servers of our own, started from the installed binaries, for the tests and the
//! example (which includes this file with `#[path]`).
//!
//! [`database_url`] picks the server: `DATABASE_URL` when it is set, and nothing else (a
//! `DATABASE_URL` that cannot be reached stays a loud failure of whoever connects); otherwise
//! the default `postgres://postgres@localhost:5432/postgres` when it accepts a connection;
//! otherwise the shared throwaway server below, and one line on stderr says so.
//!
//! The shared throwaway server serves every process of a test run (cargo runs each test binary
//! as a separate process) and the runs after it. It lives in `/tmp/auth-sessions-pg<major>-u<uid>-
//! net<namespace>`: one per PostgreSQL major version, user and network namespace (a server
//! listening in another namespace cannot be reached from this one). A process that needs it
//! takes an exclusive `flock` on `lock` in that directory (released by the kernel when the
//! process ends, however it ends), then reuses the server if `data/postmaster.pid` names a live
//! postmaster of that data directory that answers, or else starts it, creating the cluster
//! first if there is none (or if the existing one does not start). The server is left running
//! for the next run: starting it costs seconds, reusing it nothing. It listens on 127.0.0.1 and
//! a socket in its 0700 directory, with a random password kept in that directory (mode 0600),
//! so other local users cannot use it; durability is off (it holds only test data, and a
//! cluster that does not start again is created anew). Stop it with `pg_ctl -D <dir>/data stop`
//! (as `postgres` when root), or let the next reboot clear `/tmp`.
//!
//! [`PrivateServer`] is a server for one test that stops, restarts or breaks it
//! (tests/faults_restart.rs, tests/faults_connections.rs): its own temporary directory and
//! port, stopped and removed on drop.
//!
//! Why hand-written rather than a crate such as `pgtemp` (0.7, evaluated): as root it runs
//! `initdb` and `postgres` through `sudo -u postgres`, and Debian's images, where CI runs as
//! root, have no `sudo` (it fails with "Failed to start initdb"); its server is a child of the
//! process that started it and stops when that process drops it, so it cannot be shared by the
//! test binaries of one run nor kept for the next one (each binary would create and start its
//! own cluster); it cannot restart a server, which the fault tests do under load; and it
//! returns before the server accepts connections. This one helper serves the tests, the fault
//! tests and the example instead, and runs the binaries as `postgres` through `runuser`.

// Each includer (the tests, the example) uses a different part of this module.
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, Config, NoTls};

/// The settings every server of ours runs with, besides its port and socket directory.
const SERVER_SETTINGS: &str = "-c listen_addresses=127.0.0.1";
/// The shared server's own: room for several test processes at once, and durability off (it
/// holds nothing but test data).
const SHARED_SETTINGS: &str =
    "-c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off";

// ---------------------------------------------------------------------------------------------
// Choosing the server
// ---------------------------------------------------------------------------------------------

/// The server to use: `DATABASE_URL`, else the default server if it can be used, else the
/// shared throwaway server (started if needed). Decided once per process; blocking.
pub fn database_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Some(url) = std::env::var_os("DATABASE_URL") {
            return url
                .into_string()
                .unwrap_or_else(|url| panic!("DATABASE_URL is not valid UTF-8: {url:?}"));
        }
        let default = auth_sessions::DEFAULT_DATABASE_URL;
        let Err(reason) = probe(default) else {
            return default.to_owned();
        };
        let server = SharedServer::ensure();
        // Straight to the stream: the test harness captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "no usable PostgreSQL at {default} ({reason}) and DATABASE_URL is unset: {} a \
             throwaway server from {} at 127.0.0.1:{} (data in {}, left running for the next run)",
            if server.started { "started" } else { "using" },
            server.bindir.display(),
            server.port,
            server.dir.display(),
        );
        server.url
    })
    .clone()
}

/// Connects once to `url`: `Err` with the reason when the server refuses, cannot be reached
/// within 5 s, or rejects the login.
fn probe(url: &str) -> Result<(), String> {
    let mut config = Config::from_str(url).map_err(|err| err.to_string())?;
    config.connect_timeout(Duration::from_secs(5));
    block_on(async move {
        let (client, connection) = config.connect(NoTls).await.map_err(|err| {
            // "error connecting to server" alone does not say why: add the cause.
            match std::error::Error::source(&err) {
                Some(source) => format!("{err}: {source}"),
                None => err.to_string(),
            }
        })?;
        drop(client);
        let _ = connection.await;
        Ok(())
    })
}

/// Runs `future` to completion on a runtime of its own, on a thread of its own: callable from
/// plain code and from inside another runtime alike.
fn block_on<T: Send + 'static>(future: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(future)
    })
    .join()
    .expect("the helper thread panicked")
}

// ---------------------------------------------------------------------------------------------
// The installed binaries
// ---------------------------------------------------------------------------------------------

/// PostgreSQL's server binaries, and how to run them.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub bindir: PathBuf,
    /// When we are root: the `postgres` user's uid and gid, whom the binaries run as (`initdb`
    /// and `postgres` refuse to run as root).
    run_as: Option<(u32, u32)>,
}

impl Binaries {
    /// `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin` (Debian and Ubuntu
    /// keep the server binaries there, off `PATH`, and `pg_config` comes with the development
    /// package): the first that has `initdb`, `pg_ctl` and `postgres`. Panics with instructions
    /// when there is none.
    pub fn find() -> Self {
        let mut candidates = Vec::new();
        if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
            && output.status.success()
        {
            candidates.push(PathBuf::from(
                String::from_utf8_lossy(&output.stdout).trim(),
            ));
        }
        let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse().ok()?;
                Some((version, entry.path().join("bin")))
            })
            .collect();
        versioned.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
        candidates.extend(versioned.into_iter().map(|(_, bin)| bin));
        let bindir = candidates
            .into_iter()
            .find(|dir| {
                ["initdb", "pg_ctl", "postgres"]
                    .iter()
                    .all(|program| dir.join(program).is_file())
            })
            .unwrap_or_else(|| {
                panic!(
                    "PostgreSQL's server binaries (initdb, pg_ctl, postgres) are in neither \
                     `pg_config --bindir` nor /usr/lib/postgresql/*/bin: install them (for \
                     example `apt-get install postgresql`), or set DATABASE_URL to a server"
                )
            });
        let run_as = (unsafe { libc::geteuid() } == 0).then(postgres_user);
        Self { bindir, run_as }
    }

    /// The major version of these binaries (`postgres -V`), such as "15".
    fn major_version(&self) -> String {
        let output = self.run("postgres", Path::new("/"), &["-V"]);
        let text = String::from_utf8_lossy(&output.stdout);
        let version = text.rsplit_once(") ").map_or(text.as_ref(), |(_, v)| v);
        let major: String = version.chars().take_while(char::is_ascii_digit).collect();
        assert!(!major.is_empty(), "unexpected `postgres -V` output: {text}");
        major
    }

    /// A command for one of the binaries, run as `postgres` when we are root, in `cwd` (a
    /// directory that user can enter).
    fn command(&self, program: &str, cwd: &Path) -> Command {
        let binary = self.bindir.join(program);
        let mut command = if self.run_as.is_some() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(binary);
            command
        } else {
            Command::new(binary)
        };
        command.current_dir(cwd).env("LC_ALL", "C");
        command
    }

    fn run(&self, program: &str, cwd: &Path, args: &[&str]) -> Output {
        self.command(program, cwd)
            .args(args)
            .output()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run {program} from {}{}: {err}",
                    self.bindir.display(),
                    if self.run_as.is_some() {
                        " through `runuser -u postgres --` (util-linux)"
                    } else {
                        ""
                    }
                )
            })
    }

    /// Gives `path` to the user the binaries run as (nothing to do unless we are root).
    fn hand_over(&self, path: &Path) {
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .unwrap_or_else(|err| panic!("chown {}: {err}", path.display()));
        }
    }

    /// `initdb` of a cluster in `data`, superuser `postgres` with the password in
    /// `password_file`.
    fn initdb(&self, cwd: &Path, data: &Path, password_file: &Path) {
        let output = self.run(
            "initdb",
            cwd,
            &[
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "--pwfile",
                &password_file.display().to_string(),
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
                &data.display().to_string(),
            ],
        );
        check("initdb", &output, None);
    }

    /// `pg_ctl` on the cluster in `data`, logging to `log`, with `options` for the server.
    fn pg_ctl(&self, cwd: &Path, data: &Path, log: &Path, options: &str, args: &[&str]) -> Output {
        let (data, log) = (data.display().to_string(), log.display().to_string());
        let mut all = vec!["-D", &data, "-l", &log, "-o", options];
        all.extend_from_slice(args);
        self.run("pg_ctl", cwd, &all)
    }
}

/// The `postgres` user's uid and gid, or a clear failure.
fn postgres_user() -> (u32, u32) {
    let id = |flag: &str| -> Option<u32> {
        let output = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8_lossy(&output.stdout).trim().parse().ok()
    };
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => (uid, gid),
        _ => panic!(
            "running as root: PostgreSQL refuses to run as root, and there is no `postgres` \
             user to run it as (the server package creates it)"
        ),
    }
}

fn check(what: &str, output: &Output, log: Option<&Path>) {
    if !output.status.success() {
        let log = log
            .and_then(|log| fs::read_to_string(log).ok())
            .unwrap_or_default();
        panic!(
            "{what} failed ({}):\nstdout: {}\nstderr: {}\nserver log:\n{log}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
    }
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A random password: 32 hex digits.
fn random_password() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("random bytes");
    hex::encode(bytes)
}

/// Writes `text` to a new file readable by its owner only.
fn write_private(path: &Path, text: &str) {
    let _ = fs::remove_file(path);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
}

fn url(password: &str, port: u16) -> String {
    format!("postgres://postgres:{password}@127.0.0.1:{port}/postgres")
}

// ---------------------------------------------------------------------------------------------
// The shared throwaway server
// ---------------------------------------------------------------------------------------------

/// The shared throwaway server, running and answering.
pub struct SharedServer {
    pub url: String,
    pub port: u16,
    pub dir: PathBuf,
    pub bindir: PathBuf,
    /// Whether this call started it (rather than finding it running).
    pub started: bool,
}

impl SharedServer {
    /// Reuses or starts the shared server in its usual directory (see the module's comment).
    /// Blocking; panics with the reason and the server's log when it cannot.
    pub fn ensure() -> Self {
        let binaries = Binaries::find();
        let netns = fs::read_link("/proc/self/ns/net")
            .ok()
            .map(|link| {
                link.to_string_lossy()
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect::<String>()
            })
            .unwrap_or_default();
        let dir = PathBuf::from("/tmp").join(format!(
            "auth-sessions-pg{}-u{}-net{netns}",
            binaries.major_version(),
            unsafe { libc::geteuid() }
        ));
        Self::ensure_in(&binaries, &dir)
    }

    /// Reuses or starts the shared server whose directory is `dir`.
    pub fn ensure_in(binaries: &Binaries, dir: &Path) -> Self {
        private_dir(binaries, dir);
        let _lock = DirLock::acquire(&dir.join("lock"));
        let data = dir.join("data");
        let password_file = dir.join("password");
        let log = dir.join("log");
        let found = |port, started| Self {
            url: url(&read_password(&password_file), port),
            port,
            dir: dir.to_owned(),
            bindir: binaries.bindir.clone(),
            started,
        };

        if let Some(port) = running_postmaster(&data) {
            if password_file.is_file() && answers(&url(&read_password(&password_file), port)) {
                return found(port, false);
            }
            // Ours, but not answering within the deadline: stop it and start it again.
            let _ = binaries.pg_ctl(dir, &data, &log, "", &["-w", "-m", "immediate", "stop"]);
        } else {
            // A postmaster.pid left by a server that is gone (its PID dead, or reused by a
            // process that is not a server of this directory) would stop the start.
            let _ = fs::remove_file(data.join("postmaster.pid"));
        }

        let mut created = false;
        if !data.join("PG_VERSION").is_file() || !password_file.is_file() {
            create_cluster(binaries, dir);
            created = true;
        }
        loop {
            match start(binaries, dir) {
                Ok(port) => return found(port, true),
                Err(output) if created => check("pg_ctl start", &output, Some(&log)),
                // A cluster that does not start (left half-written, or by a crash with fsync
                // off): create it anew, once.
                Err(_) => {
                    create_cluster(binaries, dir);
                    created = true;
                }
            }
        }
    }
}

/// Creates `dir` (mode 0700, given to the server's user) unless it exists, and refuses one that
/// is not a private directory of ours: a symbolic link, another owner, or open to others.
fn private_dir(binaries: &Binaries, dir: &Path) {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
        Err(err) => panic!("create {}: {err}", dir.display()),
    }
    let meta =
        fs::symlink_metadata(dir).unwrap_or_else(|err| panic!("stat {}: {err}", dir.display()));
    let me = unsafe { libc::geteuid() };
    let owner_ok = meta.uid() == me || binaries.run_as.is_some_and(|(uid, _)| meta.uid() == uid);
    assert!(
        meta.file_type().is_dir() && owner_ok && meta.mode() & 0o077 == 0,
        "{} is not a private directory of this user (a directory, owned by uid {me}{}, mode \
         0700): remove it",
        dir.display(),
        binaries
            .run_as
            .map_or(String::new(), |(uid, _)| format!(" or {uid}")),
    );
    if meta.uid() == me {
        binaries.hand_over(dir);
    }
}

/// An exclusive `flock` on a file, held until dropped (or the process ends).
struct DirLock(File);

impl DirLock {
    fn acquire(path: &Path) -> Self {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .unwrap_or_else(|err| panic!("open {}: {err}", path.display()));
        // Starting a server takes seconds; three minutes means the holder is stuck.
        let deadline = Instant::now() + Duration::from_secs(180);
        while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            assert_eq!(
                err.raw_os_error(),
                Some(libc::EWOULDBLOCK),
                "flock {}: {err}",
                path.display()
            );
            assert!(
                Instant::now() < deadline,
                "{} has been locked for 3 minutes (by PID {})",
                path.display(),
                fs::read_to_string(path).unwrap_or_default().trim()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Who holds it, for the message above.
        let _ = file.set_len(0);
        let _ = write!(file, "{}", std::process::id());
        Self(file)
    }
}

fn read_password(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
        .trim()
        .to_owned()
}

/// The port of the postmaster that `data/postmaster.pid` names, if that process is alive and
/// is a server of this data directory (its working directory), not a stale file's PID reused.
fn running_postmaster(data: &Path) -> Option<u16> {
    let pid_file = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = pid_file.lines().collect();
    let pid: u32 = lines.first()?.trim().parse().ok()?;
    let port: u16 = lines.get(3)?.trim().parse().ok()?;
    let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    (fs::canonicalize(data).ok()? == cwd).then_some(port)
}

/// Whether the server at `url` accepts a connection within 20 s (it may be starting).
fn answers(url: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if probe(url).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A new cluster in `dir/data` with a new password, replacing whatever was there. Written to
/// `data.new` first, so that a cluster interrupted half-way is never taken for a whole one.
fn create_cluster(binaries: &Binaries, dir: &Path) {
    let (data, fresh) = (dir.join("data"), dir.join("data.new"));
    for old in [&data, &fresh] {
        if old.exists() {
            fs::remove_dir_all(old).unwrap_or_else(|err| panic!("remove {}: {err}", old.display()));
        }
    }
    let password_file = dir.join("password");
    write_private(&password_file, &random_password());
    binaries.hand_over(&password_file);
    binaries.initdb(dir, &fresh, &password_file);
    fs::rename(&fresh, &data).expect("rename the new cluster into place");
}

/// Starts the cluster in `dir/data` on a free port; the port, or `pg_ctl`'s output.
fn start(binaries: &Binaries, dir: &Path) -> Result<u16, Output> {
    let (data, log) = (dir.join("data"), dir.join("log"));
    // One log per server lifetime, and the previous one.
    let _ = fs::rename(&log, dir.join("log.1"));
    let mut last = None;
    // The port is free when we look; another process could take it before the server binds
    // it, so try a few.
    for _ in 0..3 {
        let port = free_port();
        let options = format!(
            "-p {port} -k {} {SERVER_SETTINGS} {SHARED_SETTINGS}",
            dir.display()
        );
        let output = binaries.pg_ctl(dir, &data, &log, &options, &["-w", "-t", "60", "start"]);
        if output.status.success() {
            return Ok(port);
        }
        // It may still be coming up after the timeout: make sure it is down before retrying.
        let _ = binaries.pg_ctl(dir, &data, &log, "", &["-w", "-m", "immediate", "stop"]);
        last = Some(output);
    }
    Err(last.expect("at least one attempt"))
}

// ---------------------------------------------------------------------------------------------
// A private server for one test
// ---------------------------------------------------------------------------------------------

/// A PostgreSQL server of one test's own: `initdb` in a fresh temporary directory, listening on
/// a free port of 127.0.0.1 (and a socket in that directory). Stopped (`-m immediate`) and
/// removed on drop.
pub struct PrivateServer {
    /// The temporary directory: `data/` (the cluster), `log`, `password`, and the socket.
    dir: tempfile::TempDir,
    binaries: Binaries,
    password: String,
    /// Server settings beyond [`SERVER_SETTINGS`], on every start.
    options: String,
    pub port: u16,
}

impl PrivateServer {
    /// Creates and starts a server. Blocking (run it with `spawn_blocking` inside a runtime).
    /// Panics with a clear message when PostgreSQL's binaries cannot be found or fail.
    pub fn start() -> Self {
        Self::start_with(|_| {}, "")
    }

    /// [`PrivateServer::start`], with `prepare` writing files into the new cluster's data
    /// directory before its first start (certificates, a `pg_hba.conf`: they are handed over to
    /// the server's user afterwards) and `options` added to the server's settings.
    pub fn start_with(prepare: impl FnOnce(&Path), options: &str) -> Self {
        let binaries = Binaries::find();
        let dir = tempfile::Builder::new()
            .prefix("auth-sessions-pg-")
            .tempdir_in("/tmp")
            .expect("create a temporary directory in /tmp");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
            .expect("chmod 0700 the temporary directory");
        binaries.hand_over(dir.path());
        let password = random_password();
        let password_file = dir.path().join("password");
        write_private(&password_file, &password);
        binaries.hand_over(&password_file);
        let mut server = Self {
            dir,
            binaries,
            password,
            options: options.to_owned(),
            port: 0,
        };
        server
            .binaries
            .initdb(server.dir.path(), &server.data_dir(), &password_file);
        prepare(&server.data_dir());
        for entry in fs::read_dir(server.data_dir()).expect("list the data directory") {
            server
                .binaries
                .hand_over(&entry.expect("a data directory entry").path());
        }
        let mut last = None;
        for _ in 0..5 {
            server.port = free_port();
            let output = server.pg_ctl(&["-w", "-t", "30", "start"]);
            if output.status.success() {
                return server;
            }
            last = Some(output);
        }
        check(
            "pg_ctl start",
            &last.expect("at least one attempt"),
            Some(&server.log_file()),
        );
        unreachable!()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// The connection settings of the `postgres` database, over TCP.
    pub fn config(&self) -> Config {
        Config::from_str(&self.url()).expect("private server URL")
    }

    /// A URL for the `postgres` database, over TCP.
    pub fn url(&self) -> String {
        url(&self.password, self.port)
    }

    /// The connection settings of the `postgres` database over the server's Unix socket.
    pub fn socket_config(&self) -> Config {
        let mut config = Config::new();
        config
            .host_path(self.dir.path())
            .port(self.port)
            .user("postgres")
            .password(self.password.as_str())
            .dbname("postgres");
        config
    }

    /// A plain connection (outside any pool) to the `postgres` database.
    pub async fn client(&self) -> Client {
        let (client, connection) = self
            .config()
            .connect(NoTls)
            .await
            .expect("connect to the private server");
        tokio::spawn(connection);
        client
    }

    /// `pg_ctl restart -m fast -w`. Blocking.
    pub fn restart(&self) {
        let output = self.pg_ctl(&["-w", "-t", "30", "-m", "fast", "restart"]);
        check("pg_ctl restart", &output, Some(&self.log_file()));
    }

    /// `pg_ctl stop -m fast -w`. Blocking.
    pub fn stop(&self) {
        let output = self.pg_ctl(&["-w", "-t", "30", "-m", "fast", "stop"]);
        check("pg_ctl stop", &output, Some(&self.log_file()));
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        let options = format!(
            "-p {} -k {} {SERVER_SETTINGS} {}",
            self.port,
            self.dir.path().display(),
            self.options
        );
        self.binaries.pg_ctl(
            self.dir.path(),
            &self.data_dir(),
            &self.log_file(),
            &options,
            args,
        )
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        // Best effort: the directory goes with `self.dir` right after.
        let _ = self.pg_ctl(&["-w", "-t", "30", "-m", "immediate", "stop"]);
    }
}
