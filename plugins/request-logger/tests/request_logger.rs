//! rust-request-logger against the in-memory Kong.

use kong_rust_pdk_test::{LogLevel, Phase, PluginTest, TestRequest, UpstreamResponse};
use rust_request_logger::RequestLogger;
use serde_json::{json, Value};

#[test]
fn one_line_of_the_default_fields_at_notice() {
    let test = PluginTest::<RequestLogger>::new("{}").unwrap();
    let outcome = test.run(
        TestRequest::post("/orders?x=1")
            .client_ip("10.0.0.9")
            .latencies(1, 2, 30)
            .upstream_response(UpstreamResponse::new(202)),
    );

    assert_eq!(outcome.phases, [Phase::Log]);
    let lines = outcome.logs_at(LogLevel::Notice);
    assert_eq!(lines.len(), 1, "{:?}", outcome.logs);
    let line: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(
        line,
        json!({
            "request.method": "POST",
            "request.uri": "/orders?x=1",
            "response.status": 202,
            "latencies.request": 30,
            "client_ip": "10.0.0.9",
        })
    );
}

#[test]
fn chosen_fields_at_the_chosen_level_and_null_for_absent_ones() {
    let config = r#"{"fields": ["response.status", "no.such.field"], "level": "warn"}"#;
    let test = PluginTest::<RequestLogger>::new(config).unwrap();
    let outcome = test.run(TestRequest::get("/"));
    let line: Value = serde_json::from_str(outcome.logs_at(LogLevel::Warn)[0]).unwrap();
    assert_eq!(line, json!({"response.status": 200, "no.such.field": null}));
}

#[test]
fn an_unknown_level_is_refused_naming_the_field() {
    let error = PluginTest::<RequestLogger>::new(r#"{"level": "loud"}"#)
        .err()
        .unwrap();
    assert!(error.to_string().contains("level"), "{error}");
}

/// RPCs per request (issue 18): one `kong.log.serialize` and one log line; it writes no header,
/// so batching leaves it at 2.
#[test]
fn a_logged_request_costs_two_round_trips() {
    let test = PluginTest::<RequestLogger>::new("{}").unwrap();
    let outcome = test.run(TestRequest::get("/"));
    let methods: Vec<&str> = outcome.calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["kong.log.serialize", "kong.log.notice"]);
}
