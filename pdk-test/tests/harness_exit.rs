//! The harness: `kong.response.exit`/`error` end the request, later phases are skipped except
//! log, and failing handlers get the host's 500.

use kong_rust_pdk::prelude::*;
use kong_rust_pdk_test::{
    FailureKind, LogLevel, Phase, PluginTest, Source, TestRequest, REQUEST_ID,
};

#[derive(Deserialize, Schema)]
struct Config {}

struct Gate;

/// What the test asks the gate to do, from the `x-action` request header.
fn action(kong: &Kong) -> Result<String> {
    Ok(kong.request.get_header("x-action")?.unwrap_or_default())
}

#[plugin(name = "harness-exit", priority = 10)]
impl Plugin for Gate {
    type Config = Config;

    fn new(_: Config) -> Result<Self> {
        Ok(Gate)
    }

    fn rewrite(&self, kong: &Kong) -> Result<()> {
        if action(kong)? == "exit-in-rewrite" {
            return kong.response.exit(418, "teapot", None).into();
        }
        Ok(())
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        kong.response.set_header("x-set-before", "yes")?;
        match action(kong)?.as_str() {
            "exit" => {
                let headers = Headers::from([("x-reason", "denied")]);
                // `into_result`: carry on after the exit, to show the next call fails.
                kong.response.exit(403, "", Some(&headers)).into_result()?;
                // Not reached with `?` below: the call fails, as with the real host.
                kong.log.err("after exit")?;
            }
            "exit-json" => {
                let body = serde_json::json!({"message": "slow down"});
                kong.response.exit_json(429, &body, None).into_result()?;
            }
            "error" => {
                kong.response.error(404, None, None).into_result()?;
                // Not reached with `?` below: error ends the event as exit does.
                kong.log.err("after error")?;
            }
            "fail" => return Err(Error::msg("database unreachable")),
            "fail-in-context" => {
                let keys: std::result::Result<(), std::io::Error> =
                    Err(std::io::Error::other("permission denied"));
                keys.context("loading keys")?;
            }
            "panic" => panic!("handler bug"),
            _ => {}
        }
        Ok(())
    }

    fn response(&self, kong: &Kong) -> Result<()> {
        kong.response.set_header("x-response-phase", "ran")
    }

    fn log(&self, kong: &Kong) -> Result<()> {
        let status = kong.response.get_status()?;
        let source = kong.response.get_source()?;
        kong.log
            .notice(format!("status={status} source={}", source.as_str()))
    }
}

fn run(request: TestRequest) -> kong_rust_pdk_test::Outcome {
    PluginTest::<Gate>::new("{}").unwrap().run(request)
}

#[test]
fn exit_skips_the_service_and_the_response_phase_but_not_log() {
    let outcome = run(TestRequest::get("/").header("x-action", "exit"));
    assert_eq!(outcome.phases, [Phase::Rewrite, Phase::Access, Phase::Log]);
    assert!(outcome.upstream_request.is_none());
    let response = &outcome.response;
    assert_eq!(response.status, 403);
    assert_eq!(response.source, Source::Exit);
    assert_eq!(response.header("x-reason"), Some("denied"));
    assert_eq!(response.header("x-set-before"), Some("yes"));
    assert_eq!(response.header("content-length"), Some("0"));
    assert_eq!(response.header("x-response-phase"), None);
    let exit = outcome.exit.as_ref().unwrap();
    assert_eq!(
        (
            exit.phase,
            exit.method.as_str(),
            exit.status,
            exit.by_plugin
        ),
        (Phase::Access, "kong.response.exit", 403, true)
    );
    assert_eq!(
        outcome.logs_at(LogLevel::Notice),
        ["status=403 source=exit"]
    );
    assert!(outcome.logs_at(LogLevel::Err).is_empty());
}

#[test]
fn calls_after_exit_fail_with_event_ended() {
    let outcome = run(TestRequest::get("/").header("x-action", "exit"));
    let after = outcome.calls_to("kong.log.err");
    let error = after[0].result.as_ref().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::EventEnded);
    assert_eq!(
        error.message(),
        "kong.log.err: the request was already ended by kong.response.exit"
    );
    // The handler returned that error: it is recorded, the response stays the exit's.
    let failures = outcome.failures_in(Phase::Access);
    assert_eq!(
        failures[0].kind,
        FailureKind::Returned(ErrorKind::EventEnded)
    );
    assert_eq!(outcome.response.status, 403);
}

