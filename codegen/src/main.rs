//! Regenerates `generated/` from `schema/` and `queries/` with Cornucopia, or checks that the
//! committed `generated/` and `cornucopia.lock` are exactly what it produces.
//!
//! ```text
//! auth-sessions-codegen generate [--root DIR]   rewrite generated/ and cornucopia.lock
//! auth-sessions-codegen check [--root DIR]      fail if generated/ or cornucopia.lock drifted
//! ```
//!
//! Both read every input once (`cornucopia.toml`, `schema/**/*.sql`, `queries/**/*.sql`, line
//! endings normalised to LF), hash exactly those bytes, and run Cornucopia on a temporary copy of
//! them: an input saved while the generator runs is not what the lock records, so the next
//! build reports `generated/` as stale instead of compiling it. Cornucopia runs against a fresh
//! temporary database created on the server named by `AUTH_SESSIONS_CODEGEN_URL` (default
//! `postgres://postgres@localhost:5432/postgres`) and dropped afterwards. `DATABASE_URL` is never
//! read: it names the service's database, often a production one. Messages describe the server
//! by host, port, user and database only, never by the connection string, which may hold a
//! password.
//!
//! The generated crate is Cornucopia's output plus its build script, `build/main.rs` (from
//! `templates/build.rs`), `build/check.rs` and `build/fingerprint.rs` (copies of the root
//! package's, which its own build script and this generator compile), so the package needs
//! nothing outside its directory once packaged or vendored. `generate` replaces
//! each changed file by renaming a complete temporary file over it, and writes the lock last, the
//! same way: an interrupted run leaves a tree the build reports as stale, never a half-written
//! file. It deletes only files that the previous lock lists and this run no longer produces;
//! other files under `generated/` (editor swap files, `.DS_Store`) are left alone.

#[path = "../../build/fingerprint.rs"]
mod fingerprint;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fingerprint::Lock;

/// The variable naming the PostgreSQL server the generator creates its temporary database on.
const CODEGEN_URL_VAR: &str = "AUTH_SESSIONS_CODEGEN_URL";

/// The server used when `AUTH_SESSIONS_CODEGEN_URL` is unset or empty.
const DEFAULT_CODEGEN_URL: &str = "postgres://postgres@localhost:5432/postgres";

/// The build script of the generated crate, the check it shares with the root package's build
/// script, and the module both share with this generator.
const BUILD_FILES: [(&str, &str, &str); 3] = [
    (
        "build/main.rs",
        "codegen/templates/build.rs",
        include_str!("../templates/build.rs"),
    ),
    (
        "build/check.rs",
        "build/check.rs",
        include_str!("../../build/check.rs"),
    ),
    (
        "build/fingerprint.rs",
        "build/fingerprint.rs",
        include_str!("../../build/fingerprint.rs"),
    ),
];

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

/// Regenerates `generated/`, replacing only the files whose content changed, then writes the
/// lock for exactly the inputs that were read and the files that were produced.
fn generate(root: &Path) -> Result<(), BoxError> {
    let generation = Generation::run(root)?;
    let lock = generation.lock();
    let previous = Lock::read(root).ok().flatten();
    let destination = root.join(&generation.destination);
    for (path, content) in &generation.files {
        let file = destination.join(path);
        if read_normalized(&file)?.as_deref() != Some(content.as_slice()) {
            if let Some(parent) = file.parent() {
                fs::create_dir_all(parent)?;
            }
            write_atomically(&file, content)?;
            println!("wrote {}/{path}", generation.destination);
        }
    }
    if let Some(previous) = previous {
        let prefix = format!("{}/", generation.destination);
        for path in previous.outputs.keys() {
            if path.starts_with(&prefix) && !lock.outputs.contains_key(path) {
                match fs::remove_file(root.join(path)) {
                    Ok(()) => println!("removed {path}"),
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(format!("cannot remove {path}: {err}").into()),
                }
            }
        }
    }
    let text = lock.render();
    let lock_file = root.join(fingerprint::LOCK_FILE);
    if read_normalized(&lock_file)?.as_deref() != Some(text.as_bytes()) {
        write_atomically(&lock_file, text.as_bytes())?;
        println!("wrote {}", fingerprint::LOCK_FILE);
    }
    Ok(())
}

