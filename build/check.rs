//! What a build does about `generated/`: it compares `cornucopia.lock` with the files on disk
//! and fails, naming the files and the one command that regenerates, when they differ. It never
//! regenerates, connects anywhere, or runs cargo.
//!
//! Two build scripts run this one check: the root package's `build.rs`, before the hand-written
//! crate compiles, and the generated crate's `build/main.rs`, before the generated code
//! compiles. The source of this module is `build/check.rs`, in the root package; the generator
//! copies it into `generated/build/check.rs`, so the generated package needs nothing outside its
//! own directory. It uses `crate::fingerprint` (`build/fingerprint.rs`), only `std` besides, and
//! stays within Rust 1.85 (the generated crate's `rust-version`).

use std::io;
use std::path::Path;
use std::process::ExitCode;

use crate::fingerprint;

/// The variable that names the server the generator uses.
const CODEGEN_URL_VAR: &str = "AUTH_SESSIONS_CODEGEN_URL";

/// The server the generator uses when that variable is unset.
const DEFAULT_CODEGEN_URL: &str = "postgres://postgres@localhost:5432/postgres";

/// Checks the source tree at `root` (the repository root: `cornucopia.toml`, `schema/`,
/// `queries/`, `cornucopia.lock` and `generated/`), telling cargo which files to watch. Success
/// when `generated/` is what the generator produced from the inputs on disk; otherwise prints
/// the differences and the command that regenerates, and fails.
pub fn run(root: &Path) -> ExitCode {
    match differences(root) {
        Ok(found) if found.is_empty() => ExitCode::SUCCESS,
        Ok(found) => {
            eprintln!("{}", stale_message(root, &found));
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!(
                "error: cannot compare generated/ with {} in {}: {err}",
                fingerprint::LOCK_FILE,
                root.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// Tells cargo what to watch, then lists how the tree differs from the lock.
fn differences(root: &Path) -> io::Result<Vec<String>> {
    let watch = |path: &Path| println!("cargo:rerun-if-changed={}", path.display());
    watch(&root.join(fingerprint::CONFIG_FILE));
    watch(&root.join(fingerprint::LOCK_FILE));
    for dir in fingerprint::INPUT_DIRS {
        watch(&root.join(dir));
    }
    let lock = match fingerprint::Lock::read(root) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Ok(vec![format!("{} is missing", fingerprint::LOCK_FILE)]),
        Err(err) if err.kind() == io::ErrorKind::InvalidData => return Ok(vec![err.to_string()]),
        Err(err) => return Err(err),
    };
    for path in lock.outputs.keys() {
        watch(&root.join(path));
    }
    lock.differences(root)
}

fn stale_message(root: &Path, differences: &[String]) -> String {
    format!(
        "\nerror: generated/ is stale: it is not what the code generator produced from the inputs \
         now on disk (as recorded in {lock}):\n\n    {list}\n\n\
         No build regenerates it: that needs a PostgreSQL server.\n\n\
         If you are working on auth-sessions, regenerate, build again, and commit generated/ and \
         {lock} with the change:\n\n    \
         cd {root}\n    \
         cargo run -p auth-sessions-codegen -- generate\n\n\
         The generator creates and drops a temporary database on the server named by \
         {var} (default {default}); it never uses DATABASE_URL.\n\n\
         If auth-sessions is a dependency of your project, this revision of it is inconsistent: \
         depend on a revision where `cargo run -p auth-sessions-codegen -- check` passes; do not \
         edit the copy cargo checked out.\n",
        lock = fingerprint::LOCK_FILE,
        list = differences.join("\n    "),
        root = root.display(),
        var = CODEGEN_URL_VAR,
        default = DEFAULT_CODEGEN_URL,
    )
}
