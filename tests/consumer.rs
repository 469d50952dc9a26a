//! Builds a service that depends on this crate, in a separate temporary workspace, the ways a
//! service can depend on it: by path, by git, and vendored. Each build runs offline
//! (`--offline`, `CARGO_NET_OFFLINE=true`) with both database variables pointing at a dead
//! server, and must not compile Cornucopia (nor have it anywhere in `cargo tree`).
//!
//! The service uses the library with `default-features = false` and has no tokio of its own, so
//! the library must declare every tokio feature it uses.
//!
//! Also proved: when the dependency's `generated/` does not match its inputs, the service's
//! build fails with instructions, and nothing regenerates or connects anywhere.
//!
//! Cargo cannot check out a git dependency offline, so the git and vendored cases first let
//! cargo clone the local repository with the network disabled by a dead proxy (a `file://`
//! clone needs none). `cargo vendor` copies every platform's crates, so it needs them all in
//! the local cache (`cargo fetch` in this repository puts them there).
//!
//! The builds share `target/build-step-tests` with tests/build_step.rs, so dependencies
//! compile once.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

const CODEGEN_URL_VAR: &str = "AUTH_SESSIONS_CODEGEN_URL";

/// A URL on which nothing listens.
const DEAD_URL: &str = "postgres://postgres@127.0.0.1:1/postgres";

const STALE_MESSAGE: &str = "generated/ is stale";

/// The service: it names a type of the library, so the library must compile.
const SERVICE_MAIN: &str = "fn main() {\n    \
    println!(\"{}\", std::any::type_name::<auth_sessions::SessionRepo>());\n}\n";

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

    fn assert_success(&self) -> &Self {
        assert!(self.success, "expected success: {}", self.report());
        self
    }

    fn assert_failure(&self) -> &Self {
        assert!(!self.success, "expected failure: {}", self.report());
        self
    }

    fn assert_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle) || self.stderr.contains(needle),
            "expected the output to contain {needle:?}: {}",
            self.report()
        );
        self
    }

    fn assert_lacks(&self, needle: &str) -> &Self {
        assert!(
            !self.stdout.contains(needle) && !self.stderr.contains(needle),
            "expected the output not to contain {needle:?}: {}",
            self.report()
        );
        self
    }

    /// Neither compiled nor in the tree (`name v1.2.3` in both outputs): Cornucopia, or the
    /// generator that uses it.
    fn assert_no_generator(&self) -> &Self {
        self.assert_lacks("cornucopia v")
            .assert_lacks("auth-sessions-codegen v")
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shared_target_dir() -> PathBuf {
    repo().join("target").join("build-step-tests")
}

/// A copy of the repository's sources as they would be committed, in `dir`.
fn copy_project(dir: &Path) {
    let repo = repo();
    fs::create_dir_all(dir).expect("create the project copy");
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "build.rs",
        "cornucopia.toml",
        "cornucopia.lock",
        ".gitattributes",
        ".gitignore",
    ] {
        if repo.join(file).is_file() {
            fs::copy(repo.join(file), dir.join(file))
                .unwrap_or_else(|err| panic!("copy {file}: {err}"));
        }
    }
    for subdir in ["schema", "queries", "generated", "src", "codegen", "build"] {
        copy_dir(&repo.join(subdir), &dir.join(subdir));
    }
    let manifest = fs::read_to_string(repo.join("Cargo.toml")).expect("read Cargo.toml");
    for (table, subdir) in [
        ("[[example]]", "examples"),
        ("[[bench]]", "benches"),
        ("[[test]]", "tests"),
    ] {
        if manifest.contains(table) && repo.join(subdir).is_dir() {
            copy_dir(&repo.join(subdir), &dir.join(subdir));
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|err| panic!("create {}: {err}", to.display()));
    for entry in fs::read_dir(from).unwrap_or_else(|err| panic!("read {}: {err}", from.display())) {
        let entry = entry.expect("read a directory entry");
        let (source, dest) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().expect("read a file type").is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&source, &dest);
            }
        } else {
            fs::copy(&source, &dest)
                .unwrap_or_else(|err| panic!("copy {}: {err}", source.display()));
        }
    }
}

