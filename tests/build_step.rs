//! Proves the guarantees of the code-generation step by building throwaway copies of this
//! repository with a real `cargo build`, and by running the generator on them. (Builds of a
//! service that depends on the crate are in tests/consumer.rs.)
//!
//! The root package's build script (`build.rs`) and the generated crate's
//! (`generated/build/main.rs`, written by the generator from `codegen/templates/build.rs`) run
//! one check (`build/check.rs`): they only compare `cornucopia.lock` with the files on disk; the
//! generator (`cargo run -p auth-sessions-codegen -- generate | check`) is the only thing that
//! regenerates. What is proved, and why each matters:
//!
//! - **The root package's build script is a check of its own**: a schema change fails it,
//!   naming the file and the command, whatever the generated crate's script does.
//! - **Unchanged inputs need no server**, and neither do a CRLF checkout nor stray files under
//!   `generated/` (editor swap files, `.DS_Store`): the lock hashes contents with line endings
//!   normalised, and lists the generated files, so nothing else under `generated/` counts.
//! - **No build regenerates or touches a database**, even with a server at hand: a stale tree
//!   fails the build with the command that regenerates, writes nothing, and prints no connection
//!   string. No cargo runs inside the build, so a configured `build.build-dir` cannot deadlock it.
//! - **The generator uses only its own server** (`AUTH_SESSIONS_CODEGEN_URL`, local by default,
//!   never `DATABASE_URL`), and describes it without the password, whichever form carries it.
//! - **The generator records what it read**: an input saved while it runs leaves the tree
//!   stale, and files are replaced by rename (a reader never sees a truncated file); files it did
//!   not produce are left alone.
//! - **Checkouts get LF line endings** from `.gitattributes`, even with `core.autocrlf`.
//!
//! Each test copies the sources into a fresh temporary directory, so the working tree is never
//! modified. All builds share one target directory, `target/build-step-tests`, so dependencies
//! compile once (the generator and Cornucopia go to `target/build-step-tests/codegen`); the
//! tests take turns running cargo. Builds run offline.
//!
//! The tests that regenerate need a PostgreSQL server for the generator: the one named by
//! `AUTH_SESSIONS_CODEGEN_URL` when it is set (unreachable, they fail saying so rather than
//! skipping); else the generator's default, `postgres://postgres@localhost:5432/postgres`, when
//! it lets them in; else the tests' throwaway server (tests/common/server.rs).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

mod common;

/// The variable that names the generator's server.
const CODEGEN_URL_VAR: &str = "AUTH_SESSIONS_CODEGEN_URL";

/// The generator's server when that variable is unset.
const DEFAULT_CODEGEN_URL: &str = "postgres://postgres@localhost:5432/postgres";

/// A URL on which nothing listens: any attempt to connect fails.
const DEAD_URL: &str = "postgres://postgres@127.0.0.1:1/postgres";

/// A new query appended to `queries/sessions.sql`; Cornucopia turns it into
/// `pub fn probe_regeneration() -> ProbeRegenerationStmt`.
const PROBE_QUERY: &str = "\n--! probe_regeneration\n\
                           --- Probe added by tests/build_step.rs.\n\
                           SELECT 41 + 1 AS answer;\n";

/// A public function for `src/lib.rs` that compiles only against the regenerated code.
const PROBE_CALLER: &str = "\n/// Probe added by tests/build_step.rs; compiles only against regenerated code.\n\
                            pub fn probe_regeneration_exists() -> db::queries::sessions::ProbeRegenerationStmt {\n    \
                            db::queries::sessions::probe_regeneration()\n}\n";

const QUERIES_FILE: &str = "queries/sessions.sql";
const SCHEMA_FILE: &str = "schema/001_foundation.sql";
const GENERATED_QUERIES_FILE: &str = "generated/src/queries/sessions.rs";
const LOCK_FILE: &str = "cornucopia.lock";

/// Files an editor or a file manager leaves next to the generated code.
const STRAY_FILES: [&str; 2] = ["generated/src/.sessions.rs.swp", "generated/.DS_Store"];