#[test]
fn calls_after_error_fail_with_event_ended() {
    let outcome = run(TestRequest::get("/").header("x-action", "error"));
    let error = outcome.calls_to("kong.log.err")[0]
        .result
        .as_ref()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::EventEnded);
    assert_eq!(
        error.message(),
        "kong.log.err: the request was already ended by kong.response.error"
    );
    assert_eq!(outcome.response.status, 404);
    assert_eq!(outcome.phases, [Phase::Rewrite, Phase::Access, Phase::Log]);
    assert!(outcome.logs_at(LogLevel::Err).is_empty());
}

#[test]
fn exit_in_rewrite_skips_access() {
    let outcome = run(TestRequest::get("/").header("x-action", "exit-in-rewrite"));
    assert_eq!(outcome.phases, [Phase::Rewrite, Phase::Log]);
    assert_eq!(outcome.response.status, 418);
    assert_eq!(outcome.response.text(), "teapot");
    assert_eq!(outcome.response.header("x-set-before"), None);
}

#[test]
fn a_table_body_is_sent_as_json() {
    let outcome = run(TestRequest::get("/").header("x-action", "exit-json"));
    let response = &outcome.response;
    assert_eq!(response.status, 429);
    assert_eq!(
        response.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        response.json().unwrap(),
        serde_json::json!({"message": "slow down"})
    );
}

#[test]
fn error_uses_kongs_templates_and_the_accept_header() {
    let json = run(TestRequest::get("/").header("x-action", "error"));
    assert_eq!(json.response.status, 404);
    assert_eq!(json.response.source, Source::Exit);
    assert_eq!(
        json.response.json().unwrap(),
        serde_json::json!({"message": "Not found", "request_id": REQUEST_ID})
    );
    let plain = run(TestRequest::get("/")
        .header("x-action", "error")
        .header("accept", "text/plain"));
    assert_eq!(
        plain.response.text(),
        format!("Not found\nrequest_id: {REQUEST_ID}\n")
    );
    assert_eq!(
        plain.response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

#[test]
fn a_failing_handler_gets_the_hosts_500_and_log_still_runs() {
    for (action, kind, message) in [
        (
            "fail",
            FailureKind::Returned(ErrorKind::Plugin),
            "database unreachable",
        ),
        // The failure is recorded, and the host logs it, with its whole cause chain.
        (
            "fail-in-context",
            FailureKind::Returned(ErrorKind::Plugin),
            "loading keys: permission denied",
        ),
        ("panic", FailureKind::Panicked, "handler bug"),
    ] {
        let outcome = run(TestRequest::get("/").header("x-action", action));
        let failures = outcome.failures_in(Phase::Access);
        assert_eq!(
            (failures[0].kind, failures[0].message.as_str()),
            (kind, message)
        );
        assert!(outcome.upstream_request.is_none());
        assert_eq!(outcome.response.status, 500);
        assert_eq!(
            outcome.response.json().unwrap(),
            serde_json::json!({"message": "An unexpected error occurred"})
        );
        assert!(!outcome.exit.as_ref().unwrap().by_plugin);
        assert_eq!(
            outcome.logs_at(LogLevel::Notice),
            ["status=500 source=exit"]
        );
    }
}

#[test]
fn without_an_exit_the_request_is_proxied_and_the_response_phase_runs() {
    let outcome = run(TestRequest::get("/"));
    assert_eq!(
        outcome.phases,
        [Phase::Rewrite, Phase::Access, Phase::Response, Phase::Log]
    );
    assert!(outcome.upstream_request.as_ref().unwrap().buffered);
    assert_eq!(outcome.response.header("x-response-phase"), Some("ran"));
    assert_eq!(outcome.response.header("x-set-before"), Some("yes"));
    assert_eq!(
        outcome.logs_at(LogLevel::Notice),
        ["status=200 source=service"]
    );
    assert!(outcome.exit.is_none());
}
