//! Connection-affine events: the thread that answers on a connection reads its next message.
//! These tests drive the cases where that is *not* the next Step of the same event, the slow
//! way Kong takes when a PDK call yields inside it: a new event on the connection a handler
//! waits on, the Step on another connection; a handler that blocks; many idle connections.

use e2e::{artifacts, get, hello_instance, proc_status, start_instance, Setup};
use kong_driver::{
    run_event, step_method_for, Conn, EventEnd, KongClient, LuaValue, PdkResponder, SimRequest,
    StepData, StepReply,
};
use std::time::{Duration, Instant};

/// Answers `reply`'s PDK calls on `conn` until the event returns or exits.
async fn finish_on(conn: &mut Conn, mut reply: StepReply, request: &mut SimRequest) -> EventEnd {
    loop {
        let StepData::Call { method, args, .. } = &reply.data else {
            return EventEnd::Ret;
        };
        if kong_driver::is_terminal(method) {
            request.respond(method, args);
            return EventEnd::Exit(kong_driver::Exit {
                method: method.clone(),
                args: args.clone(),
            });
        }
        let result = request.respond(method, args);
        let next = conn
            .step(step_method_for(method), reply.event_id, result)
            .await
            .unwrap();
        assert_eq!(next.event_id, reply.event_id);
        reply = next;
    }
}

/// Event A waits for its first Step on connection 1; Kong (whose PDK call yielded) sends a new
/// event B on connection 1 and A's Step on connection 2. Both events finish, each on the
/// connection its last message came in on, each with its own request's data.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_event_on_a_waiting_handlers_connection_and_its_step_on_another() {
    let setup = Setup::new(&[(&artifacts().hello, "librust_hello.so")]);
    let host = setup.start(&[]);
    let (kong, id) = hello_instance(&host).await;
    let mut one = kong.connection().await.unwrap();
    let mut two = kong.connection().await.unwrap();
    let mut request_a = SimRequest::new().header("host", "a.example");
    let mut request_b = SimRequest::new().header("host", "b.example");

    let a = one.handle_event(id, "access").await.unwrap();
    let b = one.handle_event(id, "access").await.unwrap();
    assert_ne!(a.event_id, b.event_id);
    let StepData::Call { method, args, .. } = &a.data else {
        panic!("A asks for a PDK call first: {a:?}");
    };
    let result = request_a.respond(method, args);
    let a = two
        .step(step_method_for(method), a.event_id, result)
        .await
        .unwrap();
    // B goes on on connection 1 while A goes on on connection 2, interleaved call by call.
    let (end_a, end_b) = tokio::join!(
        finish_on(&mut two, a, &mut request_a),
        finish_on(&mut one, b, &mut request_b)
    );
    assert!(matches!(end_a, EventEnd::Ret), "{end_a:?}");
    assert!(matches!(end_b, EventEnd::Ret), "{end_b:?}");
    for (request, host) in [(&request_a, "a.example"), (&request_b, "b.example")] {
        assert_eq!(
            request.upstream_headers().get_str("x-hello-host"),
            Some(host)
        );
        assert_eq!(
            request.response_headers().get_str("x-hello-from-rust"),
            Some(host)
        );
    }
    let report = kong.call("plugin.GetStatus", LuaValue::Nil).await.unwrap();
    assert_eq!(get(&report, "EventsInFlight").as_u64(), Some(0), "{report}");
    // Both connections are still served.
    one.call("plugin.GetStatus", LuaValue::Nil).await.unwrap();
    two.call("plugin.GetStatus", LuaValue::Nil).await.unwrap();
}

