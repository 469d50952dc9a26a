//! The build script of the generated crate. It fails the build when `generated/` is not what the
//! code generator produced from the inputs on disk. It never regenerates.
//!
//! In a source tree of auth-sessions (this crate's directory next to `cornucopia.toml`,
//! `schema/`, `queries/` and `cornucopia.lock`: the project's own workspace, or a path or git
//! dependency), it compares `cornucopia.lock` with the files on disk (`fingerprint.rs`). Equal:
//! nothing else happens; no database, no network, no Cornucopia. Different: the build fails and
//! prints the command that regenerates.
//!
//! No build regenerates, whoever runs it: regenerating needs a PostgreSQL server, rewrites
//! sources during the build, and would run cargo from inside cargo, which can deadlock (for
//! example when `build.build-dir` is configured). So the script behaves the same in this
//! project's workspace and in a dependent's build, and needs no way to tell them apart.
//!
//! Anywhere else (a packaged, vendored or registry copy: no `cornucopia.toml` next to this
//! crate's directory) there are no inputs to compare with, and the script does nothing; cargo
//! verifies such copies against its own checksums.

#[allow(dead_code)] // Writing the lock is the generator's part.
mod fingerprint;

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The variable that names the server the generator uses.
const CODEGEN_URL_VAR: &str = "AUTH_SESSIONS_CODEGEN_URL";

/// The server the generator uses when that variable is unset.
const DEFAULT_CODEGEN_URL: &str = "postgres://postgres@localhost:5432/postgres";

fn main() -> ExitCode {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let Some(root) = source_tree(&manifest_dir) else {
        // A copy without its inputs: only this script's own files could change the answer.
        println!("cargo:rerun-if-changed=build");
        return ExitCode::SUCCESS;
    };
    match differences(&root) {
        Ok(found) if found.is_empty() => ExitCode::SUCCESS,
        Ok(found) => {
            eprintln!("{}", stale_message(&root, &found));
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

/// The repository root when this crate sits in a source tree of auth-sessions.
fn source_tree(manifest_dir: &Path) -> Option<PathBuf> {
    let root = manifest_dir.parent()?;
    root.join(fingerprint::CONFIG_FILE)
        .is_file()
        .then(|| root.to_path_buf())
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
