//! The fingerprint that ties `generated/` to its inputs.
//!
//! It is a SHA-256 over the Cornucopia inputs (`cornucopia.toml`, `schema/*.sql`,
//! `queries/*.sql`) and over every file of `generated/`, so both an edited input and a hand edit
//! of the output change it. The code generator records it in `cornucopia.lock` after it writes
//! `generated/`; the build script recomputes it and regenerates (or fails) when it differs.
//!
//! This file is shared by the build script and the code generator (`#[path]`), so both compute
//! the fingerprint the same way.

use sha2::{Digest, Sha256};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The file, at the repository root, that records the fingerprint of the committed `generated/`.
pub const LOCK_FILE: &str = "cornucopia.lock";

/// Every input file of the code generator, relative to the repository root, in a stable order.
pub fn inputs(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = vec![PathBuf::from("cornucopia.toml")];
    for dir in ["schema", "queries"] {
        files.extend(files_under(root, Path::new(dir), Some("sql"))?);
    }
    Ok(files)
}

/// Every file of `generated/`, relative to the repository root, in a stable order.
pub fn outputs(root: &Path) -> io::Result<Vec<PathBuf>> {
    files_under(root, Path::new("generated"), None)
}

/// The fingerprint of the inputs and of `generated/` as they are on disk now.
pub fn compute(root: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    for (kind, files) in [("input", inputs(root)?), ("output", outputs(root)?)] {
        for file in files {
            let bytes = fs::read(root.join(&file))?;
            // Unambiguous framing: kind, path, length, then the bytes.
            let path = file.to_string_lossy().replace('\\', "/");
            hasher.update(format!("{kind}\0{path}\0{}\0", bytes.len()).as_bytes());
            hasher.update(&bytes);
        }
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// The fingerprint recorded in the lock file, if there is one.
pub fn recorded(root: &Path) -> Option<String> {
    let text = fs::read_to_string(root.join(LOCK_FILE)).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("fingerprint = "))
        .map(|value| value.trim().trim_matches('"').to_owned())
}

/// Writes the lock file for the current state of the inputs and of `generated/`.
pub fn record(root: &Path) -> io::Result<()> {
    let text = format!(
        "# Written by the code generator; do not edit. The fingerprint of schema/, queries/,\n\
         # cornucopia.toml and generated/ (see codegen/src/fingerprint.rs).\n\
         fingerprint = \"{}\"\n",
        compute(root)?
    );
    fs::write(root.join(LOCK_FILE), text)
}

/// Every file under `root/dir` (recursively), as paths relative to `root`, sorted; only those
/// ending in `.extension` when one is given. A missing directory has no files.
pub fn files_under(root: &Path, dir: &Path, extension: Option<&str>) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(root.join(&dir)) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        for entry in entries {
            let entry = entry?;
            let relative = dir.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                pending.push(relative);
            } else if extension.is_none_or(|ext| relative.extension().is_some_and(|e| e == ext)) {
                found.push(relative);
            }
        }
    }
    found.sort();
    Ok(found)
}
