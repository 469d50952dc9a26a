//! Proves the guarantees of the code-generation step (build.rs, the build script of the generated
//! crate) by building throwaway copies of this repository with a real `cargo build`.
//!
//! What is proved, and why each matters:
//!
//! - **Unchanged inputs need no server.** A build whose `schema/`, `queries/`,
//!   `cornucopia.toml` and `generated/` match `cornucopia.lock` succeeds with `DATABASE_URL`
//!   pointing at a dead server and with `DATABASE_URL` unset, and leaves `generated/` untouched.
//!   Every dependent service builds this way, offline.
//! - **Stale code is never compiled silently.** After an edit of `queries/` (or a hand edit of
//!   `generated/`) with no server to regenerate against, the build fails with "generated/ is
//!   stale" and the command that regenerates, and leaves `generated/` and `cornucopia.lock`
//!   byte-for-byte as they were.
//! - **Regeneration finishes before the generated crate compiles (no race).** With a server, a
//!   single `cargo build` after a new query succeeds although the root crate calls the function
//!   that only the regenerated code defines. Had cargo compiled `generated/` (or the root crate)
//!   before the rewrite, the root crate could not find that function and the build would fail.
//!   A second build then finds everything up to date and does not regenerate again.
//!
//! Each test copies the sources into a fresh temporary directory (never `target/`), so the
//! working tree is never modified. All builds share one target directory,
//! `target/build-step-tests`, so dependencies (and Cornucopia, which the nested generator build
//! puts in `target/build-step-tests/codegen`) compile once; cargo's lock on that directory
//! serializes the tests' builds.
//!
//! The test that regenerates needs PostgreSQL at `DATABASE_URL` (default
//! `postgres://postgres@localhost:5432/postgres`); without it, it fails with a message saying
//! so rather than skipping.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

/// The server the build script regenerates against when `DATABASE_URL` is unset.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@localhost:5432/postgres";

/// A URL on which nothing listens: any attempt to regenerate fails.
const DEAD_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:1/postgres";

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
const GENERATED_QUERIES_FILE: &str = "generated/src/queries/sessions.rs";
const LOCK_FILE: &str = "cornucopia.lock";

/// The message of build.rs when `generated/` is stale and cannot be regenerated.
const STALE_MESSAGE: &str = "generated/ is stale";

/// The warning of build.rs after it regenerated `generated/`.
const REGENERATED_MESSAGE: &str = "regenerated generated/";

/// The value `DATABASE_URL` has in a child build.
#[derive(Clone, Copy)]
enum DatabaseUrl<'a> {
    /// Set to this URL.
    Set(&'a str),
    /// Removed from the environment.
    Unset,
}

/// The outcome of one cargo command in a copy.
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

    fn assert_stderr_contains(&self, needle: &str) {
        assert!(
            self.stderr.contains(needle),
            "expected stderr to contain {needle:?}: {}",
            self.report()
        );
    }

    fn assert_stderr_lacks(&self, needle: &str) {
        assert!(
            !self.stderr.contains(needle),
            "expected stderr not to contain {needle:?}: {}",
            self.report()
        );
    }
}

/// A throwaway copy of the repository's sources, deleted on drop.
struct Copy {
    dir: TempDir,
}