/// Fails when a fresh run differs from `generated/` (line endings aside), when `generated/` has
/// files the generator does not produce (hidden files aside), or when the lock does not record
/// exactly the inputs on disk and the files produced from them.
fn check(root: &Path) -> Result<(), BoxError> {
    let generation = Generation::run(root)?;
    let destination = &generation.destination;
    let mut drift = Vec::new();
    for (path, content) in &generation.files {
        match read_normalized(&root.join(destination).join(path))? {
            None => drift.push(format!("missing: {destination}/{path}")),
            Some(old) if old != *content => drift.push(format!("differs: {destination}/{path}")),
            Some(_) => {}
        }
    }
    for path in fingerprint::files_under(root, Path::new(destination))? {
        let path = fingerprint::slash_path(&path)?;
        let relative = path
            .strip_prefix(&format!("{destination}/"))
            .unwrap_or(&path);
        if !generation.files.contains_key(relative) {
            drift.push(format!("not produced by the generator: {path}"));
        }
    }
    match Lock::read(root) {
        Ok(Some(lock)) if lock == generation.lock() => {}
        Ok(Some(lock)) => {
            drift.push(format!(
                "{} does not match {destination}/ and its inputs",
                fingerprint::LOCK_FILE
            ));
            let found = lock.differences(root)?;
            drift.extend(found.iter().map(|line| format!("  {line}")));
        }
        Ok(None) => drift.push(format!("{} is missing", fingerprint::LOCK_FILE)),
        Err(err) => drift.push(err.to_string()),
    }
    if drift.is_empty() {
        println!("{destination}/ is exactly what the generator produces from schema/ and queries/");
        Ok(())
    } else {
        Err(format!(
            "{destination}/ has drifted:\n  {}\nregenerate with `cargo run -p auth-sessions-codegen -- generate`",
            drift.join("\n  ")
        )
        .into())
    }
}

/// One run of Cornucopia: the inputs as read, and the files of the generated crate.
struct Generation {
    /// Input path → content as read, line endings normalised.
    inputs: BTreeMap<String, Vec<u8>>,
    /// The generated crate's directory, relative to the root (`generated`).
    destination: String,
    /// Path relative to `destination` → content.
    files: BTreeMap<String, Vec<u8>>,
}

impl Generation {
    fn run(root: &Path) -> Result<Self, BoxError> {
        // Read every input once, before anything else: these bytes are what Cornucopia sees and
        // what the lock records, whatever happens to the files meanwhile.
        let mut inputs = BTreeMap::new();
        for path in fingerprint::input_paths(root)? {
            let bytes =
                fs::read(root.join(&path)).map_err(|err| format!("cannot read {path}: {err}"))?;
            inputs.insert(path, fingerprint::normalize(&bytes).into_owned());
        }

        let work = tempfile::tempdir()?;
        for (path, content) in &inputs {
            let file = work.path().join(path);
            fs::create_dir_all(file.parent().expect("inputs sit in the work directory"))?;
            fs::write(file, content)?;
        }
        let mut config =
            cornucopia::config::Config::from_file(work.path().join(fingerprint::CONFIG_FILE))?;
        let destination = destination_dir(&config.destination)?;
        if config.queries != Path::new("queries") {
            return Err(format!(
                "{}: `queries` must be \"queries\" (the directory the lock records)",
                fingerprint::CONFIG_FILE
            )
            .into());
        }
        if !config.static_files.is_empty() {
            return Err(format!(
                "{}: `static` files are not supported: the lock would not record them as inputs",
                fingerprint::CONFIG_FILE
            )
            .into());
        }
        let output = work.path().join("output");
        config.queries = work.path().join("queries");
        config.destination = output.clone();
        let schema: Vec<PathBuf> = inputs
            .keys()
            .filter(|path| path.starts_with("schema/"))
            .map(|path| work.path().join(path))
            .collect();
        run_cornucopia(&schema, config).map_err(|err| {
            // Name the files as they are in the repository, not in the work directory.
            let work_dir = format!("{}{}", work.path().display(), std::path::MAIN_SEPARATOR);
            err.to_string().replace(&work_dir, "")
        })?;

        let mut files = BTreeMap::new();
        for path in fingerprint::files_under(&output, Path::new(""))? {
            let content = fs::read(output.join(&path))?;
            files.insert(
                fingerprint::slash_path(&path)?,
                fingerprint::normalize(&content).into_owned(),
            );
        }
        for (path, source, text) in BUILD_FILES {
            let header = format!(
                "// This file was written by the code generator from {source}. Do not modify.\n\n"
            );
            let content = [header.as_bytes(), &fingerprint::normalize(text.as_bytes())].concat();
            if files.insert(path.to_owned(), content).is_some() {
                return Err(format!(
                    "cornucopia produced {destination}/{path}, which the generator writes"
                )
                .into());
            }
        }
        Ok(Self {
            inputs,
            destination,
            files,
        })
    }

