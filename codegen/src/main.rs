//! Regenerates `generated/` from `schema/` and `queries/` with Cornucopia, or checks that the
//! committed `generated/` is exactly what Cornucopia produces.
//!
//! ```text
//! auth-sessions-codegen generate [--root DIR]   rewrite generated/ and cornucopia.lock
//! auth-sessions-codegen check [--root DIR]      fail if generated/ or cornucopia.lock drifted
//! ```
//!
//! Both run Cornucopia against a fresh temporary database created on the server named by
//! `DATABASE_URL` (default `postgres://postgres@localhost:5432/postgres`), dropped afterwards.

#[path = "fingerprint.rs"]
mod fingerprint;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@localhost:5432/postgres";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let mut root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--root", Some(dir)) => root = PathBuf::from(dir),
            _ => return usage(),
        }
    }
    let result = match command.as_deref() {
        Some("generate") => generate(&root),
        Some("check") => check(&root),
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: auth-sessions-codegen (generate | check) [--root DIR]");
    ExitCode::from(2)
}

/// Regenerates `generated/`, touching only the files whose content changed, then records the
/// fingerprint in the lock file.
fn generate(root: &Path) -> Result<(), BoxError> {
    let fresh = tempfile::tempdir()?;
    run_cornucopia(root, &fresh.path().join("generated"))?;
    let fresh_files = read_tree(&fresh.path().join("generated"))?;
    let target = root.join("generated");
    let old_files = read_tree(&target)?;
    for (path, content) in &fresh_files {
        if old_files.get(path) != Some(content) {
            let dest = target.join(path);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(&dest, content)?;
            println!("wrote generated/{}", path.display());
        }
    }
    for path in old_files.keys().filter(|p| !fresh_files.contains_key(*p)) {
        fs::remove_file(target.join(path))?;
        println!("removed generated/{}", path.display());
    }
    fingerprint::record(root)?;
    Ok(())
}

/// Fails when a fresh Cornucopia run differs from `generated/` in any byte, or when the lock
/// file does not match the inputs and outputs on disk.
fn check(root: &Path) -> Result<(), BoxError> {
    let fresh = tempfile::tempdir()?;
    run_cornucopia(root, &fresh.path().join("generated"))?;
    let fresh_files = read_tree(&fresh.path().join("generated"))?;
    let committed = read_tree(&root.join("generated"))?;
    let mut drift = Vec::new();
    for (path, content) in &fresh_files {
        match committed.get(path) {
            None => drift.push(format!("missing: generated/{}", path.display())),
            Some(old) if old != content => {
                drift.push(format!("differs: generated/{}", path.display()))
            }
            Some(_) => {}
        }
    }
    for path in committed.keys().filter(|p| !fresh_files.contains_key(*p)) {
        drift.push(format!(
            "not produced by cornucopia: generated/{}",
            path.display()
        ));
    }
    if fingerprint::recorded(root) != Some(fingerprint::compute(root)?) {
        drift.push(format!(
            "{} does not match generated/ and its inputs",
            fingerprint::LOCK_FILE
        ));
    }
    if drift.is_empty() {
        println!("generated/ is exactly what cornucopia produces from schema/ and queries/");
        Ok(())
    } else {
        Err(format!(
            "generated/ has drifted:\n  {}\nregenerate with `cargo run -p auth-sessions-codegen -- generate`",
            drift.join("\n  ")
        )
        .into())
    }
}

/// Runs Cornucopia on a fresh temporary database (schema loaded from `schema/`), writing the
/// generated crate into `destination`. The temporary database is dropped whatever happens.
fn run_cornucopia(root: &Path, destination: &Path) -> Result<(), BoxError> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let server: tokio_postgres::Config = url
        .parse()
        .map_err(|err| format!("DATABASE_URL is not a valid PostgreSQL URL: {err}"))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let admin = connect(&runtime, &server).map_err(|err| {
        format!(
            "cannot reach PostgreSQL at DATABASE_URL ({}): {err}",
            redact(&url)
        )
    })?;

    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.subsec_nanos();
    let name = format!("auth_sessions_codegen_{}_{nanos}", std::process::id());
    runtime.block_on(admin.batch_execute(&format!("CREATE DATABASE {name}")))?;
    let result = (|| -> Result<(), BoxError> {
        let client = connect(&runtime, server.clone().dbname(&name))?;
        let mut schema = fingerprint::inputs(root)?;
        schema.retain(|path| path.starts_with("schema"));
        let schema: Vec<PathBuf> = schema.iter().map(|path| root.join(path)).collect();
        cornucopia::load_schema(&client, &schema).map_err(report)?;

        let mut config = cornucopia::config::Config::from_file(root.join("cornucopia.toml"))?;
        config.queries = root.join("queries");
        config.destination = destination.to_path_buf();
        cornucopia::gen_live(&client, config).map_err(report)?;
        Ok(())
    })();
    let dropped =
        runtime.block_on(admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")));
    result?;
    dropped?;
    Ok(())
}

fn connect(
    runtime: &tokio::runtime::Runtime,
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    runtime.block_on(async {
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    })
}

/// Renders a Cornucopia diagnostic with its source snippet.
fn report(err: impl miette::Diagnostic + Send + Sync + 'static) -> BoxError {
    format!("{:?}", miette::Report::new(err)).into()
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Every file under `dir`, by path relative to it.
fn read_tree(dir: &Path) -> Result<BTreeMap<PathBuf, Vec<u8>>, BoxError> {
    let mut files = BTreeMap::new();
    for path in fingerprint::files_under(dir, Path::new(""), None)? {
        let content = fs::read(dir.join(&path))?;
        files.insert(path, content);
    }
    Ok(files)
}
