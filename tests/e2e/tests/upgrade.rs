//! `serve --upgrade`: a new host takes over a running one under load, and Kong sees no refused
//! connection, no closed connection and no failed call.

use e2e::{artifacts, get, start_instance, Host, Setup};
use kong_driver::{
    run_event, step_method_for, EventEnd, KongClient, LuaValue, PdkResponder, SimRequest, StepData,
};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

const CONFIG: &str = r#"{"message":"hi"}"#;
const WORKERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_under_load_fails_no_call_and_serves_a_plugin_dropped_in_since() {
    let setup = Setup::new(&[(&artifacts().hello, "librust_hello.so")]);
    let old = setup.start(&[]);
    let (kong, id) = start_instance(&old, "rust-hello", CONFIG).await;
    let kong = Arc::new(kong);

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let (kong, stop) = (Arc::clone(&kong), Arc::clone(&stop));
        workers.spawn(async move {
            let (mut served, mut failures) = (0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let mut request = SimRequest::new().header("host", "example.com");
                match run_event(&kong, id, "access", &mut request).await {
                    Ok(outcome)
                        if matches!(outcome.end, EventEnd::Ret)
                            && request.upstream_headers().get_str("x-hello")
                                == Some("Hello hi from rust") =>
                    {
                        served += 1
                    }
                    other => failures.push(format!("{other:?}")),
                }
            }
            (served, failures)
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    std::fs::copy(
        &artifacts().bench,
        setup.plugins.path().join("librust_bench.so"),
    )
    .unwrap();
    let new = Host::start(setup.plugins.path(), setup.sockets.path(), &["--upgrade"]);
    let handed = old.wait_for_log("no event left here", Duration::from_secs(30));
    // Kong's pooled connections moved to the new host rather than being closed.
    let moved: usize = handed
        .split("handed over ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{handed}"));
    assert!(moved >= 1, "{handed}");
    let status = old.wait(Duration::from_secs(10));
    assert!(status.success(), "old host: {status:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let (mut served, mut failures) = (0, Vec::new());
    while let Some(result) = workers.join_next().await {
        let (s, f) = result.unwrap();
        served += s;
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} failed calls: {:?}",
        failures.len(),
        &failures[..1]
    );
    assert!(served > 100, "only {served} events ran");
    println!("{served} events through the upgrade, {moved} connections moved, 0 failed");
    assert!(
        new.log().contains("took over 1 of 1 instance ids"),
        "{}",
        new.log()
    );

    // The same pooled connections now reach the new host, with the id Kong holds.
    let report = kong.call("plugin.GetStatus", LuaValue::Nil).await.unwrap();
    assert_eq!(get(&report, "Pid").as_u64(), Some(new.pid() as u64));
    let mut request = SimRequest::new().header("host", "example.com");
    run_event(&kong, id, "access", &mut request).await.unwrap();

    // The plugin dropped in before the upgrade is served by the new host.
    let bench = KongClient::new(new.socket("rust-bench"));
    bench.start_instance("rust-bench", "{}").await.unwrap();
}

#[test]
fn upgrade_with_no_running_host_starts_as_usual() {
    let setup = Setup::new(&[(&artifacts().hello, "librust_hello.so")]);
    let host = setup.start(&["--upgrade"]);
    assert!(host.log().contains("no host serves"), "{}", host.log());
    assert!(host.socket("rust-hello").exists());
    assert!(host.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_begun_on_the_old_host_finishes_through_the_new_one() {
    let setup = Setup::new(&[(&artifacts().hello, "librust_hello.so")]);
    let old = setup.start(&[]);
    let (kong, id) = start_instance(&old, "rust-hello", CONFIG).await;
    let mut request = SimRequest::new().header("host", "example.com");
    let mut conn = kong.connection().await.unwrap();
    let first = conn.handle_event(id, "access").await.unwrap();

    let new = Host::start(setup.plugins.path(), setup.sockets.path(), &["--upgrade"]);
    // Every Step from here goes on connections to the new host, which passes them on.
    let fresh = KongClient::new(new.socket("rust-hello"));
    let (event_id, mut data) = (first.event_id, first.data);
    let mut steps = 0;
    while let StepData::Call { method, args, .. } = &data {
        let result = request.respond(method, args);
        data = fresh
            .step(step_method_for(method), event_id, result)
            .await
            .unwrap()
            .data;
        steps += 1;
    }
    assert!(steps >= 4, "{steps}");
    assert_eq!(
        request.upstream_headers().get_str("x-hello"),
        Some("Hello hi from rust")
    );
    kong.release(conn);
    old.wait_for_log("no event left here", Duration::from_secs(30));
    assert!(old.wait(Duration::from_secs(10)).success());
}
