//! Dedicated mode: rust-hello's own server binary, the host used as a library, no `.so`.

use e2e::{artifacts, run_host, start_instance, Host, Setup, TempDir};
use kong_driver::{run_event, EventEnd, SimRequest};
use std::process::Command;

#[test]
fn dash_dump_prints_what_the_host_prints_for_the_same_plugin() {
    let setup = Setup::new(&[(&artifacts().hello, "librust_hello.so")]);
    let plugins_dir = setup.plugins.path().to_str().unwrap();
    let (status, from_host, _) = run_host(&["dump", "rust-hello", "--plugins-dir", plugins_dir]);
    assert!(status.success());
    for flag in ["-dump", "--dump"] {
        let output = Command::new(&artifacts().hello_server)
            .arg(flag)
            .output()
            .unwrap();
        assert!(output.status.success(), "{flag}: {output:?}");
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            from_host,
            "{flag}"
        );
    }
}

#[tokio::test]
async fn serves_its_plugin_on_prefix_slash_name_dot_socket() {
    let sockets = TempDir::new("dedicated");
    let server = Host::start_dedicated(&artifacts().hello_server, sockets.path());
    let socket = sockets.path().join("rust-hello.socket");
    assert_eq!(server.socket("rust-hello"), socket);

    let (kong, id) = start_instance(&server, "rust-hello", r#"{"message":"solo"}"#).await;
    let mut request = SimRequest::new().header("host", "example.com");
    let outcome = run_event(&kong, id, "access", &mut request).await.unwrap();
    assert!(matches!(outcome.end, EventEnd::Ret), "{:?}", outcome.end);
    assert_eq!(
        request.upstream_headers().get_str("x-hello"),
        Some("Hello solo from rust")
    );
    assert_eq!(kong.server_pid(), Some(server.pid() as i64));

    let status = server.stop();
    assert!(status.success(), "{status:?}");
    assert!(!sockets.path().join("rust-hello.socket").exists());
}

#[test]
fn version_is_the_plugins_and_bad_flags_are_refused() {
    let version = Command::new(&artifacts().hello_server)
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(version.stdout).unwrap(),
        "rust-hello 0.1.0\n"
    );

    let bad = Command::new(&artifacts().hello_server)
        .arg("--plugins-dir")
        .arg("/tmp")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("unexpected argument '--plugins-dir'"),
        "{bad:?}"
    );
}
