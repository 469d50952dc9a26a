//! The module arrows point one way: `routes` -> handlers (`api`, `pages`) -> `plumbing` -> the
//! crate. A handler or the plumbing that reached back up would bring the circle back.

use std::path::Path;

fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            found.extend(sources(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).expect("read a source file");
            found.push((path.display().to_string(), text));
        }
    }
    found
}

fn uses(text: &str, module: &str) -> bool {
    text.contains(&format!("crate::{module}::"))
        || text.contains(&format!("crate::{module};"))
        || text.contains(&format!("crate::{{{module}"))
        || text.contains(&format!(", {module}}}"))
}

#[test]
fn plumbing_uses_no_handler_and_handlers_use_no_router() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let plumbing = sources(&src.join("plumbing"));
    assert!(plumbing.len() >= 3, "the plumbing module has its files");
    for (path, text) in &plumbing {
        for module in ["api", "pages", "routes"] {
            assert!(!uses(text, module), "{path} uses crate::{module}");
        }
    }
    for handler in ["api.rs", "pages.rs"] {
        let text = std::fs::read_to_string(src.join(handler)).expect("read a handler module");
        assert!(!uses(&text, "routes"), "{handler} uses crate::routes");
        let other = if handler == "api.rs" { "pages" } else { "api" };
        assert!(!uses(&text, other), "{handler} uses crate::{other}");
        assert!(
            text.contains("crate::plumbing"),
            "{handler} takes its plumbing from plumbing"
        );
    }
}
