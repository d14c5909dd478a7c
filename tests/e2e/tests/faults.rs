//! A misbehaving plugin fails its own request, is logged in one line, and nothing else suffers.

use e2e::{artifacts, start_instance, Host, Setup};
use kong_driver::{run_event, EventEnd, KongClient, SimRequest};
use rmpv::Value;
use std::time::Duration;

fn faulty() -> Setup {
    Setup::new(&[
        (&artifacts().faulty, "libfixture_faulty.so"),
        (&artifacts().hello, "librust_hello.so"),
    ])
}

async fn access(kong: &KongClient, id: i64, fault: &str) -> kong_driver::EventOutcome {
    let mut request = SimRequest::new()
        .method("GET")
        .path("/")
        .header("x-fault", fault);
    run_event(kong, id, "access", &mut request).await.unwrap()
}

/// Kong's own 500: `kong.response.exit(500, {message = "An unexpected error occurred"})`.
fn assert_fails_closed(outcome: &kong_driver::EventOutcome) {
    let exit = outcome
        .exit()
        .unwrap_or_else(|| panic!("expected a 500 exit, got {:?}", outcome.end));
    assert_eq!(exit.status(), Some(500));
    assert_eq!(
        exit.body(),
        Some(&Value::Map(vec![(
            Value::from("message"),
            Value::from("An unexpected error occurred")
        )]))
    );
}

async fn assert_everything_still_works(host: &Host, kong: &KongClient, id: i64) {
    assert!(matches!(access(kong, id, "none").await.end, EventEnd::Ret));
    let (hello, hello_id) = start_instance(host, "rust-hello", "{}").await;
    let mut request = SimRequest::new().header("host", "h");
    assert!(matches!(
        run_event(&hello, hello_id, "access", &mut request)
            .await
            .unwrap()
            .end,
        EventEnd::Ret
    ));
}

#[tokio::test]
async fn a_panicking_handler_fails_its_request_with_500_and_is_logged() {
    let setup = faulty();
    let host = setup.start(&[]);
    let (kong, id) = start_instance(&host, "rust-faulty", "{}").await;

    assert_fails_closed(&access(&kong, id, "panic").await);
    let line = host.wait_for_log("access panicked on purpose", Duration::from_secs(5));
    for part in [
        "ERROR",
        "handler panicked at tests/fixtures/faulty/src/lib.rs:",
        "plugin=rust-faulty",
        "phase=access",
    ] {
        assert!(line.contains(part), "{part:?} missing from {line:?}");
    }
    assert_fails_closed(&access(&kong, id, "panic-late").await);
    host.wait_for_log("access panicked after a PDK call", Duration::from_secs(5));
    assert_everything_still_works(&host, &kong, id).await;
}

#[tokio::test]
async fn a_handler_error_fails_closed_too() {
    let setup = faulty();
    let host = setup.start(&[]);
    let (kong, id) = start_instance(&host, "rust-faulty", "{}").await;
    assert_fails_closed(&access(&kong, id, "error").await);
    let line = host.wait_for_log("access failed on purpose", Duration::from_secs(5));
    assert!(
        line.contains("handler failed: access failed on purpose"),
        "{line}"
    );
}

#[tokio::test]
async fn a_log_phase_panic_is_logged_and_the_event_returns() {
    let setup = faulty();
    let host = setup.start(&[]);
    let (kong, id) = start_instance(&host, "rust-faulty", "{}").await;
    let mut request = SimRequest::new();
    // The response was already sent: nothing to fail, the event just ends.
    assert!(matches!(
        run_event(&kong, id, "log", &mut request).await.unwrap().end,
        EventEnd::Ret
    ));
    assert!(host
        .wait_for_log("log panicked on purpose", Duration::from_secs(5))
        .contains("phase=log"));
}

#[tokio::test]
async fn a_panicking_constructor_refuses_start_instance() {
    let setup = faulty();
    let host = setup.start(&[]);
    let kong = KongClient::new(host.socket("rust-faulty"));
    let error = kong
        .start_instance("rust-faulty", r#"{"panic_in_new":true}"#)
        .await
        .unwrap_err();
    let message = error.server_message().unwrap();
    assert!(
        message.starts_with("rust-faulty: the plugin's constructor panicked"),
        "{message}"
    );
    assert!(
        message.contains("constructor panicked on purpose"),
        "{message}"
    );
    let id = kong.start_instance("rust-faulty", "{}").await.unwrap().id;
    assert_everything_still_works(&host, &kong, id).await;
}

#[tokio::test]
async fn pdk_calls_after_exit_fail_with_event_ended_and_kong_gets_no_more_steps() {
    let setup = faulty();
    let host = setup.start(&[]);
    let (kong, id) = start_instance(&host, "rust-faulty", "{}").await;
    let outcome = access(&kong, id, "after-exit").await;
    assert_eq!(outcome.exit().and_then(|e| e.status()), Some(418));
    // The only calls Kong saw: reading the fault header, then the exit.
    let methods: Vec<&str> = outcome.calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["kong.request.get_header", "kong.response.exit"]);
    let line = host.wait_for_log("rust-faulty after exit:", Duration::from_secs(5));
    assert!(line.contains("EventEnded"), "{line}");
    assert!(
        line.contains("the request was already ended by kong.response.exit"),
        "{line}"
    );
}

#[tokio::test]
async fn a_handler_stuck_past_the_deadline_gets_an_error_reply_not_a_hang() {
    let setup = faulty();
    let host = setup.start(&["--event-timeout", "1"]);
    let (kong, id) = start_instance(&host, "rust-faulty", r#"{"hang_ms":2500}"#).await;
    let mut request = SimRequest::new().header("x-fault", "hang");
    let error = run_event(&kong, id, "access", &mut request)
        .await
        .unwrap_err();
    assert_eq!(
        error.server_message(),
        Some("rust-faulty access: handler did not answer within 1s")
    );
    let fresh = kong.start_instance("rust-faulty", "{}").await.unwrap().id;
    assert_everything_still_works(&host, &kong, fresh).await;
}
