//! Socket permissions, refusing plugin files others can write, and what the host answers at
//! each of its limits.

use e2e::{artifacts, start_instance, Setup};
use kong_driver::{
    run_event, EventEnd, KongClient, LuaValue, RawConn, Request, SimRequest, StepData,
};
use std::{os::unix::fs::PermissionsExt, time::Duration};

fn hello() -> Setup {
    Setup::new(&[(&artifacts().hello, "librust_hello.so")])
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn sockets_are_0660_by_default_and_mode_and_group_are_configurable() {
    let setup = hello();
    let host = setup.start(&[]);
    assert_eq!(mode(&host.socket("rust-hello")), 0o660);
    drop(host);

    // SAFETY: getegid has no preconditions.
    let gid = unsafe { libc::getegid() }.to_string();
    let host = setup.start(&["--socket-mode", "0600", "--socket-group", &gid]);
    let socket = host.socket("rust-hello");
    assert_eq!(mode(&socket), 0o600);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&socket).unwrap().gid().to_string(), gid);
}

#[test]
fn a_plugin_file_others_can_write_is_refused() {
    let a = artifacts();
    let setup = Setup::new(&[
        (&a.hello, "librust_hello.so"),
        (&a.bench, "librust_bench.so"),
    ]);
    let writable = setup.plugins.path().join("librust_bench.so");
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o666)).unwrap();
    let host = setup.start(&[]);
    let line = host.wait_for_log("librust_bench.so", Duration::from_secs(1));
    assert!(
        line.contains("writable by other users (mode 0666)"),
        "{line}"
    );
    assert!(line.contains("chmod o-w"), "{line}");
    assert!(host.socket("rust-hello").exists());
    assert!(!host.socket("rust-bench").exists());
}

#[test]
fn a_plugins_dir_others_can_write_is_refused_whole() {
    let setup = hello();
    std::fs::set_permissions(setup.plugins.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (status, _, stderr) = setup.serve_refused(&[]);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("the directory is writable by other users (mode 0777)"),
        "{stderr}"
    );
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_until_one_ends() {
    let setup = hello();
    let host = setup.start(&["--max-connections", "2"]);
    let socket = host.socket("rust-hello");
    let mut first = RawConn::connect(&socket).await.unwrap();
    let mut second = RawConn::connect(&socket).await.unwrap();
    // Both are counted once the host has answered on them.
    for conn in [&mut first, &mut second] {
        let status = Request::new("plugin.GetStatus", LuaValue::Nil).encode(1);
        conn.send(&status).await.unwrap();
        conn.read_value().await.unwrap();
    }
    let mut third = RawConn::connect(&socket).await.unwrap();
    assert!(
        third.is_closed(Duration::from_secs(5)).await,
        "the third connection is closed at once"
    );
    host.wait_for_log(
        "2 connections open (--max-connections)",
        Duration::from_secs(5),
    );

    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kong = KongClient::new(&socket);
    assert!(kong.start_instance("rust-hello", "{}").await.is_ok());
}

/// Starts an access event of rust-faulty whose handler sleeps `hang_ms` (its instance's config)
/// in plugin code, and returns once it does: it holds a place for that long.
fn hold_place(kong: &KongClient, id: i64) -> tokio::task::JoinHandle<EventEnd> {
    let kong = kong.clone();
    tokio::spawn(async move {
        let mut request = SimRequest::new().header("x-fault", "hang");
        run_event(&kong, id, "access", &mut request)
            .await
            .unwrap()
            .end
    })
}

/// Only handlers running plugin code count against the limit (an event waiting on Kong gives
/// its place up: tests/e2e/tests/reclaim.rs); with every place held by one, requests get 503.
#[tokio::test]
async fn a_plugin_at_its_event_limit_answers_503_and_recovers() {
    let setup = Setup::new(&[(&artifacts().faulty, "libfixture_faulty.so")]);
    let host = setup.start(&["--max-events-per-plugin", "2"]);
    let (kong, id) = start_instance(&host, "rust-faulty", "{}").await;
    let hanging = kong
        .start_instance("rust-faulty", r#"{"hang_ms":1500}"#)
        .await
        .unwrap()
        .id;
    let held = [hold_place(&kong, hanging), hold_place(&kong, hanging)];
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut request = SimRequest::new();
    let refused = run_event(&kong, id, "access", &mut request).await.unwrap();
    let exit = refused.exit().expect("refused with an exit");
    assert_eq!(exit.status(), Some(503));
    // The plugin did not run: its first call would have been get_header("x-fault").
    let methods: Vec<&str> = refused.calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["kong.response.exit"]);
    host.wait_for_log(
        "2 events in flight (--max-events-per-plugin)",
        Duration::from_secs(5),
    );

    // Finished events free their places.
    for event in held {
        assert!(matches!(event.await.unwrap(), EventEnd::Ret));
    }
    let mut request = SimRequest::new();
    assert!(matches!(
        run_event(&kong, id, "access", &mut request)
            .await
            .unwrap()
            .end,
        EventEnd::Ret
    ));
}

#[tokio::test]
async fn fail_open_plugins_let_requests_through_when_overloaded_or_failing() {
    let a = artifacts();
    let setup = Setup::new(&[(&a.faulty, "libfixture_faulty.so")]);
    let host = setup.start(&["--fail-open", "rust-faulty", "--max-events-per-plugin", "1"]);
    let (kong, id) = start_instance(&host, "rust-faulty", "{}").await;

    let mut panicking = SimRequest::new().header("x-fault", "panic");
    let outcome = run_event(&kong, id, "access", &mut panicking)
        .await
        .unwrap();
    assert!(matches!(outcome.end, EventEnd::Ret), "{:?}", outcome.end);
    host.wait_for_log("access panicked on purpose", Duration::from_secs(5));

    let hanging = kong
        .start_instance("rust-faulty", r#"{"hang_ms":1000}"#)
        .await
        .unwrap()
        .id;
    let held = hold_place(&kong, hanging);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let overloaded = kong.handle_event(id, "access").await.unwrap();
    assert!(matches!(overloaded.data, StepData::Ret));
    assert!(matches!(held.await.unwrap(), EventEnd::Ret));
}

#[tokio::test]
async fn start_instance_over_the_instance_limit_is_refused() {
    let setup = hello();
    let host = setup.start(&["--max-instances", "3"]);
    let kong = KongClient::new(host.socket("rust-hello"));
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            kong.start_instance("rust-hello", &format!(r#"{{"__seq__":{i}}}"#))
                .await
                .unwrap()
                .id,
        );
    }
    let refused = kong.start_instance("rust-hello", "{}").await.unwrap_err();
    assert!(
        refused
            .server_message()
            .unwrap()
            .contains("instance limit reached (3 live instance ids)"),
        "{refused}"
    );
    kong.close_instance(ids[0]).await.unwrap();
    assert!(kong.start_instance("rust-hello", "{}").await.is_ok());
}

#[test]
fn fail_open_must_name_a_served_plugin() {
    let setup = hello();
    let (status, _, stderr) = setup.serve_refused(&["--fail-open", "rust-nope"]);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("--fail-open rust-nope: this host serves no such plugin"),
        "{stderr}"
    );
}
