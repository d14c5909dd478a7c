//! ProtoBuf:1 (Kong 3.8+'s `pb_rpc.lua`) end to end: the rust-hello and rust-phases contract
//! the MsgPack:1 tests hold the host to, over the same sockets; both protocols at once; bad
//! ProtoBuf input; fail-closed exits. Real host process, real `.so` files, real sockets.

use e2e::{artifacts, get, Setup};
use kong_driver::{EventEnd, KongClient, LuaValue, ProtoBufClient, SimRequest};

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
            let args = c.args.iter().map(|a| a.as_str().unwrap().to_string());
            (c.method.clone(), args.collect())
        })
        .collect()
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
            (
                "kong.service.request.set_header".into(),
                strings(&["x-hello", "Hello hi from rust"])
            ),
            (
                "kong.service.request.set_header".into(),
                strings(&["x-hello-host", "example.com"])
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
    let status = KongClient::new(host.socket("rust-hello"))
        .call("plugin.GetStatus", LuaValue::Nil)
        .await
        .unwrap();
    assert_eq!(get(&status, "EventsInFlight").as_u64(), Some(0));
}
