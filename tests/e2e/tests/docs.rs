//! Docs that stay true: every repository path the READMEs, `BENCHMARKS.md` and `docs/` cite
//! exists, so a moved or renamed file cannot leave a reader following a dead path.
//!
//! What counts as a cited repository path: an inline code span holding one path-shaped word
//! (`host/src/lib.rs`, `docs/`) whose first folder is a tracked top-level entry of the
//! repository (or which names a file beside the document, as a crate's README does), and every
//! markdown link to a local file. Code blocks are commands and examples, not citations; paths
//! with placeholders (`<name>`), absolute paths, paths out of the repository (`../`) and other
//! projects' paths (Kong's `kong/…`) are not this repository's.

use e2e::workspace_root;
use std::path::{Path, PathBuf};

/// The documents a reader follows: every README (the repository's and each crate's),
/// `BENCHMARKS.md` and `docs/*.md`.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut found = vec![root.join("BENCHMARKS.md")];
    let docs = std::fs::read_dir(root.join("docs")).expect("docs/ exists");
    found.extend(
        docs.map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "md")),
    );
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.') && !ignored(root, &path) {
                    folders.push(path);
                }
            } else if name == "README.md" {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Whether `path` is under a folder `.gitignore` names (build outputs, `run/`).
fn ignored(root: &Path, path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    let gitignore = std::fs::read_to_string(root.join(".gitignore")).unwrap_or_default();
    gitignore.lines().any(|line| {
        let pattern = line.trim().trim_end_matches('/');
        match pattern.strip_prefix("**/") {
            Some(anywhere) => anywhere == name,
            None => pattern
                .strip_prefix('/')
                .is_some_and(|top| path == root.join(top)),
        }
    })
}

/// The document without its fenced code blocks.
fn prose(text: &str) -> String {
    let mut fenced = false;
    let mut kept = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

/// A code span that is one path: `dir/file.ext` or `dir/`.
fn path_shaped(span: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_-./".contains(c);
    let last = span.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    span.contains('/')
        && span.chars().all(allowed)
        && !span.starts_with(['/', '.'])
        && (span.ends_with('/') || last.contains('.'))
}

/// Markdown link targets to local files, without their `#fragment`.
fn local_links(text: &str) -> Vec<&str> {
    text.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            let target = &rest[..rest.find(')')?];
            let file = target.split('#').next().unwrap_or("");
            let external = file.contains("://") || file.starts_with("mailto:");
            (!file.is_empty() && !external && !file.contains(char::is_whitespace)).then_some(file)
        })
        .collect()
}

/// The paths `document` cites that do not exist.
fn stale_paths(root: &Path, document: &Path) -> Vec<String> {
    let text = prose(&std::fs::read_to_string(document).unwrap());
    let beside = document.parent().unwrap();
    let top_level = |span: &str| {
        let first = span.split('/').next().unwrap_or("");
        let entry = root.join(first);
        entry.exists() && !ignored(root, &entry)
    };
    let mut stale = Vec::new();
    // Odd pieces between backticks are code spans.
    for span in text.split('`').skip(1).step_by(2) {
        if !path_shaped(span) || beside.join(span).exists() {
            continue;
        }
        if top_level(span) && !root.join(span).exists() {
            stale.push(format!("`{span}`"));
        }
    }
    for link in local_links(&text) {
        if !beside.join(link).exists() {
            stale.push(format!("link ({link})"));
        }
    }
    stale
}

#[test]
fn every_repository_path_the_docs_cite_exists() {
    let root = workspace_root();
    let mut report = Vec::new();
    for document in documents(&root) {
        let name = document.strip_prefix(&root).unwrap().display().to_string();
        for stale in stale_paths(&root, &document) {
            report.push(format!("{name}: {stale}"));
        }
    }
    assert!(
        report.is_empty(),
        "paths cited in the docs that do not exist:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_path_check_finds_a_stale_path_and_passes_over_what_is_not_one() {
    let root = workspace_root();
    let scratch = e2e::TempDir::new("docs-check");
    let document = scratch.path().join("README.md");
    std::fs::write(
        &document,
        "See `host/src/server.rs` and [the guide](docs/nowhere.md), `host/src/lib.rs`, \
         `docs/`, `kong/runloop/handler.lua`, `<prefix>/<name>.socket`, `/usr/local/kong/`.\n\
         ```sh\ncat host/src/gone.rs `host/src/gone.rs`\n```\n",
    )
    .unwrap();
    assert_eq!(
        stale_paths(&root, &document),
        ["`host/src/server.rs`", "link (docs/nowhere.md)"]
    );
}