    /// The lock for this run: the inputs as read, the files as produced.
    fn lock(&self) -> Lock {
        Lock {
            inputs: self
                .inputs
                .iter()
                .map(|(path, content)| (path.clone(), fingerprint::digest(content)))
                .collect(),
            outputs: self
                .files
                .iter()
                .map(|(path, content)| {
                    (
                        format!("{}/{path}", self.destination),
                        fingerprint::digest(content),
                    )
                })
                .collect(),
        }
    }
}

/// The destination of `cornucopia.toml`, which must be a directory directly under the root (the
/// generated crate's build script finds the inputs in its parent directory).
fn destination_dir(destination: &Path) -> Result<String, BoxError> {
    let mut components = destination.components();
    match (components.next(), components.next()) {
        (Some(std::path::Component::Normal(name)), None) => name
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| "the destination is not UTF-8".into()),
        _ => Err(format!(
            "{}: `destination` must be a directory directly under the root, not {}",
            fingerprint::CONFIG_FILE,
            destination.display()
        )
        .into()),
    }
}

/// Runs Cornucopia on a fresh temporary database (schema loaded from `schema`), writing the
/// generated crate to `config.destination`. The temporary database is dropped whatever happens.
fn run_cornucopia(schema: &[PathBuf], config: cornucopia::config::Config) -> Result<(), BoxError> {
    let server = CodegenServer::from_env()?;
    if !server.is_local() {
        eprintln!(
            "warning: the code-generation server ({}) is not local; the generator connects without \
             TLS. Use a local or throwaway server.",
            server.describe()
        );
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let admin = connect(&runtime, &server.config).map_err(|err| {
        format!(
            "cannot reach the PostgreSQL server for code generation ({}): {err}\n\
             Start PostgreSQL there, or set {CODEGEN_URL_VAR} to a local or throwaway server where \
             that user may create databases (default {DEFAULT_CODEGEN_URL}). DATABASE_URL is never \
             used for code generation.",
            server.describe()
        )
    })?;

    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.subsec_nanos();
    let name = format!("auth_sessions_codegen_{}_{nanos}", std::process::id());
    runtime.block_on(admin.batch_execute(&format!("CREATE DATABASE {name}")))?;
    let result = (|| -> Result<(), BoxError> {
        let client = connect(&runtime, server.config.clone().dbname(&name))?;
        cornucopia::load_schema(&client, schema).map_err(report)?;
        cornucopia::gen_live(&client, config).map_err(report)?;
        Ok(())
    })();
    let dropped =
        runtime.block_on(admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")));
    result?;
    dropped.map_err(|err| format!("cannot drop the temporary database {name}: {err}"))?;
    Ok(())
}

/// The server named by `AUTH_SESSIONS_CODEGEN_URL`, described without its password.
struct CodegenServer {
    config: tokio_postgres::Config,
    /// Where the connection string came from, for messages.
    source: &'static str,
}

impl CodegenServer {
    fn from_env() -> Result<Self, BoxError> {
        let (text, source) = match std::env::var(CODEGEN_URL_VAR) {
            Ok(text) if !text.trim().is_empty() => (text, CODEGEN_URL_VAR),
            Ok(_) | Err(std::env::VarError::NotPresent) => (
                DEFAULT_CODEGEN_URL.to_owned(),
                "the default, AUTH_SESSIONS_CODEGEN_URL being unset",
            ),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!("{CODEGEN_URL_VAR} is not valid UTF-8").into());
            }
        };
        // The parse error is not shown: it can quote a character of the string.
        let mut config: tokio_postgres::Config = text.parse().map_err(|_| {
            format!(
                "{CODEGEN_URL_VAR} is not a PostgreSQL connection string (a postgres:// URL or \
                 key=value pairs); it is not shown because it may contain a password"
            )
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        Ok(Self { config, source })
    }

    /// Host, port, user and database: never the password, whichever form carried it.
    fn describe(&self) -> String {
        let config = &self.config;
        let mut hosts: Vec<String> = config.get_hosts().iter().map(host_name).collect();
        if hosts.is_empty() {
            hosts = config
                .get_hostaddrs()
                .iter()
                .map(|addr| addr.to_string())
                .collect();
        }
        let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
        format!(
            "{}: host {}, port {}, user {}, database {}",
            self.source,
            if hosts.is_empty() {
                "(none)".to_owned()
            } else {
                hosts.join(",")
            },
            if ports.is_empty() {
                "5432".to_owned()
            } else {
                ports.join(",")
            },
            config.get_user().unwrap_or("(none)"),
            config.get_dbname().unwrap_or("(the user's)"),
        )
    }

    fn is_local(&self) -> bool {
        let hosts = self.config.get_hosts();
        let addrs = self.config.get_hostaddrs();
        hosts.iter().all(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|addr| addr.is_loopback())
            }
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(_) => true,
        }) && addrs.iter().all(|addr| addr.is_loopback())
    }
}