/// The message of the build script when `generated/` is stale.
const STALE_MESSAGE: &str = "generated/ is stale";

/// What cargo prints when the root package's build script (not the generated crate's) fails.
const ROOT_BUILD_SCRIPT_FAILED: &str = "failed to run custom build command for `auth-sessions v";

/// The command the build script prints to regenerate.
const GENERATE_COMMAND: &str = "cargo run -p auth-sessions-codegen -- generate";

/// What a cargo that compiles Cornucopia prints.
const COMPILING_CORNUCOPIA: &str = "Compiling cornucopia";

/// The outcome of one command.
struct Outcome {
    description: String,
    success: bool,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn report(&self) -> String {
        format!(
            "`{}` {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.description,
            if self.success { "succeeded" } else { "failed" },
            self.stdout,
            self.stderr
        )
    }

    fn assert_success(&self) {
        assert!(self.success, "expected success: {}", self.report());
    }

    fn assert_failure(&self) {
        assert!(!self.success, "expected failure: {}", self.report());
    }

    fn assert_contains(&self, needle: &str) {
        assert!(
            self.stdout.contains(needle) || self.stderr.contains(needle),
            "expected the output to contain {needle:?}: {}",
            self.report()
        );
    }

    fn assert_lacks(&self, needle: &str) {
        assert!(
            !self.stdout.contains(needle) && !self.stderr.contains(needle),
            "expected the output not to contain {needle:?}: {}",
            self.report()
        );
    }
}

/// Runs `command`, capturing its output; kills it (and reports so) once `deadline` has passed.
fn run(mut command: Command, description: String, deadline: Option<Duration>) -> Outcome {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run `{description}`: {err}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let started = Instant::now();
    let (success, timed_out) = loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            break (status.success(), false);
        }
        if deadline.is_some_and(|deadline| started.elapsed() > deadline) {
            let _ = child.kill();
            let _ = child.wait();
            break (false, true);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut outcome = Outcome {
        description,
        success,
        stdout: stdout.join().expect("read stdout"),
        stderr: stderr.join().expect("read stderr"),
    };
    if timed_out {
        outcome.description.push_str(&format!(
            " (killed: still running after {} s)",
            started.elapsed().as_secs()
        ));
    }
    outcome
}

/// Builds take turns: they share a target directory anyway, and a build under a deadline must
/// not spend it waiting for another test's build.
fn cargo_turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A throwaway copy of the repository's sources, deleted on drop.
struct Copy {
    dir: TempDir,
}

