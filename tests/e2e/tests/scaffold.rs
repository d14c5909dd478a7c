//! `kong-rust-host new` as a new author runs it: the crate it writes, outside this workspace,
//! passes its own harness test, builds, and its `.so` is served by the host.

use e2e::{cargo, run_host, target_dir, workspace_root, Setup, TempDir};
use kong_driver::{run_event, EventEnd, KongClient, SimRequest};

#[tokio::test(flavor = "multi_thread")]
async fn a_scaffolded_plugin_passes_its_test_builds_and_is_served() {
    let work = TempDir::new("scaffold");
    let krate = work.path().join("my-scaffold");
    let (status, stdout, stderr) = run_host(&[
        "new",
        "my-scaffold",
        krate.to_str().unwrap(),
        "--pdk-repo",
        workspace_root().to_str().unwrap(),
    ]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("tests/my_scaffold.rs"), "{stdout}");
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(r#"crate-type = ["cdylib", "rlib"]"#),
        "{manifest}"
    );

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

    let library = target.join("debug/libmy_scaffold.so");
    let setup = Setup::new(&[(&library, "libmy_scaffold.so")]);
    let host = setup.start(&[]);
    let kong = KongClient::new(host.socket("my-scaffold"));
    let id = kong
        .start_instance("my-scaffold", r#"{"value":"served"}"#)
        .await
        .unwrap()
        .id;
    let mut request = SimRequest::new();
    let outcome = run_event(&kong, id, "access", &mut request).await.unwrap();
    assert!(matches!(outcome.end, EventEnd::Ret), "{:?}", outcome.end);
    assert_eq!(
        request.upstream_headers().get_str("x-my-scaffold"),
        Some("served")
    );
}

#[test]
fn new_refuses_a_name_kong_would_not_take_and_a_dir_in_use() {
    let work = TempDir::new("scaffold-refused");
    let (status, _, stderr) = run_host(&["new", "My-Plugin", work.path().to_str().unwrap()]);
    assert!(!status.success());
    assert!(stderr.contains("lower-case"), "{stderr}");

    std::fs::write(work.path().join("keep.txt"), "mine").unwrap();
    let (status, _, stderr) = run_host(&["new", "fine", work.path().to_str().unwrap()]);
    assert!(!status.success());
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(work.path().join("keep.txt")).unwrap(),
        "mine"
    );
}
