//! docs/plugin-guide.md followed as a new author would: its files written into a new crate
//! beside a clone of this repository, that crate's own tests run, its `.so` served by the host.

use e2e::{cargo, start_instance, target_dir, workspace_root, Setup, TempDir};
use kong_driver::{run_event, EventEnd, SimRequest};

/// The guide's files: each fenced block right after a `<!-- file: PATH -->` line.
fn guide_files(guide: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        let Some(path) = line
            .strip_prefix("<!-- file: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().expect("a fenced block after the file marker");
        assert!(
            fence.starts_with("```"),
            "{path}: expected a fence, got {fence:?}"
        );
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        files.push((path.to_string(), body.join("\n") + "\n"));
    }
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guide_builds_a_plugin_the_host_serves() {
    let guide = std::fs::read_to_string(workspace_root().join("docs/plugin-guide.md")).unwrap();
    let files = guide_files(&guide);
    let rust_files = files
        .iter()
        .filter(|(path, _)| path.ends_with(".rs"))
        .count();
    assert_eq!(
        guide.matches("```rust").count(),
        rust_files,
        "every Rust block of the guide must be one of its files, so this test compiles it"
    );

    let work = TempDir::new("guide");
    std::os::unix::fs::symlink(workspace_root(), work.path().join("kong-rust-host")).unwrap();
    let krate = work.path().join("my-greeting");
    for (path, text) in &files {
        let path = krate.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    // The workspace's versions, so the build reuses what is already compiled.
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        krate.join("Cargo.lock"),
    )
    .unwrap();
    let manifest = krate.join("Cargo.toml");
    let target = target_dir();
    let crate_args = [
        "--manifest-path",
        manifest.to_str().unwrap(),
        "--target-dir",
        target.to_str().unwrap(),
    ];
    cargo("test", &crate_args);
    cargo("build", &crate_args);

    let library = target.join("debug/libmy_greeting.so");
    let setup = Setup::new(&[(&library, "libmy_greeting.so")]);
    let host = setup.start(&[]);
    let (kong, id) = start_instance(&host, "my-greeting", r#"{"greeting":"Hi"}"#).await;
    let mut request = SimRequest::new().header("x-user", "ada");
    for phase in ["access", "log"] {
        let outcome = run_event(&kong, id, phase, &mut request).await.unwrap();
        assert!(
            matches!(outcome.end, EventEnd::Ret),
            "{phase}: {:?}",
            outcome.end
        );
    }
    assert_eq!(
        request.upstream_headers().get_str("x-greeting"),
        Some("Hi, ada")
    );
    assert_eq!(
        request.logs(),
        [(
            "notice".to_string(),
            "my-greeting: status=200 user=ada".to_string()
        )]
    );
    // A config the schema refuses fails StartInstance with the field named.
    let refused = kong
        .start_instance("my-greeting", r#"{"user_header":"no spaces"}"#)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("user_header"), "{refused}");
}