impl Copy {
    /// Copies the files a build needs: the manifests and lock files, the root build script, the
    /// Cornucopia configuration and lock, the README (included by `src/lib.rs`), the git
    /// attributes, and `schema/`, `queries/`, `generated/`, `src/`, `codegen/` and `build/`; `examples/`, `benches/` and
    /// `tests/` only when the manifest names targets there that cargo would miss. Not `target/`.
    fn new() -> Self {
        let repo = repo();
        let dir = tempfile::tempdir().expect("create a temporary directory");
        for file in [
            "Cargo.toml",
            "Cargo.lock",
            "README.md",
            "build.rs",
            "cornucopia.toml",
            LOCK_FILE,
            ".gitattributes",
            ".gitignore",
        ] {
            if repo.join(file).is_file() {
                fs::copy(repo.join(file), dir.path().join(file))
                    .unwrap_or_else(|err| panic!("copy {file}: {err}"));
            }
        }
        for subdir in ["schema", "queries", "generated", "src", "codegen", "build"] {
            copy_dir(&repo.join(subdir), &dir.path().join(subdir));
        }
        // Cargo refuses a manifest whose explicit [[example]], [[bench]] or [[test]] targets
        // are missing; `cargo build` compiles none of them, so copying them is enough.
        let manifest = fs::read_to_string(repo.join("Cargo.toml")).expect("read Cargo.toml");
        for (table, subdir) in [
            ("[[example]]", "examples"),
            ("[[bench]]", "benches"),
            ("[[test]]", "tests"),
        ] {
            if manifest.contains(table) && repo.join(subdir).is_dir() {
                copy_dir(&repo.join(subdir), &dir.path().join(subdir));
            }
        }
        Self { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn read(&self, file: &str) -> Vec<u8> {
        fs::read(self.root().join(file)).unwrap_or_else(|err| panic!("read {file}: {err}"))
    }

    fn write(&self, file: &str, content: &[u8]) {
        fs::write(self.root().join(file), content)
            .unwrap_or_else(|err| panic!("write {file}: {err}"));
    }

    fn append(&self, file: &str, text: &str) {
        let mut content = self.read(file);
        content.extend_from_slice(text.as_bytes());
        self.write(file, &content);
    }

    /// Every file of `generated/` in the copy (hidden ones included), by path relative to it.
    fn generated(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = BTreeMap::new();
        read_tree(&self.root().join("generated"), Path::new(""), &mut files);
        files
    }

    /// A cargo command in the copy: offline, on the shared target directory, with both
    /// database variables pointing at a dead server unless the test says otherwise.
    fn cargo(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO"));
        command
            .args(args)
            .current_dir(self.root())
            .env("CARGO_TARGET_DIR", shared_target_dir())
            .env("CARGO_NET_OFFLINE", "true")
            // Fewer per-copy artifacts in the shared target directory.
            .env("CARGO_INCREMENTAL", "0")
            .env("DATABASE_URL", DEAD_URL)
            .env(CODEGEN_URL_VAR, DEAD_URL);
        without_outer_cargo_settings(&mut command);
        command
    }

    fn build_with(&self, command: Command, deadline: Option<Duration>) -> Outcome {
        let description = describe(&command, self.root());
        let _turn = cargo_turn();
        run(command, description, deadline)
    }

    /// `cargo build` with no reachable server.
    fn build(&self) -> Outcome {
        self.build_with(self.cargo(&["build"]), None)
    }

    /// The generator on this copy, `DATABASE_URL` pointing at a dead server.
    fn generator(&self, args: &[&str], codegen_url: Option<&str>) -> Command {
        let mut command = Command::new(generator_binary());
        command
            .args(args)
            .arg("--root")
            .arg(self.root())
            .env("DATABASE_URL", DEAD_URL);
        match codegen_url {
            Some(url) => command.env(CODEGEN_URL_VAR, url),
            None => command.env_remove(CODEGEN_URL_VAR),
        };
        command
    }

    fn run_generator(&self, args: &[&str], codegen_url: Option<&str>) -> Outcome {
        let command = self.generator(args, codegen_url);
        let description = describe(&command, self.root());
        run(command, description, None)
    }
}

/// Settings of the outer `cargo test`, not of the commands under test.
fn without_outer_cargo_settings(command: &mut Command) {
    for var in [
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_BUILD_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_MAKEFLAGS",
    ] {
        command.env_remove(var);
    }
}

/// The command line with the variables the tests set, for failure reports.
fn describe(command: &Command, dir: &Path) -> String {
    let vars: Vec<String> = command
        .get_envs()
        .filter(|(name, _)| {
            let name = name.to_string_lossy();
            name.ends_with("_URL") || name == "CARGO_BUILD_BUILD_DIR"
        })
        .map(|(name, value)| match value {
            Some(value) => format!("{}={}", name.to_string_lossy(), value.to_string_lossy()),
            None => format!("{} unset", name.to_string_lossy()),
        })
        .collect();
    let args: Vec<String> = command
        .get_args()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    format!(
        "{} {} [{}] in {}",
        command.get_program().to_string_lossy(),
        args.join(" "),
        vars.join(", "),
        dir.display()
    )
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The target directory all tests' builds share, so dependencies compile once.
fn shared_target_dir() -> PathBuf {
    repo().join("target").join("build-step-tests")
}

/// The generator, built once per test run from a copy of the sources (into the shared
/// directory where Cornucopia is already compiled) and then run directly.
fn generator_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let copy = Copy::new();
            let target = shared_target_dir().join("codegen");
            let mut command = copy.cargo(&["build", "--quiet", "-p", "auth-sessions-codegen"]);
            command.env("CARGO_TARGET_DIR", &target);
            copy.build_with(command, None).assert_success();
            let binary = target.join("debug").join(format!(
                "auth-sessions-codegen{}",
                std::env::consts::EXE_SUFFIX
            ));
            assert!(binary.is_file(), "no generator at {}", binary.display());
            binary
        })
        .clone()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|err| panic!("create {}: {err}", to.display()));
    let entries = fs::read_dir(from).unwrap_or_else(|err| panic!("read {}: {err}", from.display()));
    for entry in entries {
        let entry = entry.expect("read a directory entry");
        let (source, dest) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().expect("read a file type");
        if kind.is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&source, &dest);
            }
        } else {
            fs::copy(&source, &dest)
                .unwrap_or_else(|err| panic!("copy {}: {err}", source.display()));
        }
    }
}

