//! docs/plugin-guide.md followed as a new author would: `kong-rust-host new`, the guide's files
//! written over what it wrote, that crate's own tests run, its `.so` served by the host.

use e2e::{
    cargo, marked_blocks, marked_files, run_host, start_instance, target_dir, workspace_root,
    write_crate, Setup, TempDir,
};
use kong_driver::{run_event, EventEnd, SimRequest};

/// Where the guide's `Cargo.toml` says the clone is.
const GUIDE_CLONE: &str = "/home/you/kong-rust-host";

#[tokio::test(flavor = "multi_thread")]
async fn the_guide_builds_a_plugin_the_host_serves() {
    let guide = std::fs::read_to_string(workspace_root().join("docs/plugin-guide.md")).unwrap();
    let files = marked_files(&guide);
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
    let krate = work.path().join("my-greeting");
    let (status, _, stderr) = run_host(&[
        "new",
        "my-greeting",
        krate.to_str().unwrap(),
        "--pdk-repo",
        workspace_root().to_str().unwrap(),
    ]);
    assert!(status.success(), "{stderr}");
    // The Cargo.toml the guide shows is the one `new` writes.
    let written = marked_blocks(&guide, "<!-- written by: ");
    assert_eq!(written.len(), 1, "one block written by kong-rust-host new");
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml"))
        .unwrap()
        .replace(workspace_root().to_str().unwrap(), GUIDE_CLONE);
    assert_eq!(manifest, written[0].1);

    let crate_args = write_crate(&krate, &files);
    let crate_args: Vec<&str> = crate_args.iter().map(String::as_str).collect();
    cargo("test", &crate_args);
    cargo("build", &crate_args);
    let target = target_dir();

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
