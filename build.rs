//! How `generated/` relates to `schema/` and `queries/`, and what a build does about it.
//!
//! `generated/` is the crate Cornucopia produces from the migrations in `schema/`, the annotated
//! queries in `queries/` and the choices in `cornucopia.toml`. It is committed, and
//! `cornucopia.lock` records a SHA-256 of every input the generator read and of every file it
//! wrote (`build/fingerprint.rs`). The generator is the only thing that writes either:
//!
//! ```text
//! cargo run -p auth-sessions-codegen -- generate   # rewrite generated/ and cornucopia.lock
//! cargo run -p auth-sessions-codegen -- check      # fail unless generated/ is exactly its output
//! ```
//!
//! This build script, in a source tree (the project's own workspace, or a path or git
//! dependency: `generated/` beside `cornucopia.toml`, `schema/`, `queries/` and the lock),
//! watches those inputs and compares the lock with the files on disk (`build/check.rs`). Equal:
//! nothing else happens; no database, no network, no Cornucopia. Different (a schema or query
//! change, a hand edit under `generated/`): the build fails at once, naming the files and the
//! command above.
//!
//! No build regenerates, whoever runs it, not even as an opt-in. Regenerating needs a
//! PostgreSQL server and rewrites sources during the build, and from here it could not come
//! first: cargo compiles the generated crate, a dependency of this one, without waiting for this
//! script, so new code would land after the old code was compiled. The only script that runs in
//! time is the generated crate's own, which would rewrite the sources of the crate being built.
//! Running the generator as a command instead would run cargo from inside cargo, which can
//! deadlock (for example with `build.build-dir`). So the script behaves the same in this
//! workspace and in a dependent's build, and needs no way to tell them apart.
//!
//! The generated crate's own build script (`generated/build/main.rs`, from
//! `codegen/templates/build.rs`) runs the same check on the same files before its code compiles,
//! so a stale `generated/` is reported as stale rather than as a compile error there; in a stale
//! tree either script may report first, with the same message.
//!
//! In a packaged or vendored copy of this package, `generated/` is not there (it is a package of
//! its own, verified by cargo's checksums) and neither is `codegen/`: this script does nothing.

#[allow(dead_code)] // Writing the lock is the generator's part.
#[path = "build/fingerprint.rs"]
mod fingerprint;

#[path = "build/check.rs"]
mod check;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The generated crate's manifest, relative to the repository root.
const GENERATED_MANIFEST: &str = "generated/Cargo.toml";

fn main() -> ExitCode {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    if is_source_tree(&root) {
        check::run(&root)
    } else {
        // A packaged copy: only this script's own files could change the answer.
        println!("cargo:rerun-if-changed=build.rs");
        println!("cargo:rerun-if-changed=build");
        ExitCode::SUCCESS
    }
}

/// Whether `root` holds the generated crate beside its inputs, so there is something to check.
fn is_source_tree(root: &Path) -> bool {
    root.join(GENERATED_MANIFEST).is_file() && root.join(fingerprint::CONFIG_FILE).is_file()
}