fn read_tree(dir: &Path, relative: &Path, files: &mut BTreeMap<PathBuf, Vec<u8>>) {
    let path = dir.join(relative);
    let entries =
        fs::read_dir(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    for entry in entries {
        let entry = entry.expect("read a directory entry");
        let relative = relative.join(entry.file_name());
        if entry.file_type().expect("read a file type").is_dir() {
            read_tree(dir, &relative, files);
        } else {
            let content = fs::read(entry.path())
                .unwrap_or_else(|err| panic!("read {}: {err}", entry.path().display()));
            files.insert(relative, content);
        }
    }
}

/// The paths whose content differs between two snapshots of a tree.
fn changed_paths(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
) -> Vec<PathBuf> {
    let mut changed: Vec<PathBuf> = after
        .iter()
        .filter(|(path, content)| before.get(*path) != Some(*content))
        .map(|(path, _)| path.clone())
        .chain(
            before
                .keys()
                .filter(|path| !after.contains_key(*path))
                .cloned(),
        )
        .collect();
    changed.sort();
    changed
}

/// The generator's server for the tests that regenerate: `AUTH_SESSIONS_CODEGEN_URL` when it is
/// set (panics, never skips, when that server does not accept connections); else `None`, so
/// the generator's own default is what is tested, when that default accepts connections; else
/// the tests' throwaway server (tests/common/server.rs), as the README's `cargo test` promises
/// on a machine where no server runs. `DATABASE_URL` plays no part.
fn codegen_server() -> Option<String> {
    if let Some(url) = std::env::var(CODEGEN_URL_VAR)
        .ok()
        .filter(|url| !url.is_empty())
    {
        if let Err(err) = runtime().block_on(connect(&url)) {
            panic!(
                "this test needs PostgreSQL to regenerate generated/, but the server named by \
                 {CODEGEN_URL_VAR} is not reachable ({err}). Start it, set {CODEGEN_URL_VAR} to \
                 a server where that user may create databases, or unset it to use \
                 {DEFAULT_CODEGEN_URL} or else a throwaway server."
            );
        }
        return Some(url);
    }
    static THROWAWAY: OnceLock<Option<String>> = OnceLock::new();
    THROWAWAY
        .get_or_init(|| match runtime().block_on(connect(DEFAULT_CODEGEN_URL)) {
            Ok(_) => None,
            Err(err) => {
                let server = common::server::SharedServer::ensure();
                // Straight to the stream: the test harness captures `eprintln!` of passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "no usable PostgreSQL at {DEFAULT_CODEGEN_URL} ({err}) and {CODEGEN_URL_VAR} \
                     is unset: the generator uses the throwaway server at 127.0.0.1:{}",
                    server.port
                );
                Some(server.url)
            }
        })
        .clone()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("start a tokio runtime")
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(Duration::from_secs(10));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.simple_query("SELECT 1").await?;
    Ok(client)
}