fn host_name(host: &tokio_postgres::config::Host) -> String {
    match host {
        tokio_postgres::config::Host::Tcp(name) => name.clone(),
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
    }
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

/// The content of `file` with line endings normalised, `None` when it does not exist.
fn read_normalized(file: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(file) {
        Ok(bytes) => Ok(Some(fingerprint::normalize(&bytes).into_owned())),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Replaces `file` with `content` by writing a temporary file next to it and renaming it over
/// `file`: a reader sees the old content or the new one, never a mix or a truncated file.
fn write_atomically(file: &Path, content: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = file.parent().expect("a file sits in a directory");
    let name = file
        .file_name()
        .expect("a file has a name")
        .to_string_lossy();
    let temp = dir.join(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut out = fs::File::create(&temp)?;
        out.write_all(content)?;
        out.sync_all()?;
        drop(out);
        fs::rename(&temp, file)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written.map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("cannot write {}: {err}", file.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(text: &str) -> String {
        let config = text.parse().expect("a valid connection string");
        CodegenServer {
            config,
            source: CODEGEN_URL_VAR,
        }
        .describe()
    }

    #[test]
    fn descriptions_never_carry_the_password() {
        for text in [
            "postgres://postgres:s3cret@db.example:6543/app",
            "postgres://postgres@db.example:6543/app?password=s3cret",
            "host=db.example port=6543 user=postgres password=s3cret dbname=app",
            "host=db.example port=6543 user=postgres password='s3cret' dbname=app",
        ] {
            let description = describe(text);
            assert!(!description.contains("s3cret"), "{text} → {description}");
            assert!(
                description.contains("host db.example, port 6543, user postgres, database app"),
                "{text} → {description}"
            );
        }
    }

    #[test]
    fn the_lock_round_trips_and_rejects_other_layouts() {
        let lock = Lock {
            inputs: [("queries/a.sql".to_owned(), "a".repeat(64))].into(),
            outputs: [("generated/src/lib.rs".to_owned(), "b".repeat(64))].into(),
        };
        assert_eq!(Lock::parse(&lock.render()), Some(lock.clone()));
        assert_eq!(
            Lock::parse(&lock.render().replace('\n', "\r\n")),
            Some(lock)
        );
        assert_eq!(Lock::parse("fingerprint = \"abc\"\n"), None);
        assert_eq!(
            Lock::parse(&format!(
                "format = 2\n[outputs]\n\"../x\" = \"{}\"\n",
                "c".repeat(64)
            )),
            None
        );
    }

    #[test]
    fn crlf_and_lf_hash_alike() {
        assert_eq!(
            fingerprint::digest(b"a\r\nb\r\n"),
            fingerprint::digest(b"a\nb\n")
        );
        assert_ne!(fingerprint::digest(b"a\rb"), fingerprint::digest(b"a\nb"));
    }
}
