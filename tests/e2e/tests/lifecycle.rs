//! Start-up, shutdown and events Kong abandons.

use e2e::{artifacts, get, start_instance, Setup};
use kong_driver::{step_method_for, KongClient, LuaValue, PdkResponder, SimRequest, StepData};
use std::time::Duration;

fn hello() -> Setup {
    Setup::new(&[(&artifacts().hello, "librust_hello.so")])
}

async fn in_flight(kong: &KongClient) -> u64 {
    let report = kong.call("plugin.GetStatus", LuaValue::Nil).await.unwrap();
    get(&report, "EventsInFlight").as_u64().unwrap()
}

#[tokio::test]
async fn sigterm_lets_in_flight_events_finish_then_removes_sockets_and_exits_0() {
    let setup = hello();
    let host = setup.start(&[]);
    let socket = host.socket("rust-hello");
    let (kong, id) = start_instance(&host, "rust-hello", "{}").await;
    let mut conn = kong.connection().await.unwrap();
    let mut request = SimRequest::new().header("host", "h");
    let mut reply = conn.handle_event(id, "access").await.unwrap();

    host.signal(libc::SIGTERM);
    host.wait_for_log("SIGTERM: stopping", Duration::from_secs(5));
    // New connections are refused once the listener is gone...
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while socket.exists() {
        assert!(std::time::Instant::now() < deadline, "socket not removed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...but the event in flight completes on its existing connection.
    while let StepData::Call { method, args, .. } = &reply.data {
        let result = request.respond(method, args);
        reply = conn
            .step(step_method_for(method), reply.event_id, result)
            .await
            .unwrap();
    }
    assert_eq!(
        request.upstream_headers().get_str("x-hello"),
        Some("Hello world from rust")
    );
    let status = host.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn sigint_stops_too() {
    let setup = hello();
    let host = setup.start(&[]);
    let socket = host.socket("rust-hello");
    assert_eq!(host.stop_with(libc::SIGINT).code(), Some(0));
    assert!(!socket.exists());
}

#[tokio::test]
async fn events_kong_abandons_are_reclaimed_after_the_deadline() {
    let setup = hello();
    let host = setup.start(&["--kong-step-timeout", "1"]);
    let (kong, id) = start_instance(&host, "rust-hello", "{}").await;
    // Kong raised a Lua error inside a PDK call: it never sends the Step.
    let abandoned = kong.handle_event(id, "access").await.unwrap();
    assert!(matches!(abandoned.data, StepData::Call { .. }));
    // A client that disconnects mid-event abandons it too.
    {
        let mut conn = kong.connection().await.unwrap();
        conn.handle_event(id, "access").await.unwrap();
    }
    assert_eq!(in_flight(&kong).await, 2);
    host.wait_for_log(
        "rust-hello (access): Kong never answered kong.request.get_header",
        Duration::from_secs(5),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while in_flight(&kong).await != 0 {
        assert!(std::time::Instant::now() < deadline, "events not reclaimed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late = kong
        .step("plugin.Step", abandoned.event_id, None)
        .await
        .unwrap_err();
    assert_eq!(
        late.server_message(),
        Some(format!("event id {} not found", abandoned.event_id).as_str())
    );
    // The handlers' coroutines were released: the plugin still serves.
    let mut request = SimRequest::new().header("host", "h");
    kong_driver::run_event(&kong, id, "access", &mut request)
        .await
        .unwrap();
    assert_eq!(
        request.upstream_headers().get_str("x-hello-host"),
        Some("h")
    );
}

#[tokio::test]
async fn unloadable_files_are_logged_and_the_rest_is_served() {
    let a = artifacts();
    let setup = Setup::new(&[
        (&a.hello, "librust_hello.so"),
        (&a.not_a_plugin, "not-a-plugin.so"),
        (&a.changed_abi, "changed-abi.so"),
    ]);
    let host = setup.start(&[]);
    let line = host.wait_for_log("changed-abi.so", Duration::from_secs(1));
    assert!(line.contains("ABI does not match"), "{line}");
    assert!(host
        .wait_for_log("not-a-plugin.so", Duration::from_secs(1))
        .contains("no abi_stable root module"));
    let kong = KongClient::new(host.socket("rust-hello"));
    assert!(kong.start_instance("rust-hello", "{}").await.is_ok());
    let sockets: Vec<_> = std::fs::read_dir(setup.sockets.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".socket"))
        .collect();
    assert_eq!(sockets, ["rust-hello.socket"]);
}

#[test]
fn a_plugins_dir_with_nothing_loadable_is_an_error_exit() {
    let setup = Setup::new(&[(&artifacts().not_a_plugin, "x.so")]);
    let (status, _, stderr) = setup.serve_refused(&[]);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("no plugin could be loaded from"),
        "{stderr}"
    );
}

/// One emulated nginx worker under load, reacting to errors as Kong does: "no plugin instance"
/// drops its cached id (the next event starts a new instance), a refused connection fails the
/// request. Runs until it has `wanted` successful events after `restarted` is set.
async fn kong_worker(
    kong: KongClient,
    restarted: std::sync::Arc<std::sync::atomic::AtomicBool>,
    wanted: usize,
) -> (Vec<i64>, usize, usize) {
    use std::sync::atomic::Ordering;
    let (mut ids, mut no_instance, mut after) = (Vec::new(), 0, 0);
    let mut cached: Option<i64> = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while after < wanted {
        assert!(std::time::Instant::now() < deadline, "worker stalled");
        let id = match cached {
            Some(id) => id,
            None => match kong
                .start_instance("rust-hello", r#"{"message":"load"}"#)
                .await
            {
                Ok(reply) => {
                    ids.push(reply.id);
                    cached = Some(reply.id);
                    reply.id
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let mut request = SimRequest::new().header("host", "h");
        match kong_driver::run_event(&kong, id, "access", &mut request).await {
            Ok(_) if restarted.load(Ordering::Acquire) => after += 1,
            Ok(_) => {}
            Err(error) if error.is_no_plugin_instance() => {
                no_instance += 1;
                cached = None;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    (ids, no_instance, after)
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_under_load_then_restart_kong_carries_on_with_new_ids() {
    use std::sync::{atomic::AtomicBool, Arc};
    let setup = hello();
    let host = setup.start(&[]);
    let socket = host.socket("rust-hello");
    let restarted = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(kong_worker(
                KongClient::new(&socket),
                Arc::clone(&restarted),
                50,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let old_pid = host.pid();
    host.stop_with(libc::SIGKILL);
    // The stale socket file is still there; the new process replaces it.
    assert!(socket.exists());
    let host = setup.start(&[]);
    assert_ne!(host.pid(), old_pid);
    restarted.store(true, std::sync::atomic::Ordering::Release);

    let mut all_ids = std::collections::HashSet::new();
    let mut saw_no_instance = 0;
    for worker in workers {
        let (ids, no_instance, after) = worker.await.unwrap();
        assert_eq!(after, 50);
        saw_no_instance += no_instance;
        for id in ids {
            assert!(all_ids.insert(id), "instance id {id} handed out twice");
        }
    }
    // Workers that held an id from the killed host were told to start over.
    assert!(saw_no_instance > 0);
    drop(host);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_takes_over_within_a_second_when_the_serving_host_dies_under_load() {
    use std::sync::{atomic::AtomicBool, Arc};
    let setup = hello();
    let serving = setup.start(&[]);
    // Kong 3.4 starts the same command once per entry: the second process stands by.
    let standby = setup.spawn(&[]);
    standby.wait_for_log(
        &format!("pid {} serves", serving.pid()),
        Duration::from_secs(10),
    );
    assert!(!standby.log().contains("ready: serving"));

    let socket = serving.socket("rust-hello");
    let restarted = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(kong_worker(
                KongClient::new(&socket),
                Arc::clone(&restarted),
                30,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = std::time::Instant::now();
    serving.stop_with(libc::SIGKILL);
    standby.wait_for_log("ready: serving", Duration::from_secs(5));
    let took_over = killed.elapsed();
    assert!(took_over < Duration::from_secs(1), "took {took_over:?}");
    restarted.store(true, std::sync::atomic::Ordering::Release);

    let mut ids = std::collections::HashSet::new();
    for worker in workers {
        let (worker_ids, _, after) = worker.await.unwrap();
        assert_eq!(after, 30);
        for id in worker_ids {
            assert!(ids.insert(id), "instance id {id} reused after the takeover");
        }
    }
    assert!(standby.log().contains("taking over"));
}