/// Unchanged inputs: the lock matches, so no server is needed and nothing is rewritten.
#[test]
fn unchanged_inputs_build_without_a_server() {
    let copy = Copy::new();
    let generated = copy.generated();
    let lock = copy.read(LOCK_FILE);

    let dead = copy.build();
    dead.assert_success();
    dead.assert_lacks(COMPILING_CORNUCOPIA);

    let mut unset = copy.cargo(&["build"]);
    unset.env_remove("DATABASE_URL").env_remove(CODEGEN_URL_VAR);
    copy.build_with(unset, None).assert_success();

    assert!(
        copy.generated() == generated,
        "a build without a server changed generated/"
    );
    assert_eq!(
        copy.read(LOCK_FILE),
        lock,
        "a build without a server changed {LOCK_FILE}"
    );
}

/// An edited query: the build fails, names the file and the command that regenerates, and
/// neither connects anywhere nor compiles the generator nor writes anything.
#[test]
fn edited_query_fails_the_build_with_the_command_and_writes_nothing() {
    let copy = Copy::new();
    copy.append(QUERIES_FILE, PROBE_QUERY);
    let generated = copy.generated();
    let lock = copy.read(LOCK_FILE);

    let outcome = copy.build();
    outcome.assert_failure();
    outcome.assert_contains(STALE_MESSAGE);
    outcome.assert_contains("changed since the last generation: queries/sessions.sql");
    outcome.assert_contains(GENERATE_COMMAND);
    outcome.assert_contains(CODEGEN_URL_VAR);
    // No regeneration was attempted: nothing tried to reach a server or build the generator.
    outcome.assert_lacks("cannot reach");
    outcome.assert_lacks(COMPILING_CORNUCOPIA);

    assert!(
        copy.generated() == generated,
        "a stale build changed generated/"
    );
    assert_eq!(
        copy.read(LOCK_FILE),
        lock,
        "a stale build changed {LOCK_FILE}"
    );
}

/// A schema change in the project's own workspace fails the root package's build script,
/// naming the file and the command that regenerates. Cargo does not order that script against
/// the generated crate's, which checks the same files: `--keep-going` lets both run, so the
/// root package's failure is seen whichever fails first.
#[test]
fn edited_schema_fails_the_root_build_script_with_the_file_and_the_command() {
    let copy = Copy::new();
    copy.append(SCHEMA_FILE, "\n-- A schema change (tests/build_step.rs).\n");
    let generated = copy.generated();
    let lock = copy.read(LOCK_FILE);

    let outcome = copy.build_with(copy.cargo(&["build", "--keep-going"]), None);
    outcome.assert_failure();
    outcome.assert_contains(ROOT_BUILD_SCRIPT_FAILED);
    outcome.assert_contains(STALE_MESSAGE);
    outcome.assert_contains("changed since the last generation: schema/001_foundation.sql");
    outcome.assert_contains(GENERATE_COMMAND);
    outcome.assert_lacks("cannot reach");
    outcome.assert_lacks(COMPILING_CORNUCOPIA);

    assert!(
        copy.generated() == generated,
        "a stale build changed generated/"
    );
    assert_eq!(
        copy.read(LOCK_FILE),
        lock,
        "a stale build changed {LOCK_FILE}"
    );
}

/// A hand edit of generated/: detected like an edited input; kept as it is.
#[test]
fn hand_edited_generated_code_fails_the_build() {
    let copy = Copy::new();
    copy.append(
        GENERATED_QUERIES_FILE,
        "// A hand edit (tests/build_step.rs).\n",
    );
    let generated = copy.generated();
    let lock = copy.read(LOCK_FILE);

    let outcome = copy.build();
    outcome.assert_failure();
    outcome.assert_contains(STALE_MESSAGE);
    outcome.assert_contains("edited since it was generated: generated/src/queries/sessions.rs");
    outcome.assert_contains(GENERATE_COMMAND);
    outcome.assert_lacks("cannot reach");

    assert!(
        copy.generated() == generated,
        "a stale build changed generated/"
    );
    assert_eq!(
        copy.read(LOCK_FILE),
        lock,
        "a stale build changed {LOCK_FILE}"
    );
}

