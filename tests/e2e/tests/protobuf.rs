//! ProtoBuf:1 (Kong 3.8+'s `pb_rpc.lua`) end to end: the rust-hello and rust-phases contract
//! the MsgPack:1 tests hold the host to, over the same sockets; both protocols at once; bad
//! ProtoBuf input; fail-closed exits. Real host process, real `.so` files, real sockets.

use e2e::{artifacts, get, Setup};
use kong_driver::{
    pb_encode, pb_frame, pb_message, run_event, Error, EventEnd, KongClient, LuaValue,
    ProtoBufClient, RawConn, SimRequest,
};
use std::time::Duration;

fn hello() -> Setup {
    Setup::new(&[(&artifacts().hello, "librust_hello.so")])
}

const CONFIG: &str = r#"{"message":"hi","__key__":"plugins:rust-hello:::::ws","__plugin_id":"4a2a7b3c-9d5e-4f61-8a7b-1c2d3e4f5a6b","__ws_id":"0dc6f45b-8f8d-40d2-a504-473544ee190b","__seq__":7}"#;

/// The methods and string arguments of an event's PDK calls.
fn calls(outcome: &kong_driver::EventOutcome) -> Vec<(String, Vec<String>)> {
    outcome
        .calls
        .iter()
        .map(|c| {
            let args = c.args.iter().map(arg_text);
            (c.method.clone(), args.collect())
        })
        .collect()
}

/// A call argument as text; a table's entries by name, since a ProtoBuf `Struct` keeps no order.
fn arg_text(arg: &rmpv::Value) -> String {
    match arg {
        rmpv::Value::Map(entries) => {
            let mut entries = entries.clone();
            entries.sort_by_key(|(name, _)| name.to_string());
            rmpv::Value::Map(entries).to_string()
        }
        other => other
            .as_str()
            .map_or_else(|| other.to_string(), str::to_string),
    }
}

#[tokio::test]
async fn hello_access_over_protobuf_makes_the_same_calls_and_lets_the_request_through() {
    let setup = hello();
    let host = setup.start(&[]);
    let kong = ProtoBufClient::new(host.socket("rust-hello"));
    let id = kong.start_instance("rust-hello", CONFIG).await.unwrap().id;

    let mut request = SimRequest::new().header("Host", "example.com");
    let outcome = kong.run_event(id, "access", &mut request).await.unwrap();

    assert_eq!(outcome.end, EventEnd::Ret);
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        calls(&outcome),
        [
            ("kong.request.get_header".into(), strings(&["host"])),
            // Both upstream writes in one round trip (issue 18), translated to Kong's
            // Service_Request_SetHeaders.
            (
                "kong.service.request.set_headers".into(),
                strings(&[
                    r#"{"x-hello": ["Hello hi from rust"], "x-hello-host": ["example.com"]}"#
                ])
            ),
            (
                "kong.response.set_header".into(),
                strings(&["x-hello-from-rust", "example.com"])
            ),
            ("kong.request.get_header".into(), strings(&["x-deny"])),
        ]
    );
    assert_eq!(
        request.upstream_headers().get_str("x-hello"),
        Some("Hello hi from rust")
    );
    assert_eq!(
        request.response_headers().get_str("x-hello-from-rust"),
        Some("example.com")
    );
    assert!(request.exit().is_none());
    // One pooled connection carried the start and the whole event, and went back to the pool.
    assert_eq!(kong.connections_opened(), 1);
    assert_eq!(kong.idle_connections(), 1);
}

#[tokio::test]
async fn x_deny_over_protobuf_ends_the_request_with_403_and_the_event_with_it() {
    let setup = hello();
    let host = setup.start(&[]);
    let kong = ProtoBufClient::new(host.socket("rust-hello"));
    let id = kong.start_instance("rust-hello", CONFIG).await.unwrap().id;

    // Not empty: proto3 sends "" as nothing, so over ProtoBuf:1 an empty header reads as a
    // missing one (protocol.md §13).
    let mut request = SimRequest::new()
        .header("host", "example.com")
        .header("x-deny", "yes");
    let outcome = kong.run_event(id, "access", &mut request).await.unwrap();

    let exit = outcome
        .exit()
        .expect("the event ends with kong.response.exit");
    assert_eq!(exit.status(), Some(403));
    assert_eq!(exit.body_bytes(), Some(&b"denied"[..]));
    assert_eq!(
        request.response_headers().get_str("x-hello-from-rust"),
        Some("example.com")
    );
    // Kong drops the connection after an exit; the host has forgotten the event. Asked over
    // MsgPack:1, on the same socket.
    assert_eq!(
        get(&status(&host).await, "EventsInFlight").as_u64(),
        Some(0)
    );
}