/// Every Step of every event on a connection other than the one before, 16 events at once:
/// each Step is read by a thread that is not the handler's and delivered to it.
#[tokio::test(flavor = "multi_thread")]
async fn every_step_delivered_from_another_connection() {
    const EVENTS: usize = 16;
    let setup = Setup::new(&[(&artifacts().hello, "librust_hello.so")]);
    let host = setup.start(&[]);
    let (kong, id) = hello_instance(&host).await;
    let mut conns = Vec::new();
    for _ in 0..EVENTS + 1 {
        conns.push(kong.connection().await.unwrap());
    }
    let mut requests: Vec<SimRequest> = (0..EVENTS)
        .map(|i| SimRequest::new().header("host", format!("h{i}")))
        .collect();
    let mut replies = Vec::new();
    for conn in conns.iter_mut().take(EVENTS) {
        replies.push(Some(conn.handle_event(id, "access").await.unwrap()));
    }
    // Event i's r-th Step goes on connection (i + r + 1) % (EVENTS + 1): never the one that
    // carried its previous message, and every connection is held by some waiting handler.
    for round in 0.. {
        assert!(round < 10, "events did not finish");
        let mut left = 0;
        for (i, slot) in replies.iter_mut().enumerate() {
            let Some(reply) = slot.take() else { continue };
            let StepData::Call { method, args, .. } = &reply.data else {
                continue;
            };
            left += 1;
            let result = requests[i].respond(method, args);
            let conn = &mut conns[(i + round + 1) % (EVENTS + 1)];
            let next = conn
                .step(step_method_for(method), reply.event_id, result)
                .await
                .unwrap();
            assert_eq!(next.event_id, reply.event_id);
            *slot = Some(next);
        }
        if left == 0 {
            break;
        }
    }
    for (i, request) in requests.iter().enumerate() {
        assert_eq!(
            request.upstream_headers().get_str("x-hello-host"),
            Some(format!("h{i}").as_str())
        );
    }
    let report = kong.call("plugin.GetStatus", LuaValue::Nil).await.unwrap();
    assert_eq!(get(&report, "EventsInFlight").as_u64(), Some(0), "{report}");
}