/// The project copy as a git repository with one commit: its `file://` URL and the commit.
fn commit(dir: &Path) -> (String, String) {
    let git = |args: &[&str]| {
        let output = Command::new("git")
            .args([
                "-c",
                "user.name=consumer",
                "-c",
                "user.email=consumer@example.invalid",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run git");
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    git(&["init", "--quiet"]);
    git(&["add", "--all"]);
    git(&["commit", "--quiet", "-m", "auth-sessions"]);
    let path = dir.to_str().expect("a UTF-8 temporary path");
    (
        format!("file://{}", path.replace('\\', "/")),
        git(&["rev-parse", "HEAD"]),
    )
}

/// How the service depends on the project copy.
enum Source {
    Path,
    Git,
}

/// A temporary directory holding a copy of the project (`auth-sessions/`) and the service's
/// workspace (`service/`).
struct Service {
    dir: TempDir,
    /// The commit the service depends on, for a git dependency.
    commit: Option<String>,
}

impl Service {
    /// A service whose only dependency is `auth-sessions = { <source>, default-features =
    /// false }`. Its lock file starts from this repository's, so versions stay those in the
    /// local cache.
    fn new(source: Source) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let project = dir.path().join("auth-sessions");
        copy_project(&project);
        let (source, commit) = match source {
            Source::Path => ("path = \"../auth-sessions\"".to_owned(), None),
            Source::Git => {
                let (url, commit) = commit(&project);
                (format!("git = \"{url}\""), Some(commit))
            }
        };
        let service = dir.path().join("service");
        fs::create_dir_all(service.join("src")).expect("create the service");
        fs::write(
            service.join("Cargo.toml"),
            format!(
                "[package]\nname = \"service\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\
                 publish = false\n\n[workspace]\n\n[dependencies]\n\
                 auth-sessions = {{ {source}, default-features = false }}\n"
            ),
        )
        .expect("write the service manifest");
        fs::write(service.join("src/main.rs"), SERVICE_MAIN).expect("write the service");
        fs::copy(repo().join("Cargo.lock"), service.join("Cargo.lock")).expect("copy Cargo.lock");
        Self { dir, commit }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// A cargo command in the service: offline, both database variables dead.
    fn cargo(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO"));
        command
            .args(args)
            .current_dir(self.path("service"))
            .env("CARGO_TARGET_DIR", shared_target_dir())
            .env("CARGO_NET_OFFLINE", "true")
            .env("CARGO_INCREMENTAL", "0")
            .env("DATABASE_URL", DEAD_URL)
            .env(CODEGEN_URL_VAR, DEAD_URL);
        for var in [
            "CARGO_BUILD_TARGET_DIR",
            "CARGO_BUILD_BUILD_DIR",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_MAKEFLAGS",
        ] {
            command.env_remove(var);
        }
        command
    }

    fn run(&self, mut command: Command) -> Outcome {
        let args: Vec<String> = command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        let description = format!(
            "cargo {} in {}",
            args.join(" "),
            self.path("service").display()
        );
        let output = command
            .output()
            .unwrap_or_else(|err| panic!("cannot run `{description}`: {err}"));
        Outcome {
            description,
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn build(&self) -> Outcome {
        self.run(self.cargo(&["build", "--offline"]))
    }

    fn tree(&self) -> Outcome {
        self.run(self.cargo(&["tree", "--offline", "--edges", "all"]))
    }

    /// Lets cargo clone a git dependency: the network is on for cargo but every HTTP request
    /// goes to a dead proxy, so only the local `file://` clone can succeed.
    fn fetch_git_dependency(&self) {
        let mut command = self.cargo(&["tree", "--edges", "normal"]);
        command
            .env_remove("CARGO_NET_OFFLINE")
            .env("CARGO_HTTP_PROXY", "http://127.0.0.1:1")
            .env("CARGO_NET_RETRY", "0");
        self.run(command).assert_success();
    }
}

impl Drop for Service {
    /// Cargo keeps a clone and a checkout of every git dependency in its home; this one served
    /// only this test (its URL is a temporary directory), so they go too.
    fn drop(&mut self) {
        let Some(commit) = &self.commit else { return };
        let Some(home) = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        else {
            return;
        };
        let Ok(entries) = fs::read_dir(home.join("git").join("checkouts")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let ours = name.to_string_lossy().starts_with("auth-sessions-")
                && fs::read_dir(entry.path()).is_ok_and(|revisions| {
                    revisions.flatten().any(|revision| {
                        let short = revision.file_name().to_string_lossy().into_owned();
                        short.len() >= 7 && commit.starts_with(&short)
                    })
                });
            if ours {
                let _ = fs::remove_dir_all(entry.path());
                let _ = fs::remove_dir_all(home.join("git").join("db").join(&name));
            }
        }
    }
}

/// (a) By path, with `default-features = false` and no tokio of the service's own.
#[test]
fn path_dependency_builds_offline_without_a_server() {
    let service = Service::new(Source::Path);
    service.tree().assert_success().assert_no_generator();
    service.build().assert_success().assert_no_generator();
}

/// A dependency whose generated/ does not match its inputs: the service's build fails with
/// instructions; nothing regenerates, connects or writes.
#[test]
fn stale_path_dependency_fails_with_instructions() {
    let service = Service::new(Source::Path);
    let queries = service.path("auth-sessions/queries/sessions.sql");
    let mut text = fs::read_to_string(&queries).expect("read the queries");
    text.push_str("\n--! probe_consumer\nSELECT 1 AS one;\n");
    fs::write(&queries, text).expect("edit the queries");
    let generated = service.path("auth-sessions/generated/src/queries/sessions.rs");
    let (code, lock) = (
        fs::read(&generated).expect("read the generated queries"),
        fs::read(service.path("auth-sessions/cornucopia.lock")).expect("read the lock"),
    );

    service
        .build()
        .assert_failure()
        .assert_contains(STALE_MESSAGE)
        .assert_contains("changed since the last generation: queries/sessions.sql")
        .assert_contains("If auth-sessions is a dependency of your project")
        .assert_lacks("cannot reach")
        .assert_no_generator();
    assert_eq!(
        fs::read(&generated).expect("read"),
        code,
        "generated/ changed"
    );
    assert_eq!(
        fs::read(service.path("auth-sessions/cornucopia.lock")).expect("read"),
        lock,
        "cornucopia.lock changed"
    );
}

/// (b) By git, from a local repository.
#[test]
fn git_dependency_builds_offline_without_a_server() {
    let service = Service::new(Source::Git);
    service.fetch_git_dependency();
    service.tree().assert_success().assert_no_generator();
    service.build().assert_success().assert_no_generator();
}

/// (c) After `cargo vendor`: the generated package carries its build script (cargo drops a
/// build script outside the package, with a warning) and builds from the vendor directory. So
/// does the root package: its copy carries `build.rs` and the files it includes, but not
/// `generated/` (a package of its own) nor `codegen/`, and there its build script does nothing.
#[test]
fn vendored_dependency_builds_offline_without_a_server() {
    let service = Service::new(Source::Git);
    service.fetch_git_dependency();
    let vendor = service.run(service.cargo(&["vendor", "--offline", "../vendor"]));
    assert!(
        vendor.success,
        "cargo vendor failed; it needs every platform's crates in the local cache (run \
         `cargo fetch` once in this repository, online): {}",
        vendor.report()
    );
    vendor.assert_lacks("ignoring `package.build`");
    let vendored = service.path("vendor/auth-sessions-generated");
    for file in ["build/main.rs", "build/check.rs", "build/fingerprint.rs"] {
        assert!(
            vendored.join(file).is_file(),
            "the vendored generated package lacks {file}"
        );
    }
    let vendored_root = service.path("vendor/auth-sessions");
    for file in ["build.rs", "build/check.rs", "build/fingerprint.rs"] {
        assert!(
            vendored_root.join(file).is_file(),
            "the vendored root package lacks {file}"
        );
    }
    for dir in ["generated", "codegen"] {
        assert!(
            !vendored_root.join(dir).exists(),
            "the vendored root package carries {dir}/, which is not part of it"
        );
    }
    fs::create_dir_all(service.path("service/.cargo")).expect("create .cargo");
    fs::write(service.path("service/.cargo/config.toml"), &vendor.stdout)
        .expect("write the vendoring configuration");

    service.tree().assert_success().assert_no_generator();
    service.build().assert_success().assert_no_generator();
}
