//! The rust-hello flow as Kong drives it: real host process, real `.so`, real sockets.

use e2e::{artifacts, get, start_instance, Setup};
use kong_driver::{run_event, EventEnd, KongClient, LuaValue, SimRequest};

fn setup() -> Setup {
    Setup::new(&[(&artifacts().hello, "librust_hello.so")])
}

const CONFIG: &str = r#"{"message":"hi","__key__":"plugins:rust-hello:::::ws","__plugin_id":"4a2a7b3c-9d5e-4f61-8a7b-1c2d3e4f5a6b","__ws_id":"0dc6f45b-8f8d-40d2-a504-473544ee190b","__seq__":7}"#;

#[tokio::test]
async fn access_sends_greeting_and_host_upstream_and_lets_the_request_through() {
    let setup = setup();
    let host = setup.start(&[]);
    let (kong, id) = start_instance(&host, "rust-hello", CONFIG).await;

    let mut request = SimRequest::new().header("Host", "example.com");
    let outcome = run_event(&kong, id, "access", &mut request).await.unwrap();

    assert!(matches!(outcome.end, EventEnd::Ret), "{:?}", outcome.end);
    let calls: Vec<(&str, Vec<String>)> = outcome
        .calls
        .iter()
        .map(|c| {
            (
                c.method.as_str(),
                c.args
                    .iter()
                    .map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_string))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("kong.request.get_header", vec!["host".to_string()]),
            // Both upstream writes in one round trip (issue 18).
            (
                "kong.service.request.set_headers",
                vec![
                    r#"{"x-hello": ["Hello hi from rust"], "x-hello-host": ["example.com"]}"#
                        .into()
                ]
            ),
            (
                "kong.response.set_header",
                vec!["x-hello-from-rust".into(), "example.com".into()]
            ),
            ("kong.request.get_header", vec!["x-deny".into()]),
        ]
    );
    assert_eq!(
        request.upstream_headers().get_str("x-hello"),
        Some("Hello hi from rust")
    );
    assert_eq!(
        request.upstream_headers().get_str("x-hello-host"),
        Some("example.com")
    );
    assert_eq!(
        request.response_headers().get_str("x-hello-from-rust"),
        Some("example.com")
    );
    assert!(request.exit().is_none());
    // The host announces its pid on every connection (protocol.md §7.6).
    assert_eq!(kong.server_pid(), Some(host.pid() as i64));
}

#[tokio::test]
async fn x_deny_even_empty_ends_the_request_with_403_and_no_further_step() {
    let setup = setup();
    let host = setup.start(&[]);
    let (kong, id) = start_instance(&host, "rust-hello", CONFIG).await;

    let mut request = SimRequest::new()
        .header("host", "example.com")
        .header("x-deny", "");
    let outcome = run_event(&kong, id, "access", &mut request).await.unwrap();

    let exit = outcome
        .exit()
        .expect("the event ends with kong.response.exit");
    assert_eq!(exit.method, "kong.response.exit");
    assert_eq!(exit.status(), Some(403));
    assert_eq!(exit.body_bytes(), Some(&b"denied"[..]));
    // Headers were set before the exit; Kong applies them to the 403 too.
    assert_eq!(
        request.response_headers().get_str("x-hello-from-rust"),
        Some("example.com")
    );
    // Kong sends nothing after exit: the host must already have forgotten the event.
    let status = kong.call("plugin.GetStatus", LuaValue::Nil).await.unwrap();
    assert_eq!(get(&status, "EventsInFlight").as_u64(), Some(0));
    let late = kong
        .step("plugin.Step", outcome.event_id, None)
        .await
        .unwrap_err();
    assert_eq!(
        late.server_message(),
        Some(format!("event id {} not found", outcome.event_id).as_str())
    );
    assert!(
        !late.is_no_plugin_instance(),
        "a stale event must not make Kong replay the phase"
    );
}

#[tokio::test]
async fn log_phase_notices_the_response_status() {
    let setup = setup();
    let host = setup.start(&[]);
    let (kong, id) = start_instance(&host, "rust-hello", CONFIG).await;

    let mut request = SimRequest::new().status(201);
    let outcome = run_event(&kong, id, "log", &mut request).await.unwrap();
    assert!(matches!(outcome.end, EventEnd::Ret));
    assert_eq!(outcome.calls[0].method, "kong.response.get_status");
    assert_eq!(
        request.logs(),
        [(
            "notice".to_string(),
            "rust-hello log status=201".to_string()
        )]
    );
}

#[tokio::test]
async fn schema_default_applies_when_kong_sends_no_message() {
    let setup = setup();
    let host = setup.start(&[]);
    let (kong, id) = start_instance(&host, "rust-hello", r#"{"__seq__":1}"#).await;
    let mut request = SimRequest::new().header("host", "h");
    run_event(&kong, id, "access", &mut request).await.unwrap();
    assert_eq!(
        request.upstream_headers().get_str("x-hello"),
        Some("Hello world from rust")
    );
}

#[tokio::test]
async fn a_phase_the_plugin_does_not_implement_returns_at_once() {
    let setup = setup();
    let host = setup.start(&[]);
    let (kong, id) = start_instance(&host, "rust-hello", CONFIG).await;
    let reply = kong.handle_event(id, "rewrite").await.unwrap();
    assert!(matches!(reply.data, kong_driver::StepData::Ret));
}

#[tokio::test]
async fn start_instance_errors_name_the_problem() {
    let setup = Setup::new(&[
        (&artifacts().hello, "librust_hello.so"),
        (&artifacts().bench, "librust_bench.so"),
    ]);
    let host = setup.start(&[]);
    let kong = KongClient::new(host.socket("rust-hello"));
    let error = |e: kong_driver::Error| e.server_message().unwrap().to_string();

    let bad_type = error(
        kong.start_instance("rust-hello", r#"{"message":5}"#)
            .await
            .unwrap_err(),
    );
    assert!(bad_type.contains("field `message`"), "{bad_type}");
    let not_json = error(
        kong.start_instance("rust-hello", "{not json")
            .await
            .unwrap_err(),
    );
    assert!(not_json.contains("config is not valid JSON"), "{not_json}");
    // Kong 3.9 talks to each plugin on its own socket: another plugin's name is a misconfiguration.
    let other = error(kong.start_instance("rust-bench", "{}").await.unwrap_err());
    assert_eq!(
        other,
        "this socket serves plugin rust-hello, not rust-bench"
    );
    // The host still serves after all that.
    assert!(kong.start_instance("rust-hello", "{}").await.is_ok());
}
