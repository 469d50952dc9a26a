//! The README as a newcomer reads it: a database of the service's own, a warning about the
//! first build, shell blocks that work when pasted in order, and the session limits.

use std::path::{Path, PathBuf};

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md")
}

/// The `sh` blocks, in order, each as its lines (comments stripped, continuations joined).
fn shell_blocks(text: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    let mut pending = String::new();
    for line in text.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```sh") => current = Some(Vec::new()),
            (Some(_), l) if l.starts_with("```") => blocks.push(current.take().unwrap()),
            (Some(block), l) => {
                if l.starts_with('#') {
                    continue;
                }
                if let Some(head) = l.strip_suffix('\\') {
                    pending.push_str(head);
                    continue;
                }
                pending.push_str(l);
                block.push(std::mem::take(&mut pending));
            }
            _ => {}
        }
    }
    blocks
}

#[test]
fn the_readme_creates_a_database_of_the_services_own() {
    let text = readme();
    let blocks = shell_blocks(&text);
    let run = blocks.first().expect("a Run block").join("\n");
    assert!(
        run.contains("createdb") || run.contains("CREATE DATABASE"),
        "the Run block creates a database of its own:\n{run}"
    );
    let url = run
        .lines()
        .find_map(|line| line.split("DATABASE_URL=").nth(1))
        .expect("the Run block sets DATABASE_URL");
    let database = url
        .trim_matches(|c| c == '"' || c == '\'')
        .split('?')
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    assert_ne!(database, "postgres", "not the maintenance database: {url}");
}

#[test]
fn the_readme_warns_that_the_first_build_takes_minutes() {
    let text = readme().to_lowercase();
    assert!(
        text.contains("first build") && text.contains("minutes"),
        "the README says the first build compiles for minutes"
    );
}

#[test]
fn the_readme_blocks_work_when_pasted_in_order() {
    // The Run block starts at the repository root (`cd service`).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut cwd: PathBuf = root.to_path_buf();
    for block in shell_blocks(&readme()) {
        for line in block {
            for command in line.split("&&").map(str::trim) {
                if let Some(dir) = command.strip_prefix("cd ") {
                    cwd = cwd.join(dir.trim());
                    assert!(cwd.is_dir(), "`{command}` from the previous blocks");
                }
                if command.contains("cargo ") {
                    let manifest = command
                        .split("--manifest-path")
                        .nth(1)
                        .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
                        .unwrap_or_else(|| "Cargo.toml".to_owned());
                    assert!(
                        cwd.join(&manifest).is_file(),
                        "`{command}` needs {manifest} in the directory the blocks before it \
                         leave ({})",
                        cwd.strip_prefix(root).unwrap().display()
                    );
                }
            }
        }
    }
}

#[test]
fn the_readme_names_the_session_limits_and_sign_out_everywhere() {
    let text = readme();
    for needle in [
        "--max-sessions-per-user",
        "--idle-timeout-secs",
        "--rotation-grace-secs",
        "/sessions/revoke-all",
    ] {
        assert!(text.contains(needle), "README names {needle}");
    }
}