/// With `build.build-dir` configured, a cargo run from inside the build waits forever for the
/// outer build's lock (rust-lang/cargo#17053). The build script runs no cargo, so a stale
/// build fails at once with the message.
#[test]
fn stale_build_with_a_build_dir_configured_fails_promptly() {
    let copy = Copy::new();
    let with_build_dir = || {
        let mut command = copy.cargo(&["build"]);
        command.env("CARGO_BUILD_BUILD_DIR", shared_target_dir());
        command
    };
    // Compile everything first, so the deadline below measures only the stale build.
    copy.build_with(with_build_dir(), None).assert_success();

    copy.append(QUERIES_FILE, PROBE_QUERY);
    // A deadlocked build never ends; the bound leaves room for waiting on cargo's shared locks
    // (package cache, artifact directory) while other builds on the machine hold them.
    let outcome = copy.build_with(with_build_dir(), Some(Duration::from_secs(300)));
    outcome.assert_failure();
    outcome.assert_contains(STALE_MESSAGE);
}

/// Connection strings never reach the build output, whatever form carries the password: the
/// build script reads neither variable.
#[test]
fn stale_build_output_never_carries_a_password() {
    let copy = Copy::new();
    copy.append(QUERIES_FILE, PROBE_QUERY);
    let mut command = copy.cargo(&["build"]);
    command
        .env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/postgres?password=s3cret",
        )
        .env(
            CODEGEN_URL_VAR,
            "host=127.0.0.1 port=1 user=postgres password=s3cret dbname=postgres",
        );
    let outcome = copy.build_with(command, None);
    outcome.assert_failure();
    outcome.assert_contains(STALE_MESSAGE);
    outcome.assert_lacks("s3cret");
}

/// The generator connects to the server named by its own variable, or to the local default,
/// never to `DATABASE_URL`.
#[test]
fn generator_uses_its_own_server_never_database_url() {
    let copy = Copy::new();
    let decoy = "postgres://postgres@127.0.0.1:2/postgres";

    let mut command = copy.generator(&["check"], Some(DEAD_URL));
    command.env("DATABASE_URL", decoy);
    let outcome = run(command, "generator check, codegen server dead".into(), None);
    outcome.assert_failure();
    outcome.assert_contains(&format!(
        "{CODEGEN_URL_VAR}: host 127.0.0.1, port 1, user postgres, database postgres"
    ));
    outcome.assert_lacks("port 2");
    outcome.assert_lacks(":2/");

    // Unset: the local default, whether or not a server listens there.
    let mut command = copy.generator(&["check"], None);
    command.env("DATABASE_URL", decoy);
    let outcome = run(
        command,
        "generator check, codegen server unset".into(),
        None,
    );
    if !outcome.success {
        outcome.assert_contains("host localhost, port 5432, user postgres, database postgres");
    }
    outcome.assert_lacks("port 2");
    outcome.assert_lacks(":2/");
}

/// The generator's messages describe its server by host, port, user and database: a password
/// in the user info, in `?password=` or in key=value form, or in a string that does not parse,
/// never appears.
#[test]
fn generator_messages_never_carry_a_password() {
    let copy = Copy::new();
    for (url, parses) in [
        ("postgres://postgres:s3cret@127.0.0.1:1/postgres", true),
        (
            "postgres://postgres@127.0.0.1:1/postgres?password=s3cret",
            true,
        ),
        (
            "host=127.0.0.1 port=1 user=postgres password=s3cret dbname=postgres",
            true,
        ),
        (
            "host=127.0.0.1 port=1 user=postgres password='s3cret dbname=postgres",
            false,
        ),
        ("postgres://postgres:s3cret@127.0.0.1:port/postgres", false),
    ] {
        let outcome = copy.run_generator(&["check"], Some(url));
        outcome.assert_failure();
        outcome.assert_lacks("s3cret");
        if parses {
            outcome.assert_contains("host 127.0.0.1, port 1, user postgres, database postgres");
        } else {
            outcome.assert_contains("is not a PostgreSQL connection string");
        }
    }
}

