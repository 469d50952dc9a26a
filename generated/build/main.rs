// This file was written by the code generator from codegen/templates/build.rs. Do not modify.

//! The build script of the generated crate. It fails the build when `generated/` is not what the
//! code generator produced from the inputs on disk. It never regenerates.
//!
//! The root package's `build.rs` runs the same check (`check.rs`, a copy of the root package's
//! `build/check.rs`) and says why no build regenerates. This one stays because cargo runs it
//! before it compiles the generated code, which the root package's build script is not ordered
//! against: a stale or hand-edited `generated/` is reported as stale, never as a compile error
//! in code nobody should edit, and a build of this crate alone is checked too.
//!
//! In a source tree of auth-sessions (this crate's directory next to `cornucopia.toml`,
//! `schema/`, `queries/` and `cornucopia.lock`: the project's own workspace, or a path or git
//! dependency), it compares `cornucopia.lock` with the files on disk (`fingerprint.rs`). Equal:
//! nothing else happens; no database, no network, no Cornucopia. Different: the build fails and
//! prints the command that regenerates.
//!
//! Anywhere else (a packaged, vendored or registry copy: no `cornucopia.toml` next to this
//! crate's directory) there are no inputs to compare with, and the script does nothing; cargo
//! verifies such copies against its own checksums.

#[allow(dead_code)] // Writing the lock is the generator's part.
mod fingerprint;

mod check;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    match source_tree(&manifest_dir) {
        Some(root) => check::run(&root),
        None => {
            // A copy without its inputs: only this script's own files could change the answer.
            println!("cargo:rerun-if-changed=build");
            ExitCode::SUCCESS
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
