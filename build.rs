//! The code-generation step. It is the build script of the generated crate (`generated/`,
//! whose manifest Cornucopia writes with `build = "../build.rs"` from `cornucopia.toml`), not of
//! the root package.
//!
//! Why there: cargo runs a crate's build script to completion before it compiles that crate.
//! A script that rewrites `generated/` from the root package instead races cargo, which compiles
//! `generated/` in parallel with the root package's build script and could link the root crate
//! against the stale code. Here the rewrite happens strictly before the generated crate
//! compiles, so a build never compiles stale generated code (tests/build_step.rs proves it).
//!
//! What it does:
//! - computes the fingerprint of `schema/`, `queries/`, `cornucopia.toml` and `generated/`
//!   (codegen/src/fingerprint.rs) and compares it with the one recorded in `cornucopia.lock`;
//! - equal: nothing else. This is every build of a dependent service: offline, no PostgreSQL,
//!   Cornucopia not compiled;
//! - different: runs the code generator (the `codegen/` crate, built by a nested cargo in its own
//!   target directory), which regenerates `generated/` against a fresh temporary database on the
//!   server named by `DATABASE_URL`; if that fails (no server), the build fails and says how to
//!   regenerate.

#[path = "codegen/src/fingerprint.rs"]
#[allow(dead_code)] // `record` is the generator's; this script only compares.
mod fingerprint;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("generated/ has a parent")
        .to_path_buf();

    match watch_and_compare(&root) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => regenerate(&root),
        Err(err) => {
            eprintln!("error: cannot fingerprint generated/ and its inputs: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Tells cargo which files to watch, then says whether `generated/` matches the lock file.
fn watch_and_compare(root: &Path) -> std::io::Result<bool> {
    for dir in ["schema", "queries", "generated"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let files = fingerprint::inputs(root)?
        .into_iter()
        .chain(fingerprint::outputs(root)?);
    for file in files.chain([PathBuf::from(fingerprint::LOCK_FILE)]) {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    println!("cargo:rerun-if-env-changed=DATABASE_URL");
    Ok(fingerprint::recorded(root) == Some(fingerprint::compute(root)?))
}

fn regenerate(root: &Path) -> ExitCode {
    // OUT_DIR is <target>/<profile>/build/<unit>/out; the generator gets <target>/codegen.
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .unwrap_or(&out_dir)
        .join("codegen");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["run", "--quiet", "--manifest-path"])
        .arg(root.join("codegen").join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .args(["--", "generate", "--root"])
        .arg(root)
        // Settings that belong to the outer build, not to the generator's.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .status();
    match status {
        Ok(status) if status.success() => {
            println!("cargo:warning=regenerated generated/ from schema/ and queries/");
            ExitCode::SUCCESS
        }
        outcome => {
            if let Err(err) = outcome {
                eprintln!("error: cannot start cargo to run the code generator: {err}");
            }
            eprintln!(
                "\nerror: generated/ is stale: schema/, queries/ or cornucopia.toml changed (or \
                 generated/ was edited by hand) since it was last generated, and regenerating \
                 it failed (see above).\n\
                 To regenerate: make PostgreSQL reachable, then run\n\n    \
                 DATABASE_URL=postgres://postgres@localhost:5432/postgres cargo build\n\n\
                 (or `cargo run -p auth-sessions-codegen -- generate`). Commit generated/ and \
                 cornucopia.lock together with the change.\n"
            );
            ExitCode::FAILURE
        }
    }
}
