//! The lock that ties `generated/` to its inputs.
//!
//! `cornucopia.lock` records a SHA-256 of every input the generator read (`cornucopia.toml`,
//! `schema/**/*.sql`, `queries/**/*.sql`) and of every file it wrote under `generated/` (the
//! manifest of the generated crate). Contents are hashed with line endings normalised to LF, so
//! a checkout with CRLF line endings has the same hashes as one with LF. Files under
//! `generated/` that the manifest does not list (editor swap files, `.DS_Store`) are not part of
//! the generated crate: nothing looks at them, nothing deletes them. Hidden files (names starting
//! with `.`) are never inputs either.
//!
//! The generator writes the lock after it wrote `generated/`; the build scripts (the root
//! package's `build.rs` and the generated crate's) compare the lock with the files on disk
//! (`build/check.rs`) and fail the build when they differ.
//!
//! The source of this module is `build/fingerprint.rs`, in the root package: its build script
//! and the generator (`codegen/`) compile this one file, and the generator copies it into
//! `generated/build/fingerprint.rs` for the generated crate's build script, so all three read
//! the lock the same way and the generated package needs nothing outside its own directory. It
//! depends only on `std` and `sha2`, and stays within Rust 1.85 (the generated crate's
//! `rust-version`).

use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The lock file, at the repository root.
pub const LOCK_FILE: &str = "cornucopia.lock";

/// Cornucopia's configuration, at the repository root: an input.
pub const CONFIG_FILE: &str = "cornucopia.toml";

/// The directories, at the repository root, whose `.sql` files (recursively) are inputs.
pub const INPUT_DIRS: [&str; 2] = ["schema", "queries"];

/// The version of the lock's layout; a lock without it (or with another) is not understood.
const FORMAT: &str = "2";

/// `bytes` with every CRLF turned into LF (a lone CR is kept).
pub fn normalize(bytes: &[u8]) -> Cow<'_, [u8]> {
    if !bytes.windows(2).any(|pair| pair == b"\r\n") {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut iter = bytes.iter().peekable();
    while let Some(&byte) = iter.next() {
        if byte == b'\r' && iter.peek() == Some(&&b'\n') {
            continue;
        }
        out.push(byte);
    }
    Cow::Owned(out)
}

/// The SHA-256, in hex, of `bytes` with line endings normalised.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(normalize(bytes));
    hash.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Every input file of the generator as it is on disk now, as `/`-separated paths relative to
/// `root`, sorted: `cornucopia.toml`, then the `.sql` files under `schema/` and `queries/`.
pub fn input_paths(root: &Path) -> io::Result<Vec<String>> {
    let mut paths = vec![CONFIG_FILE.to_owned()];
    for dir in INPUT_DIRS {
        for file in files_under(root, Path::new(dir))? {
            if file.extension().is_some_and(|ext| ext == "sql") {
                paths.push(slash_path(&file)?);
            }
        }
    }
    Ok(paths)
}

/// Every file under `root/dir`, recursively, as paths relative to `root`, sorted; hidden files
/// and directories (names starting with `.`) are skipped. A missing directory has no files.
pub fn files_under(root: &Path, dir: &Path) -> io::Result<Vec<PathBuf>> {
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
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let relative = dir.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                pending.push(relative);
            } else {
                found.push(relative);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// `path` with `/` separators, for the lock; an error for a path that is not UTF-8.
pub fn slash_path(path: &Path) -> io::Result<String> {
    let text = path.to_str().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("file name is not UTF-8: {}", path.display()),
        )
    })?;
    Ok(text.replace('\\', "/"))
}

/// The contents of `cornucopia.lock`: path → digest, for the inputs and for the outputs. Paths
/// are relative to the repository root, `/`-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    pub inputs: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, String>,
}

impl Lock {
    /// The lock at `root`: `Ok(None)` when there is none, an `InvalidData` error when it is not
    /// in this layout (for example written by an older generator).
    pub fn read(root: &Path) -> io::Result<Option<Lock>> {
        let text = match fs::read_to_string(root.join(LOCK_FILE)) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        Lock::parse(&text).map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{LOCK_FILE} is not in the layout this generator writes (format = {FORMAT})"
                ),
            )
        })
    }

    /// Parses the text `render` writes (any line endings); `None` when it is not that.
    pub fn parse(text: &str) -> Option<Lock> {
        let mut lock = Lock::default();
        let mut format = None;
        let mut section: Option<&mut BTreeMap<String, String>> = None;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line {
                "[inputs]" => section = Some(&mut lock.inputs),
                "[outputs]" => section = Some(&mut lock.outputs),
                _ => {
                    let (key, value) = line.split_once('=')?;
                    let (key, value) = (key.trim(), value.trim());
                    match section.as_deref_mut() {
                        None if key == "format" => format = Some(value.to_owned()),
                        None => return None,
                        Some(map) => {
                            let path = unquote(key)?;
                            let hash = unquote(value)?;
                            if !is_relative_path(path) || hash.len() != 64 {
                                return None;
                            }
                            map.insert(path.to_owned(), hash.to_owned());
                        }
                    }
                }
            }
        }
        (format.as_deref() == Some(FORMAT)).then_some(lock)
    }

    /// The text of the lock file.
    pub fn render(&self) -> String {
        let mut text = format!(
            "# Written by the code generator (`cargo run -p auth-sessions-codegen -- generate`); do\n\
             # not edit. The SHA-256 of every input it read and of every file it wrote, line endings\n\
             # normalised to LF. The build script of generated/ compares them with the files on disk;\n\
             # files under generated/ that are not listed here are not part of the generated crate.\n\
             format = {FORMAT}\n"
        );
        for (title, map) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            text.push_str(&format!("\n[{title}]\n"));
            for (path, hash) in map {
                text.push_str(&format!("\"{path}\" = \"{hash}\"\n"));
            }
        }
        text
    }

    /// How the files under `root` differ from this lock, one line each; empty when `generated/`
    /// is exactly what the generator produced from the inputs now on disk.
    pub fn differences(&self, root: &Path) -> io::Result<Vec<String>> {
        let mut found = Vec::new();
        let on_disk = input_paths(root)?;
        for path in &on_disk {
            match self.inputs.get(path) {
                None => found.push(format!("added since the last generation: {path}")),
                Some(hash) => match read_digest(root, path)? {
                    Some(actual) if &actual == hash => {}
                    _ => found.push(format!("changed since the last generation: {path}")),
                },
            }
        }
        for path in self.inputs.keys().filter(|path| !on_disk.contains(path)) {
            found.push(format!("removed since the last generation: {path}"));
        }
        for (path, hash) in &self.outputs {
            match read_digest(root, path)? {
                None => found.push(format!("missing: {path}")),
                Some(actual) if &actual != hash => {
                    found.push(format!("edited since it was generated: {path}"))
                }
                Some(_) => {}
            }
        }
        Ok(found)
    }
}

/// The digest of `root/path`, `None` when the file does not exist.
fn read_digest(root: &Path, path: &str) -> io::Result<Option<String>> {
    match fs::read(root.join(path)) {
        Ok(bytes) => Ok(Some(digest(&bytes))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

fn unquote(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains(['"', '\\'])).then_some(inner)
}

/// A relative, `/`-separated path without `.` or `..` components.
fn is_relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains(':')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}