impl Copy {
    /// Copies the files a build needs: the manifests, lock files, build script, Cornucopia
    /// configuration and lock, README (included by `src/lib.rs`), and `schema/`, `queries/`,
    /// `generated/`, `src/` and `codegen/`. Not `target/`, nor `tests/`, `examples/` or
    /// `benches/`, unless the manifest names targets there that cargo would miss.
    fn new() -> Self {
        let repo = repo();
        let dir = tempfile::tempdir().expect("create a temporary directory");
        for file in ["Cargo.toml", "build.rs", "cornucopia.toml", LOCK_FILE] {
            fs::copy(repo.join(file), dir.path().join(file))
                .unwrap_or_else(|err| panic!("copy {file}: {err}"));
        }
        for file in ["Cargo.lock", "README.md"] {
            if repo.join(file).is_file() {
                fs::copy(repo.join(file), dir.path().join(file))
                    .unwrap_or_else(|err| panic!("copy {file}: {err}"));
            }
        }
        for subdir in ["schema", "queries", "generated", "src", "codegen"] {
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

    fn append(&self, file: &str, text: &str) {
        let mut content = self.read(file);
        content.extend_from_slice(text.as_bytes());
        fs::write(self.root().join(file), content)
            .unwrap_or_else(|err| panic!("write {file}: {err}"));
    }

    /// Every file of `generated/` in the copy, by path relative to it.
    fn generated(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = BTreeMap::new();
        read_tree(&self.root().join("generated"), Path::new(""), &mut files);
        files
    }

    fn build(&self, database_url: DatabaseUrl<'_>) -> Outcome {
        self.cargo(&["build"], database_url, &shared_target_dir())
    }

    /// Runs cargo in the copy with the given target directory, capturing its output.
    fn cargo(&self, args: &[&str], database_url: DatabaseUrl<'_>, target_dir: &Path) -> Outcome {
        let mut command = Command::new(env!("CARGO"));
        command
            .args(args)
            .current_dir(self.root())
            .env("CARGO_TARGET_DIR", target_dir)
            // Fewer per-copy artifacts in the shared target directory.
            .env("CARGO_INCREMENTAL", "0")
            // Settings of the outer `cargo test`, not of the builds under test.
            .env_remove("CARGO_BUILD_TARGET_DIR")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        let description = match database_url {
            DatabaseUrl::Set(url) => {
                command.env("DATABASE_URL", url);
                format!("DATABASE_URL={url} cargo {}", args.join(" "))
            }
            DatabaseUrl::Unset => {
                command.env_remove("DATABASE_URL");
                format!("cargo {} (DATABASE_URL unset)", args.join(" "))
            }
        };
        let output = command
            .output()
            .unwrap_or_else(|err| panic!("cannot run `{description}`: {err}"));
        Outcome {
            description: format!("{description} in {}", self.root().display()),
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The target directory all tests' builds share, so dependencies compile once.
fn shared_target_dir() -> PathBuf {
    repo().join("target").join("build-step-tests")
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

/// The URL of the real server, after checking that it accepts connections; panics (never
/// skips) when it does not.
fn real_database_url() -> String {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let mut config: tokio_postgres::Config = url
        .parse()
        .unwrap_or_else(|err| panic!("DATABASE_URL {url:?} is not a PostgreSQL URL: {err}"));
    config.connect_timeout(Duration::from_secs(10));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("start a tokio runtime");
    let reachable = runtime.block_on(async {
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(connection);
        let result = client.simple_query("SELECT 1").await.map(drop);
        drop(client);
        let _ = driver.await;
        result
    });
    if let Err(err) = reachable {
        panic!(
            "this test needs PostgreSQL to regenerate generated/, but the server at {url} is not \
             reachable ({err}). Start PostgreSQL (e.g. on localhost:5432, user postgres) or set \
             DATABASE_URL to a server where that user may create databases."
        );
    }
    url
}

/// Unchanged inputs: the fingerprint matches, so no server is needed and nothing is rewritten.
#[test]
fn unchanged_inputs_build_without_a_server() {
    let copy = Copy::new();
    let generated = copy.generated();
    let lock = copy.read(LOCK_FILE);

    let dead = copy.build(DatabaseUrl::Set(DEAD_DATABASE_URL));
    dead.assert_success();
    dead.assert_stderr_lacks(REGENERATED_MESSAGE);

    // Unsetting DATABASE_URL reruns the build script (it watches the variable).
    let unset = copy.build(DatabaseUrl::Unset);
    unset.assert_success();
    unset.assert_stderr_lacks(REGENERATED_MESSAGE);

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

/// An edited query with no server: the build fails, says how to regenerate, writes nothing.
#[test]
fn edited_query_without_a_server_fails_and_leaves_generated_untouched() {
    let copy = Copy::new();
    copy.append(QUERIES_FILE, PROBE_QUERY);
    let generated = copy.generated();
    let lock = copy.read(LOCK_FILE);

    let outcome = copy.build(DatabaseUrl::Set(DEAD_DATABASE_URL));
    outcome.assert_failure();
    outcome.assert_stderr_contains(STALE_MESSAGE);
    outcome.assert_stderr_contains("cargo build");
    // It failed because regenerating needed the (dead) server, not for another reason.
    outcome.assert_stderr_contains("cannot reach PostgreSQL");

    assert!(
        copy.generated() == generated,
        "a failed regeneration changed generated/"
    );
    assert_eq!(
        copy.read(LOCK_FILE),
        lock,
        "a failed regeneration changed {LOCK_FILE}"
    );
}

/// A hand edit of generated/ with no server: detected like an edited input; kept as it is.
#[test]
fn hand_edited_generated_code_without_a_server_fails() {
    let copy = Copy::new();
    copy.append(
        GENERATED_QUERIES_FILE,
        "// A hand edit (tests/build_step.rs).\n",
    );
    let generated = copy.generated();
    let lock = copy.read(LOCK_FILE);

    let outcome = copy.build(DatabaseUrl::Set(DEAD_DATABASE_URL));
    outcome.assert_failure();
    outcome.assert_stderr_contains(STALE_MESSAGE);
    outcome.assert_stderr_contains("cargo build");
    outcome.assert_stderr_contains("cannot reach PostgreSQL");

    assert!(
        copy.generated() == generated,
        "a failed regeneration changed generated/"
    );
    assert_eq!(
        copy.read(LOCK_FILE),
        lock,
        "a failed regeneration changed {LOCK_FILE}"
    );
}

/// The race proof: one `cargo build` regenerates and compiles the root crate against the new
/// code. Had the generated crate or the root crate compiled before the rewrite, the call to
/// `probe_regeneration` in src/lib.rs would not resolve and this build would fail.
#[test]
fn edited_query_regenerates_before_the_generated_crate_compiles() {
    let url = real_database_url();
    let copy = Copy::new();
    copy.append(QUERIES_FILE, PROBE_QUERY);
    copy.append("src/lib.rs", PROBE_CALLER);
    let generated = copy.generated();
    let lock = copy.read(LOCK_FILE);
    assert!(
        !String::from_utf8_lossy(&copy.read(GENERATED_QUERIES_FILE)).contains("probe_regeneration"),
        "the committed generated code already has the probe query"
    );

    let first = copy.build(DatabaseUrl::Set(&url));
    first.assert_success();
    first.assert_stderr_contains(REGENERATED_MESSAGE);

    let regenerated = String::from_utf8_lossy(&copy.read(GENERATED_QUERIES_FILE)).into_owned();
    assert!(
        regenerated.contains("pub fn probe_regeneration() -> ProbeRegenerationStmt"),
        "{GENERATED_QUERIES_FILE} lacks the probe query after the build:\n{regenerated}"
    );
    assert_ne!(copy.read(LOCK_FILE), lock, "{LOCK_FILE} was not rewritten");
    // Regeneration rewrote only the file whose content changed.
    let after = copy.generated();
    let changed: Vec<&PathBuf> = after
        .iter()
        .filter(|(path, content)| generated.get(*path) != Some(*content))
        .map(|(path, _)| path)
        .chain(generated.keys().filter(|path| !after.contains_key(*path)))
        .collect();
    assert_eq!(
        changed,
        [Path::new("src/queries/sessions.rs")],
        "regeneration changed other files of generated/"
    );

    // Now the lock matches: the next build does not regenerate.
    let second = copy.build(DatabaseUrl::Set(&url));
    second.assert_success();
    second.assert_stderr_lacks(REGENERATED_MESSAGE);

    // And the regenerated crate is exactly what Cornucopia produces, with a matching lock. The
    // target directory is the one the nested generator build used, so nothing recompiles.
    let check = copy.cargo(
        &[
            "run",
            "--quiet",
            "-p",
            "auth-sessions-codegen",
            "--",
            "check",
            "--root",
            ".",
        ],
        DatabaseUrl::Set(&url),
        &shared_target_dir().join("codegen"),
    );
    check.assert_success();
    assert!(
        check
            .stdout
            .contains("generated/ is exactly what cornucopia produces"),
        "unexpected output of the check: {}",
        check.report()
    );
}