#[tokio::test]
async fn the_rest_of_hellos_contract_over_protobuf_log_phase_schema_default_and_a_phase_it_lacks() {
    let setup = hello();
    let host = setup.start(&[]);
    let kong = ProtoBufClient::new(host.socket("rust-hello"));
    let id = kong.start_instance("rust-hello", CONFIG).await.unwrap().id;

    let mut request = SimRequest::new().status(201);
    let outcome = kong.run_event(id, "log", &mut request).await.unwrap();
    assert_eq!(outcome.end, EventEnd::Ret);
    assert_eq!(outcome.calls[0].method, "kong.response.get_status");
    assert_eq!(
        request.logs(),
        [(
            "notice".to_string(),
            "rust-hello log status=201".to_string()
        )]
    );

    let defaults = kong
        .start_instance("rust-hello", r#"{"__seq__":1}"#)
        .await
        .unwrap()
        .id;
    let mut request = SimRequest::new().header("host", "h");
    kong.run_event(defaults, "access", &mut request)
        .await
        .unwrap();
    assert_eq!(
        request.upstream_headers().get_str("x-hello"),
        Some("Hello world from rust")
    );

    // rewrite is not a rust-hello phase: the event ends at once, with no PDK call.
    let outcome = kong
        .run_event(id, "rewrite", &mut SimRequest::new())
        .await
        .unwrap();
    assert_eq!(outcome.end, EventEnd::Ret);
    assert!(outcome.calls.is_empty());

    // A config the plugin refuses fails Kong's call, and the host's log names the field.
    let refused = kong.start_instance("rust-hello", "{not json").await;
    assert!(refused.is_err());
    host.wait_for_log("config is not valid JSON", Duration::from_secs(5));
}

fn examples() -> Setup {
    let files: Vec<(&std::path::Path, &str)> = artifacts()
        .examples
        .iter()
        .map(|path| (path.as_path(), path.file_name().unwrap().to_str().unwrap()))
        .collect();
    Setup::new(&files)
}

#[tokio::test]
async fn rust_phases_over_protobuf_in_every_phase_as_over_msgpack() {
    let setup = examples();
    let host = setup.start(&[]);
    let kong = ProtoBufClient::new(host.socket("rust-phases"));
    let id = kong.start_instance("rust-phases", "{}").await.unwrap().id;
    let mut request = e2e::phases_request();

    for phase in ["rewrite", "access", "response", "log"] {
        let outcome = kong.run_event(id, phase, &mut request).await.unwrap();
        assert_eq!(outcome.end, EventEnd::Ret, "{phase}");
    }
    e2e::assert_phases_contract(&request);
}

/// A good ProtoBuf:1 event of rust-hello: what every bad-input test runs beside its bad bytes.
async fn good_event(kong: &ProtoBufClient, id: i64) {
    let mut request = SimRequest::new().header("host", "example.com");
    let outcome = kong.run_event(id, "access", &mut request).await.unwrap();
    assert_eq!(outcome.end, EventEnd::Ret);
    assert_eq!(
        request.upstream_headers().get_str("x-hello"),
        Some("Hello hi from rust")
    );
}

#[tokio::test]
async fn both_protocols_on_one_socket_at_once_share_one_instance_and_the_statistics() {
    let setup = hello();
    let port = e2e::free_loopback_port();
    let host = setup.start(&["--metrics-listen", &format!("127.0.0.1:{port}")]);
    let socket = host.socket("rust-hello");
    let pb = ProtoBufClient::new(&socket);
    let mp = KongClient::new(&socket);
    let pb_id = pb.start_instance("rust-hello", CONFIG).await.unwrap().id;
    let mp_id = mp.start_instance("rust-hello", CONFIG).await.unwrap().id;

    let mut events = tokio::task::JoinSet::new();
    for n in 0..40 {
        let (pb, mp) = (pb.clone(), mp.clone());
        events.spawn(async move {
            let mut request = SimRequest::new().header("host", format!("h{n}"));
            let outcome = if n % 2 == 0 {
                pb.run_event(pb_id, "access", &mut request).await.unwrap()
            } else {
                run_event(&mp, mp_id, "access", &mut request).await.unwrap()
            };
            assert_eq!(outcome.end, EventEnd::Ret);
            let host_header = request.upstream_headers().get_str("x-hello-host");
            assert_eq!(host_header, Some(format!("h{n}").as_str()));
        });
    }
    while let Some(done) = events.join_next().await {
        done.unwrap();
    }

    let status = mp.call("plugin.GetStatus", LuaValue::Nil).await.unwrap();
    let plugin = get(get(&status, "Plugins"), "rust-hello");
    // One config, started over either protocol, is one instance.
    assert_eq!(get(plugin, "Constructed").as_u64(), Some(1));
    assert_eq!(get(plugin, "LiveInstances").as_u64(), Some(1));
    let access = get(get(plugin, "Stats"), "access");
    assert_eq!(get(access, "events").as_u64(), Some(40));
    // rust-hello's access makes 4 calls (its two upstream header writes go as one).
    assert_eq!(get(access, "pdk_calls").as_u64(), Some(40 * 4));
    let metrics = tokio::task::spawn_blocking(move || e2e::http_get(port, "/metrics"))
        .await
        .unwrap();
    assert!(
        metrics
            .contains("kong_rust_host_events_total{plugin=\"rust-hello\",phase=\"access\"} 40\n"),
        "{metrics}"
    );
    // Either client can use the other's id.
    good_event(&pb, mp_id).await;
    let mut request = SimRequest::new().header("host", "x");
    let outcome = run_event(&mp, pb_id, "access", &mut request).await.unwrap();
    assert_eq!(outcome.end, EventEnd::Ret);
}

#[tokio::test]
async fn a_protobuf_frame_that_opens_like_a_msgpack_request_is_read_as_protobuf() {
    let setup = hello();
    let host = setup.start(&[]);
    let pb = ProtoBufClient::new(host.socket("rust-hello"));
    // A StartInstance of exactly 148 bytes: its length opens the stream 94 00 00 00, and
    // 0x94 opens every MsgPack:1 request too.
    let call = |sequence: i64, config: &str| {
        let start = LuaValue::map([("name", "rust-hello"), ("config", config)]);
        let call = LuaValue::Map(vec![
            (LuaValue::str("sequence"), LuaValue::int(sequence)),
            (LuaValue::str("cmd_start_instance"), start),
        ]);
        pb_encode(&pb_message("kong_plugin_protocol.RpcCall"), &call).unwrap()
    };
    // Varint lengths jump over some totals: a longer sequence shifts the total by one.
    let (sequence, payload) = [2, 300]
        .into_iter()
        .flat_map(|sequence| (0..148).map(move |pad| (sequence, pad)))
        .map(|(sequence, pad)| {
            let config = format!(r#"{{"message":"{}"}}"#, "x".repeat(pad));
            (sequence, call(sequence, &config))
        })
        .find(|(_, payload)| payload.len() == 148)
        .expect("a config that makes the call 148 bytes");
    let mut conn = RawConn::connect(host.socket("rust-hello")).await.unwrap();
    let framed = pb_frame(&payload);
    assert_eq!(framed[..4], [0x94, 0x00, 0x00, 0x00]);
    conn.send(&framed).await.unwrap();
    let reply = conn.read_exact(4).await.unwrap();
    let len = u32::from_le_bytes(reply[..4].try_into().unwrap()) as usize;
    let reply = conn.read_exact(len).await.unwrap();
    let reply = kong_driver::pb_decode(&pb_message("kong_plugin_protocol.RpcReturn"), &reply);
    let reply = reply.unwrap();
    assert_eq!(
        kong_driver::lua_field(&reply, "sequence"),
        LuaValue::int(sequence)
    );
    let status = kong_driver::lua_field(&reply, "instance_status");
    assert!(matches!(
        kong_driver::lua_field(&status, "instance_id"),
        LuaValue::Num(_)
    ));
    // And the instance it started serves an event.
    let id = pb.start_instance("rust-hello", CONFIG).await.unwrap().id;
    good_event(&pb, id).await;
}

/// Sends `bytes` on a fresh connection while a good event runs, and checks that only that
/// connection closed, with `logged` in the host's log.
async fn refused_alone(host: &e2e::Host, bytes: &[u8], close_write: bool, logged: &str) {
    let pb = ProtoBufClient::new(host.socket("rust-hello"));
    let id = pb.start_instance("rust-hello", CONFIG).await.unwrap().id;
    let mut bad = RawConn::connect(host.socket("rust-hello")).await.unwrap();
    tokio::join!(good_event(&pb, id), async {
        bad.send(bytes).await.unwrap();
        if close_write {
            bad.shutdown_write().await.unwrap();
        }
    });
    assert!(bad.is_closed(Duration::from_secs(5)).await, "{logged}");
    host.wait_for_log(logged, Duration::from_secs(5));
    good_event(&pb, id).await;
}

#[tokio::test]
async fn bad_protobuf_input_closes_only_its_connection_with_a_clear_log_line() {
    let setup = hello();
    let host = setup.start(&["--max-frame-bytes", "65536"]);
    // A length beyond the limit: refused from its 4 bytes, nothing waited for.
    let huge = (1u32 << 30).to_le_bytes();
    let limit = "ProtoBuf:1 message exceeds the 65536-byte frame limit";
    refused_alone(&host, &huge, false, limit).await;
    // A truncated frame: 20 bytes announced, 5 sent, then Kong's side closes.
    let mut truncated = 20u32.to_le_bytes().to_vec();
    truncated.extend([0x08, 0x02, 0xa2, 0x02, 0x0a]);
    let closed = "connection closed in the middle of a message (9 bytes)";
    refused_alone(&host, &truncated, true, closed).await;
    // An RpcCall whose oneof is a field Kong's .proto does not have (40).
    let unknown = pb_frame(&[0x08, 0x02, 0xc2, 0x02, 0x00]);
    let oneof = "RpcCall without a call this host knows (an empty or unknown oneof)";
    refused_alone(&host, &unknown, false, oneof).await;
    // Bytes that are no protobuf message at all.
    let garbage = pb_frame(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    refused_alone(&host, &garbage, false, "undecodable ProtoBuf:1 RpcCall").await;
}

fn faulty() -> Setup {
    Setup::new(&[(&artifacts().faulty, "libfixture_faulty.so")])
}

#[tokio::test]
async fn a_method_kongs_protobuf_does_not_serve_fails_the_call_by_name_and_the_event_goes_on() {
    let setup = faulty();
    let host = setup.start(&[]);
    let kong = ProtoBufClient::new(host.socket("rust-faulty"));
    let id = kong.start_instance("rust-faulty", "{}").await.unwrap().id;
    let mut request = SimRequest::new().header("x-fault", "unserved");
    let outcome = kong.run_event(id, "access", &mut request).await.unwrap();
    assert_eq!(outcome.end, EventEnd::Ret);
    // No round trip for it: Kong saw the header read and the log line only.
    let methods: Vec<&str> = outcome.calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["kong.request.get_header", "kong.log.err"]);
    let (level, line) = &request.logs()[0];
    assert_eq!(level, "err");
    assert!(line.contains("kong.node.get_hostname"), "{line}");
    assert!(line.contains("ProtoBuf:1"), "{line}");
    assert!(line.contains("serve this plugin with MsgPack:1"), "{line}");
}

#[tokio::test]
async fn a_panicking_handler_over_protobuf_ends_its_request_with_500_unless_it_fails_open() {
    let setup = faulty();
    let host = setup.start(&[]);
    let kong = ProtoBufClient::new(host.socket("rust-faulty"));
    let id = kong.start_instance("rust-faulty", "{}").await.unwrap().id;
    for fault in ["panic", "panic-late", "error"] {
        let mut request = SimRequest::new().header("x-fault", fault);
        let outcome = kong.run_event(id, "access", &mut request).await.unwrap();
        let exit = outcome
            .exit()
            .unwrap_or_else(|| panic!("{fault}: {outcome:?}"));
        assert_eq!(exit.status(), Some(500), "{fault}");
    }
    host.wait_for_log("handler panicked at", Duration::from_secs(5));
    drop(host);

    let host = setup.start(&["--fail-open", "rust-faulty"]);
    let kong = ProtoBufClient::new(host.socket("rust-faulty"));
    let id = kong.start_instance("rust-faulty", "{}").await.unwrap().id;
    let mut request = SimRequest::new().header("x-fault", "panic");
    let outcome = kong.run_event(id, "access", &mut request).await.unwrap();
    assert_eq!(outcome.end, EventEnd::Ret);
}

#[tokio::test]
async fn errors_over_protobuf_make_kong_replay_a_lost_instance_and_fail_anything_else() {
    let setup = hello();
    let host = setup.start(&[]);
    let kong = ProtoBufClient::new(host.socket("rust-hello"));
    let mut request = SimRequest::new();
    // An unknown instance: the connection closes, which Kong reads as "restart it and replay".
    let lost = kong
        .run_event(12345, "access", &mut request)
        .await
        .unwrap_err();
    assert!(matches!(lost, Error::Closed), "{lost}");
    assert!(lost.kong_replays());
    host.wait_for_log("no plugin instance 12345", Duration::from_secs(5));
    // A config the plugin refuses: a failed call (Kong's assert on the sequence), not a replay,
    // which would start the same refused instance forever.
    let refused = kong
        .start_instance("rust-hello", r#"{"message":5}"#)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("assertion failed"),
        "{refused}"
    );
    assert!(!refused.kong_replays());
    host.wait_for_log("field `message`", Duration::from_secs(5));
    // The host serves on.
    let id = kong.start_instance("rust-hello", CONFIG).await.unwrap().id;
    good_event(&kong, id).await;
    assert_eq!(kong.instance_status(id).await.unwrap().id, id);
}

/// The query commands `kong-conf` prints for `extra`, by plugin.
fn query_cmds(dir: &std::path::Path, extra: &[&str]) -> Vec<(String, Vec<String>)> {
    let args = [
        &["kong-conf", "--plugins-dir", dir.to_str().unwrap()][..],
        extra,
    ]
    .concat();
    let (status, stdout, stderr) = e2e::run_host(&args);
    assert!(status.success(), "{stderr}");
    stdout
        .lines()
        .filter_map(|line| line.split_once("_query_cmd = "))
        .map(|(key, cmd)| {
            let words = cmd.split(' ').map(str::to_string).collect();
            (key.trim_start_matches("pluginserver_").to_string(), words)
        })
        .collect()
}

/// What Kong reads from running `command` (its first word is this host's binary).
fn protocol_kong_reads(command: &[String]) -> String {
    let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
    let (status, stdout, stderr) = e2e::run_host(&args);
    assert!(status.success(), "{stderr}");
    let dump: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    dump["Protocol"].as_str().unwrap().to_string()
}

#[test]
fn kong_conf_tells_kong_3_8_and_later_protobuf_and_older_msgpack_overridable_per_plugin_both_ways()
{
    let setup = Setup::new(&[
        (&artifacts().hello, "librust_hello.so"),
        (&artifacts().faulty, "libfixture_faulty.so"),
    ]);
    let dir = setup.plugins.path();
    for (extra, hello, faulty) in [
        (&[][..], "ProtoBuf:1", "ProtoBuf:1"),
        (&["--kong-version", "3.8"][..], "ProtoBuf:1", "ProtoBuf:1"),
        (&["--kong-version", "3.9"][..], "ProtoBuf:1", "ProtoBuf:1"),
        (&["--kong-version", "3.4"][..], "MsgPack:1", "MsgPack:1"),
        (&["--kong-version", "3.7"][..], "MsgPack:1", "MsgPack:1"),
        (
            &["--protocol", "rust-hello=msgpack"][..],
            "MsgPack:1",
            "ProtoBuf:1",
        ),
        (
            &["--kong-version", "3.8", "--protocol", "rust-faulty=msgpack"][..],
            "ProtoBuf:1",
            "MsgPack:1",
        ),
        // Kong 3.4-3.7 have a ProtoBuf:1 client too (failing open like MsgPack:1's).
        (
            &["--kong-version", "3.4", "--protocol", "rust-hello=protobuf"][..],
            "ProtoBuf:1",
            "MsgPack:1",
        ),
    ] {
        let cmds = query_cmds(dir, extra);
        let read: Vec<(&str, String)> = cmds
            .iter()
            .map(|(key, cmd)| (key.as_str(), protocol_kong_reads(cmd)))
            .collect();
        assert_eq!(
            read,
            [
                ("rust_faulty", faulty.to_string()),
                ("rust_hello", hello.to_string())
            ],
            "{extra:?}"
        );
    }
    let (status, _, stderr) = e2e::run_host(&[
        "kong-conf",
        "--plugins-dir",
        dir.to_str().unwrap(),
        "--protocol",
        "rust-nope=protobuf",
    ]);
    assert!(!status.success());
    assert!(stderr.contains("rust-nope is not a plugin"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_upgrade_under_protobuf_load_fails_no_event_and_moves_the_idle_connections() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let setup = hello();
    let old = setup.start(&[]);
    let kong = ProtoBufClient::new(old.socket("rust-hello"));
    let id = kong.start_instance("rust-hello", CONFIG).await.unwrap().id;
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (kong, stop) = (kong.clone(), Arc::clone(&stop));
        workers.spawn(async move {
            let (mut served, mut failures) = (0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let mut request = SimRequest::new().header("host", "example.com");
                match kong.run_event(id, "access", &mut request).await {
                    Ok(outcome)
                        if outcome.end == EventEnd::Ret
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
    let new = e2e::Host::start(setup.plugins.path(), setup.sockets.path(), &["--upgrade"]);
    let handed = old.wait_for_log("no event left here", Duration::from_secs(30));
    let moved: usize = handed
        .split("handed over ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{handed}"));
    assert!(moved >= 1, "{handed}");
    assert!(old.wait(Duration::from_secs(10)).success());
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
        "{} failed: {:?}",
        failures.len(),
        &failures[..1]
    );
    assert!(served > 0);
    // The connections Kong pooled carry on with the new host: no new one was needed for them.
    let opened = kong.connections_opened();
    good_event(&kong, id).await;
    assert_eq!(kong.connections_opened(), opened);
    assert_eq!(
        get(&status(&new).await, "Pid").as_u64(),
        Some(new.pid() as u64)
    );
}

/// An access event of rust-faulty over ProtoBuf:1 whose handler sleeps `hang_ms` (its
/// instance's config) in plugin code: it holds a place under --max-events-per-plugin.
fn hold_place(
    kong: &ProtoBufClient,
    id: i64,
) -> tokio::task::JoinHandle<kong_driver::Result<EventEnd>> {
    let kong = kong.clone();
    tokio::spawn(async move {
        let mut request = SimRequest::new().header("x-fault", "hang");
        kong.run_event(id, "access", &mut request)
            .await
            .map(|o| o.end)
    })
}

#[tokio::test]
async fn a_plugin_at_its_event_limit_over_protobuf_answers_503_and_recovers() {
    let setup = faulty();
    let host = setup.start(&["--max-events-per-plugin", "2"]);
    let kong = ProtoBufClient::new(host.socket("rust-faulty"));
    let id = kong.start_instance("rust-faulty", "{}").await.unwrap().id;
    let hanging = kong
        .start_instance("rust-faulty", r#"{"hang_ms":1500}"#)
        .await
        .unwrap()
        .id;
    let held = [hold_place(&kong, hanging), hold_place(&kong, hanging)];
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut request = SimRequest::new();
    let refused = kong.run_event(id, "access", &mut request).await.unwrap();
    assert_eq!(refused.exit().expect("an exit").status(), Some(503));
    let methods: Vec<&str> = refused.calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["kong.response.exit"]);
    host.wait_for_log(
        "2 events in flight (--max-events-per-plugin)",
        Duration::from_secs(5),
    );
    for event in held {
        assert_eq!(event.await.unwrap().unwrap(), EventEnd::Ret);
    }
    let mut request = SimRequest::new();
    let outcome = kong.run_event(id, "access", &mut request).await.unwrap();
    assert_eq!(outcome.end, EventEnd::Ret);
}

#[tokio::test]
async fn a_handler_stuck_past_the_event_timeout_over_protobuf_fails_its_request_not_a_replay() {
    let setup = faulty();
    let host = setup.start(&["--event-timeout", "1"]);
    let kong = ProtoBufClient::new(host.socket("rust-faulty"));
    let hanging = kong
        .start_instance("rust-faulty", r#"{"hang_ms":3000}"#)
        .await
        .unwrap()
        .id;
    let stuck = hold_place(&kong, hanging).await.unwrap().unwrap_err();
    assert!(stuck.to_string().contains("assertion failed"), "{stuck}");
    assert!(!stuck.kong_replays());
    host.wait_for_log("handler did not answer within 1s", Duration::from_secs(5));
}

#[tokio::test]
async fn an_event_kong_stops_answering_over_protobuf_is_reclaimed_and_its_connection_closed() {
    let setup = hello();
    let host = setup.start(&["--kong-step-timeout", "1"]);
    let kong = ProtoBufClient::new(host.socket("rust-hello"));
    let id = kong.start_instance("rust-hello", CONFIG).await.unwrap().id;
    // Kong's side of an event that raised inside Kong: it reads the first PDK call, then
    // never answers it.
    let handle = LuaValue::Map(vec![
        (LuaValue::str("sequence"), LuaValue::int(2)),
        (
            LuaValue::str("cmd_handle_event"),
            LuaValue::map([
                ("instance_id", LuaValue::int(id)),
                ("event_name", LuaValue::str("access")),
            ]),
        ),
    ]);
    let call = pb_encode(&pb_message("kong_plugin_protocol.RpcCall"), &handle).unwrap();
    let mut silent = RawConn::connect(host.socket("rust-hello")).await.unwrap();
    silent.send(&pb_frame(&call)).await.unwrap();
    let name_len = u32::from_le_bytes(silent.read_exact(4).await.unwrap().try_into().unwrap());
    let name = silent.read_exact(name_len as usize).await.unwrap();
    assert_eq!(name, b"kong.request.get_header");
    let args_len = u32::from_le_bytes(silent.read_exact(4).await.unwrap().try_into().unwrap());
    silent.read_exact(args_len as usize).await.unwrap();
    assert!(silent.is_closed(Duration::from_secs(5)).await);
    host.wait_for_log(
        "Kong never answered kong.request.get_header",
        Duration::from_secs(5),
    );
    good_event(&kong, id).await;
    assert_eq!(
        get(&status(&host).await, "EventsInFlight").as_u64(),
        Some(0)
    );
}

#[tokio::test]
async fn dedicated_mode_and_a_single_socket_answer_protobuf_too() {
    let sockets = e2e::TempDir::new("dedicated-pb");
    let server = e2e::Host::start_dedicated(&artifacts().hello_server, sockets.path());
    let kong = ProtoBufClient::new(server.socket("rust-hello"));
    let id = kong.start_instance("rust-hello", CONFIG).await.unwrap().id;
    good_event(&kong, id).await;
    let output = std::process::Command::new(&artifacts().hello_server)
        .args(["-dump", "--protocol", "protobuf"])
        .output()
        .unwrap();
    let dump: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(dump["Protocol"], "ProtoBuf:1");
    drop(server);

    let setup = Setup::new(&[
        (&artifacts().hello, "librust_hello.so"),
        (&artifacts().faulty, "libfixture_faulty.so"),
    ]);
    let host = setup.start(&["--single-socket", "rust"]);
    let kong = ProtoBufClient::new(host.socket("rust"));
    let id = kong.start_instance("rust-hello", CONFIG).await.unwrap().id;
    good_event(&kong, id).await;
    let faulty = kong.start_instance("rust-faulty", "{}").await.unwrap().id;
    let mut request = SimRequest::new().header("x-fault", "panic");
    let outcome = kong
        .run_event(faulty, "access", &mut request)
        .await
        .unwrap();
    assert_eq!(outcome.exit().map(|exit| exit.status()), Some(Some(500)));
}

/// The host's GetStatus, asked over MsgPack:1 on rust-hello's socket (the one both protocols share).
async fn status(host: &e2e::Host) -> rmpv::Value {
    KongClient::new(host.socket("rust-hello"))
        .call("plugin.GetStatus", LuaValue::Nil)
        .await
        .unwrap()
}