/// A checkout with CRLF line endings everywhere (Windows without `.gitattributes`) has the
/// same hashes: it builds without a server.
#[test]
fn crlf_checkout_builds_without_a_server() {
    let copy = Copy::new();
    to_crlf(copy.root());
    let generated = copy.generated();
    assert!(
        String::from_utf8_lossy(&copy.read(QUERIES_FILE)).contains("\r\n"),
        "the copy was not converted"
    );

    let outcome = copy.build();
    outcome.assert_success();
    assert!(
        copy.generated() == generated,
        "the build changed generated/"
    );
}

/// Files under generated/ that the generator did not write are not part of the generated
/// crate: they do not make it stale, and nothing deletes them.
#[test]
fn stray_files_under_generated_are_ignored() {
    let copy = Copy::new();
    for file in STRAY_FILES {
        copy.write(file, b"not generated");
    }
    let outcome = copy.build();
    outcome.assert_success();
    for file in STRAY_FILES {
        assert_eq!(copy.read(file), b"not generated", "{file} changed");
    }
}

/// `.gitattributes` gives LF line endings in a checkout even with `core.autocrlf=true`.
#[test]
fn checkouts_get_lf_line_endings() {
    let copy = Copy::new();
    let git = |dir: &Path, args: &[&str]| {
        let output = Command::new("git")
            .args([
                "-c",
                "user.name=build-step",
                "-c",
                "user.email=build-step@example.invalid",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run git");
        assert!(
            output.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    git(copy.root(), &["init", "--quiet"]);
    git(copy.root(), &["add", "--all"]);
    git(copy.root(), &["commit", "--quiet", "-m", "copy"]);
    let clone = tempfile::tempdir().expect("create a temporary directory");
    let source = copy.root().to_string_lossy().into_owned();
    let dest = clone.path().join("checkout").to_string_lossy().into_owned();
    git(
        clone.path(),
        &[
            "-c",
            "core.autocrlf=true",
            "clone",
            "--quiet",
            &source,
            &dest,
        ],
    );
    let checkout = clone.path().join("checkout");
    for file in [
        QUERIES_FILE,
        SCHEMA_FILE,
        GENERATED_QUERIES_FILE,
        "generated/Cargo.toml",
        "cornucopia.toml",
        LOCK_FILE,
        "src/lib.rs",
    ] {
        let content = fs::read(checkout.join(file)).unwrap_or_else(|err| panic!("{file}: {err}"));
        assert!(
            !content.contains(&b'\r'),
            "{file} has CRLF line endings in a checkout with core.autocrlf=true"
        );
    }
}

/// The whole cycle with a server. Even with both variables naming a live server, a stale build
/// fails and regenerates nothing. The printed command regenerates: it rewrites only the file
/// whose content changed (by rename: a reader holding the old file still reads the old
/// content), leaves the stray files alone, and the next build compiles the root crate against
/// the new code with no server at all.
#[test]
fn regeneration_is_the_generators_job_never_the_builds() {
    let server = codegen_server();
    let live = server
        .clone()
        .unwrap_or_else(|| DEFAULT_CODEGEN_URL.to_owned());
    let copy = Copy::new();
    copy.append(QUERIES_FILE, PROBE_QUERY);
    copy.append("src/lib.rs", PROBE_CALLER);
    for file in STRAY_FILES {
        copy.write(file, b"not generated");
    }
    let generated = copy.generated();
    let lock = copy.read(LOCK_FILE);

    let mut command = copy.cargo(&["build"]);
    command
        .env("DATABASE_URL", &live)
        .env(CODEGEN_URL_VAR, &live);
    let stale = copy.build_with(command, None);
    stale.assert_failure();
    stale.assert_contains(STALE_MESSAGE);
    assert!(
        copy.generated() == generated,
        "a build regenerated generated/"
    );
    assert_eq!(copy.read(LOCK_FILE), lock, "a build rewrote {LOCK_FILE}");

    let mut old_lock = fs::File::open(copy.root().join(LOCK_FILE)).expect("open the lock");
    let mut old_queries =
        fs::File::open(copy.root().join(GENERATED_QUERIES_FILE)).expect("open the queries");
    let generate = copy.run_generator(&["generate"], server.as_deref());
    generate.assert_success();
    generate.assert_contains("wrote generated/src/queries/sessions.rs");

    let after = copy.generated();
    assert_eq!(
        changed_paths(&generated, &after),
        [Path::new("src/queries/sessions.rs")],
        "regeneration changed other files under generated/"
    );
    assert!(
        String::from_utf8_lossy(&after[Path::new("src/queries/sessions.rs")])
            .contains("pub fn probe_regeneration() -> ProbeRegenerationStmt"),
        "the regenerated code lacks the probe query"
    );
    assert_ne!(copy.read(LOCK_FILE), lock, "{LOCK_FILE} was not rewritten");
    for (name, file, before) in [
        ("the lock", &mut old_lock, lock.clone()),
        (
            "the generated queries",
            &mut old_queries,
            generated[Path::new("src/queries/sessions.rs")].clone(),
        ),
    ] {
        let mut seen = Vec::new();
        file.read_to_end(&mut seen).expect("read an old handle");
        assert!(
            seen == before,
            "{name} was rewritten in place, not replaced: a reader of the old file saw new content"
        );
    }
    let leftovers: Vec<String> = fs::read_dir(copy.root())
        .expect("read the copy")
        .chain(fs::read_dir(copy.root().join("generated/src/queries")).expect("read"))
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let build = copy.build();
    build.assert_success();

    let check = copy.run_generator(&["check"], server.as_deref());
    check.assert_success();
    check.assert_contains("generated/ is exactly what the generator produces");
}

/// An input saved while the generator runs is not recorded as current: the lock holds what the
/// generator read, so the next build reports the tree stale. Restoring the file as it was read
/// makes the tree consistent again: the output was generated from exactly those bytes.
#[test]
fn an_input_saved_during_generation_leaves_the_tree_stale() {
    let server = codegen_server();
    let live = server
        .clone()
        .unwrap_or_else(|| DEFAULT_CODEGEN_URL.to_owned());
    let copy = Copy::new();
    copy.append(QUERIES_FILE, PROBE_QUERY);
    let read_by_generator = copy.read(QUERIES_FILE);

    // Both variables name the live server: this test is about what the lock records.
    let mut child = copy
        .generator(&["generate"], server.as_deref())
        .env("DATABASE_URL", &live)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the generator");
    // The generator reads its inputs, then creates its temporary database: once that database
    // exists, an edit comes after the read.
    let pattern = format!("auth_sessions_codegen_{}_%", child.id());
    let edited_while_running = runtime().block_on(async {
        let client = connect(&live).await.expect("connect to the server");
        loop {
            if child.try_wait().expect("poll the generator").is_some() {
                return false;
            }
            let row = client
                .query_one(
                    "SELECT count(*) FROM pg_database WHERE datname LIKE $1",
                    &[&pattern],
                )
                .await
                .expect("query pg_database");
            if row.get::<_, i64>(0) > 0 {
                copy.append(QUERIES_FILE, "\n-- Saved while the generator ran.\n");
                return child.try_wait().expect("poll the generator").is_none();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let output = child.wait_with_output().expect("wait for the generator");
    assert!(
        output.status.success(),
        "the generator failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        edited_while_running,
        "the generator finished before the test could edit an input while it ran"
    );

    let stale = copy.build();
    stale.assert_failure();
    stale.assert_contains(STALE_MESSAGE);
    stale.assert_contains("changed since the last generation: queries/sessions.sql");

    copy.write(QUERIES_FILE, &read_by_generator);
    copy.build().assert_success();
}

/// Converts every text file under `dir` to CRLF line endings.
fn to_crlf(dir: &Path) {
    let mut files = BTreeMap::new();
    read_tree(dir, Path::new(""), &mut files);
    for (path, content) in files {
        if content.contains(&0) {
            continue;
        }
        let text = String::from_utf8_lossy(&content).replace("\r\n", "\n");
        fs::write(dir.join(path), text.replace('\n', "\r\n")).expect("write a CRLF file");
    }
}
