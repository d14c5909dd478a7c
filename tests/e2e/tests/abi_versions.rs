//! The versioning promise of the crate split: the ABI is versioned by `kong-rust-abi` alone.
//!
//! A plugin built against a `kong-rust-pdk` whose minor version was bumped (a release abi_stable
//! would once have refused every plugin over) loads and serves in this host, as long as
//! `kong-rust-abi` is untouched; a plugin built against another `kong-rust-abi` 0.y is refused
//! with one line naming the ABI version the host needs. Both plugins are built here, outside the
//! workspace, from copies of this repository's crates (as `guide.rs` builds the guide's crate).

use e2e::{artifacts, cargo, run_host, start_instance, target_dir, workspace_root, Setup, TempDir};
use kong_driver::{run_event, EventEnd, SimRequest};
use std::path::Path;

/// Copies `from` into `to`, leaving out `target` dirs.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            if entry.file_name() != "target" {
                copy_tree(&path, &dest);
            }
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}

/// The `[package]` version line of the manifest `text`, and the version.
fn version_line(text: &str) -> (&str, &str) {
    let line = text
        .lines()
        .find(|l| l.starts_with("version = \""))
        .expect("a package version");
    (
        line,
        line.trim_start_matches("version = \"")
            .trim_end_matches('"'),
    )
}

/// The package version of the repository's crate in `folder`.
fn repo_version(folder: &str) -> String {
    let text = std::fs::read_to_string(workspace_root().join(folder).join("Cargo.toml")).unwrap();
    version_line(&text).1.to_string()
}

/// The manifest `text` with its package's minor version bumped, and the new version.
fn bump_minor(text: &str) -> (String, String) {
    let (line, version) = version_line(text);
    let parts: Vec<u64> = version.split('.').map(|p| p.parse().unwrap()).collect();
    let bumped = format!("{}.{}.0", parts[0], parts[1] + 1);
    (
        text.replacen(line, &format!("version = \"{bumped}\""), 1),
        bumped,
    )
}

/// A workspace in `work` holding copies of the crates in `copied` (repository folder, folder in
/// `work`) and a plugin crate `plugin` whose library is rust-hello's source; every other
/// dependency is the repository's own. The workspace's `[workspace.package]` and
/// `[workspace.dependencies]` are the repository's, so the copies build unchanged.
fn plugin_workspace(work: &Path, copied: &[(&str, &str)], plugin: &str) {
    let root = workspace_root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let shared = &manifest[manifest.find("[workspace.package]").unwrap()..];
    let shared = shared[..shared.find("[profile").unwrap_or(shared.len())].to_string();
    // Path dependencies: the repository's, or the copy when there is one.
    let mut rewritten = String::new();
    for line in shared.lines() {
        let line = match line.find("path = \"") {
            Some(start) => {
                let rest = &line[start + 8..];
                let path = &rest[..rest.find('"').unwrap()];
                let target = match copied.iter().find(|(from, _)| *from == path) {
                    Some((_, to)) => work.join(to),
                    None => root.join(path),
                };
                // No version: a copy's may have been bumped.
                let name = &line[..line.find(" = ").unwrap()];
                format!("{name} = {{ path = \"{}\" }}", target.display())
            }
            None => line.to_string(),
        };
        rewritten.push_str(&line);
        rewritten.push('\n');
    }
    let members: Vec<String> = copied
        .iter()
        .map(|(_, to)| format!("\"{to}\""))
        .chain([format!("\"{plugin}\"")])
        .collect();
    std::fs::write(
        work.join("Cargo.toml"),
        format!(
            "[workspace]\nresolver = \"2\"\nmembers = [{}]\n\n{rewritten}",
            members.join(", ")
        ),
    )
    .unwrap();
    for (from, to) in copied {
        copy_tree(&root.join(from), &work.join(to));
    }
    let krate = work.join(plugin);
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{plugin}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\n\
             [dependencies]\nkong-rust-pdk.workspace = true\nserde.workspace = true\n"
        ),
    )
    .unwrap();
    std::fs::copy(
        root.join("plugins/hello/src/lib.rs"),
        krate.join("src/lib.rs"),
    )
    .unwrap();
    // The repository's versions, so the build reuses what is already compiled.
    std::fs::copy(root.join("Cargo.lock"), work.join("Cargo.lock")).unwrap();
}

/// Bumps the minor version of the copy's `Cargo.toml`; returns the new version.
fn bump_copy(work: &Path, folder: &str) -> String {
    let manifest = work.join(folder).join("Cargo.toml");
    let (text, bumped) = bump_minor(&std::fs::read_to_string(&manifest).unwrap());
    std::fs::write(&manifest, text).unwrap();
    bumped
}

fn build(work: &Path) {
    let manifest = work.join("Cargo.toml");
    let target = target_dir();
    cargo(
        "build",
        &[
            "--manifest-path",
            manifest.to_str().unwrap(),
            "--target-dir",
            target.to_str().unwrap(),
            "--workspace",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_built_against_a_newer_pdk_minor_loads_when_the_abi_is_unchanged() {
    artifacts();
    let work = TempDir::new("pdk-bump");
    plugin_workspace(
        work.path(),
        &[("pdk", "pdk"), ("pdk/macros", "pdk/macros")],
        "pdk_bumped",
    );
    let pdk_version = bump_copy(work.path(), "pdk");
    assert_ne!(pdk_version, repo_version("pdk"));
    build(work.path());

    let library = target_dir().join("debug/libpdk_bumped.so");
    let setup = Setup::new(&[(&library, "libpdk_bumped.so")]);
    let host = setup.start(&[]);
    let (kong, id) = start_instance(&host, "rust-hello", r#"{"message":"bumped"}"#).await;
    let mut request = SimRequest::new().header("host", "example.com");
    let outcome = run_event(&kong, id, "access", &mut request).await.unwrap();
    assert!(matches!(outcome.end, EventEnd::Ret), "{:?}", outcome.end);
    assert_eq!(
        request.upstream_headers().get_str("x-hello"),
        Some("Hello bumped from rust"),
        "built against kong-rust-pdk {pdk_version}"
    );
}

#[test]
fn a_plugin_built_against_another_abi_minor_is_refused_naming_the_abi_this_host_needs() {
    artifacts();
    let work = TempDir::new("abi-bump");
    plugin_workspace(
        work.path(),
        &[
            ("plugin-abi", "plugin-abi"),
            ("pdk", "pdk"),
            ("pdk/macros", "pdk/macros"),
        ],
        "abi_bumped",
    );
    let abi_version = bump_copy(work.path(), "plugin-abi");
    build(work.path());

    let library = target_dir().join("debug/libabi_bumped.so");
    let dir = e2e::plugins_dir(&[(&library, "abi-bumped.so")]);
    let (status, _, stderr) = run_host(&[
        "dump",
        "--all",
        "--plugins-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        !status.success(),
        "no plugin loads, so dump fails: {stderr}"
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("abi-bumped.so"))
        .collect();
    assert_eq!(lines.len(), 1, "exactly one line:\n{stderr}");
    let host_abi = repo_version("plugin-abi");
    let needed = &host_abi[..host_abi.rfind('.').unwrap()];
    assert!(
        lines[0].contains(&format!(
            "rebuild the plugin against a kong-rust-pdk that uses kong-rust-abi {needed}"
        )),
        "{} (plugin's ABI {abi_version})",
        lines[0]
    );
    let verdict =
        format!("incompatible package versions: expected {host_abi}, found {abi_version}");
    assert_eq!(lines[0].matches(&verdict).count(), 1, "{}", lines[0]);
}