/// Wall time of `EVENTS` concurrent rust-hello events through Kong's pool.
async fn burst(kong: &KongClient, id: i64) -> Duration {
    const EVENTS: usize = 64;
    let started = Instant::now();
    let tasks: Vec<_> = (0..EVENTS)
        .map(|i| {
            let kong = kong.clone();
            tokio::spawn(async move {
                let mut request = SimRequest::new().header("host", format!("h{i}"));
                let outcome = run_event(&kong, id, "access", &mut request).await.unwrap();
                assert!(matches!(outcome.end, EventEnd::Ret), "{:?}", outcome.end);
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// A handler that sleeps 2 s in access stalls its own connection only: 64 events of another
/// plugin meanwhile take about as long as without it.
#[tokio::test(flavor = "multi_thread")]
async fn a_blocking_handler_stalls_only_its_own_connection() {
    let setup = Setup::new(&[
        (&artifacts().hello, "librust_hello.so"),
        (&artifacts().faulty, "libfixture_faulty.so"),
    ]);
    let host = setup.start(&[]);
    let (hello, hello_id) = start_instance(&host, "rust-hello", r#"{"message":"hi"}"#).await;
    let (faulty, faulty_id) = start_instance(&host, "rust-faulty", r#"{"hang_ms":2000}"#).await;
    burst(&hello, hello_id).await; // warm: threads and pooled connections exist
    let mut unblocked = Vec::new();
    for _ in 0..5 {
        unblocked.push(burst(&hello, hello_id).await);
    }
    let unblocked = median(unblocked);

    let blocked_since = Instant::now();
    let blocking = tokio::spawn(async move {
        let mut request = SimRequest::new().header("x-fault", "hang");
        run_event(&faulty, faulty_id, "access", &mut request)
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut blocked = Vec::new();
    while blocked_since.elapsed() < Duration::from_millis(1500) && blocked.len() < 5 {
        blocked.push(burst(&hello, hello_id).await);
    }
    let still_blocked = blocked_since.elapsed() < Duration::from_secs(2);
    let outcome = blocking.await.unwrap();
    assert!(matches!(outcome.end, EventEnd::Ret), "{:?}", outcome.end);
    assert!(
        blocked_since.elapsed() >= Duration::from_secs(2),
        "the handler did block"
    );
    assert!(still_blocked, "the bursts ran while the handler slept");
    let blocked = median(blocked);
    println!("64 events: {unblocked:?} unblocked, {blocked:?} beside a 2 s handler");
    // Generous: twice the unblocked time, plus a margin for a noisy machine.
    assert!(
        blocked <= unblocked * 2 + Duration::from_millis(50),
        "64 events took {blocked:?} beside a blocked handler, {unblocked:?} without"
    );
}

/// Answers one rust-hello access event on `conn` from start to end.
async fn one_event(conn: &mut Conn, id: i64, host: String) -> SimRequest {
    let mut request = SimRequest::new().header("host", host);
    let reply = conn.handle_event(id, "access").await.unwrap();
    let end = finish_on(conn, reply, &mut request).await;
    assert!(matches!(end, EventEnd::Ret), "{end:?}");
    request
}

/// Kong's worst case for pooled connections (16 workers × `lua_socket_pool_size` 256), each
/// used for events and then idle: the host stays within 64 MB, its idle connections off its
/// threads. Then 1,024 events in flight at once on some of them: every one finishes.
#[tokio::test(flavor = "multi_thread")]
async fn four_thousand_idle_connections_and_a_thousand_events_in_flight() {
    const CONNECTIONS: usize = 4096;
    const EVENTS: usize = 1024;
    const RSS_LIMIT_KB: u64 = 64 * 1024;
    let setup = Setup::new(&[(&artifacts().hello, "librust_hello.so")]);
    let host = setup.start(&["--max-events-per-plugin", "1024"]);
    let (kong, id) = hello_instance(&host).await;
    // With the pooled one StartInstance used: `--max-connections` (4,096) open in all.
    let mut conns = Vec::with_capacity(CONNECTIONS);
    for _ in 1..CONNECTIONS {
        conns.push(kong.connection().await.unwrap());
    }
    for (round, chunk) in conns.chunks_mut(64).enumerate() {
        let events = chunk
            .iter_mut()
            .enumerate()
            .map(|(i, conn)| one_event(conn, id, format!("r{round}-{i}")));
        futures::future::join_all(events).await;
    }
    // Every connection idle, watched by the loops: no thread or coroutine each.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let idle_rss = proc_status(host.pid(), "VmRSS");
    let idle_peak = proc_status(host.pid(), "VmHWM");
    let idle_threads = proc_status(host.pid(), "Threads");

    let mut events = Vec::with_capacity(EVENTS);
    for (i, conn) in conns.iter_mut().take(EVENTS).enumerate() {
        let reply = conn.handle_event(id, "access").await.unwrap();
        events.push((reply, SimRequest::new().header("host", format!("h{i}"))));
    }
    let report = kong.call("plugin.GetStatus", LuaValue::Nil).await.unwrap();
    assert_eq!(get(&report, "EventsInFlight").as_u64(), Some(EVENTS as u64));
    let busy_rss = proc_status(host.pid(), "VmRSS");
    let busy_threads = proc_status(host.pid(), "Threads");
    let finishing = conns
        .iter_mut()
        .zip(events.iter_mut())
        .map(|(conn, (reply, request))| finish_on(conn, reply.clone(), request));
    for end in futures::future::join_all(finishing).await {
        assert!(matches!(end, EventEnd::Ret), "{end:?}");
    }
    for (i, (_, request)) in events.iter().enumerate() {
        assert_eq!(
            request.upstream_headers().get_str("x-hello-host"),
            Some(format!("h{i}").as_str())
        );
    }
    println!(
        "{CONNECTIONS} connections idle: RSS {idle_rss} kB (peak {idle_peak} kB), \
         {idle_threads} threads; {EVENTS} events in flight: RSS {busy_rss} kB, \
         {busy_threads} threads"
    );
    assert!(idle_peak <= RSS_LIMIT_KB, "peak RSS {idle_peak} kB");
    assert!(idle_rss <= RSS_LIMIT_KB, "idle RSS {idle_rss} kB");
    // Every connection still answers.
    for conn in conns.iter_mut().step_by(64) {
        conn.call("plugin.GetStatus", LuaValue::Nil).await.unwrap();
    }
}
