//! Many events in flight at once, their Steps hopping between pooled connections as Kong's do.

use e2e::{artifacts, get, start_instance, Setup};
use kong_driver::{
    run_event, step_method_for, EventEnd, LuaValue, PdkResponder, SimRequest, StepData,
};

const EVENTS: usize = 64;

#[tokio::test(flavor = "multi_thread")]
async fn sixty_four_events_in_flight_with_steps_on_rotating_connections() {
    let setup = Setup::new(&[(&artifacts().hello, "librust_hello.so")]);
    let host = setup.start(&[]);
    let (kong, id) = start_instance(&host, "rust-hello", r#"{"message":"hi"}"#).await;
    let mut conns = Vec::new();
    for _ in 0..8 {
        conns.push(kong.connection().await.unwrap());
    }

    // Open all 64 events before answering any of them.
    let mut requests: Vec<SimRequest> = (0..EVENTS)
        .map(|i| SimRequest::new().header("host", format!("host-{i}")))
        .collect();
    let mut pending = Vec::new();
    for i in 0..EVENTS {
        let reply = conns[i % 8].handle_event(id, "access").await.unwrap();
        pending.push((reply.event_id, reply.data));
    }
    let report = kong.call("plugin.GetStatus", LuaValue::Nil).await.unwrap();
    assert_eq!(
        get(&report, "EventsInFlight").as_u64(),
        Some(EVENTS as u64),
        "{report}"
    );

    // Round r answers event i on connection (i + r + 1) % 8: no two consecutive calls of an
    // event share a connection, and every connection carries many events.
    let mut done = [false; EVENTS];
    for round in 0.. {
        if done.iter().all(|&d| d) {
            break;
        }
        assert!(round < 20, "events did not finish");
        for i in 0..EVENTS {
            if done[i] {
                continue;
            }
            let (event_id, data) = &pending[i];
            let StepData::Call { method, args, .. } = data else {
                done[i] = true;
                continue;
            };
            let result = requests[i].respond(method, args);
            let next = conns[(i + round + 1) % 8]
                .step(step_method_for(method), *event_id, result)
                .await
                .unwrap();
            assert_eq!(next.event_id, *event_id);
            pending[i] = (next.event_id, next.data);
        }
    }
    for (i, request) in requests.iter().enumerate() {
        assert_eq!(
            request.upstream_headers().get_str("x-hello-host"),
            Some(format!("host-{i}").as_str())
        );
        assert_eq!(
            request.response_headers().get_str("x-hello-from-rust"),
            Some(format!("host-{i}").as_str())
        );
    }
    let report = kong.call("plugin.GetStatus", LuaValue::Nil).await.unwrap();
    assert_eq!(get(&report, "EventsInFlight").as_u64(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_events_through_kongs_pool_each_see_their_own_request() {
    let setup = Setup::new(&[(&artifacts().hello, "librust_hello.so")]);
    let host = setup.start(&[]);
    let (kong, id) = start_instance(&host, "rust-hello", r#"{"message":"hi"}"#).await;
    let tasks: Vec<_> = (0..EVENTS)
        .map(|i| {
            let kong = kong.clone();
            tokio::spawn(async move {
                let mut request = SimRequest::new().header("host", format!("h{i}"));
                if i % 4 == 0 {
                    request = request.header("x-deny", "1");
                }
                let outcome = run_event(&kong, id, "access", &mut request).await.unwrap();
                (i, outcome, request)
            })
        })
        .collect();
    for task in tasks {
        let (i, outcome, request) = task.await.unwrap();
        assert_eq!(
            request.upstream_headers().get_str("x-hello-host"),
            Some(format!("h{i}").as_str())
        );
        if i % 4 == 0 {
            assert_eq!(outcome.exit().and_then(|e| e.status()), Some(403));
        } else {
            assert!(matches!(outcome.end, EventEnd::Ret));
        }
    }
    assert!(
        kong.connections_opened() > 1,
        "concurrent calls used several pooled connections"
    );
}
