//! The harness: a PDK function called in a phase where Kong does not allow it fails with an
//! error naming the function and the phase, and Kong's consequences follow.

use kong_rust_pdk::prelude::*;
use kong_rust_pdk_test::{FailureKind, LogLevel, Phase, PluginTest, Source, TestRequest};

#[derive(Deserialize, Schema)]
struct Config {
    /// The phase in which to call `method`.
    phase: String,
    /// The PDK function to call (without arguments).
    method: String,
}

/// Calls the configured function in the configured phase, ignores its error, then logs.
struct Prober {
    phase: String,
    method: String,
}

impl Prober {
    fn probe(&self, kong: &Kong, phase: &str) -> Result<()> {
        if phase == self.phase {
            let _ = kong.call_raw(&self.method, vec![]);
        }
        kong.log.debug(format!("{phase} done"))
    }
}

#[plugin(name = "harness-phases", priority = 10)]
impl Plugin for Prober {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        Ok(Prober {
            phase: config.phase,
            method: config.method,
        })
    }

    fn certificate(&self, kong: &Kong) -> Result<()> {
        self.probe(kong, "certificate")
    }

    fn rewrite(&self, kong: &Kong) -> Result<()> {
        self.probe(kong, "rewrite")
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        self.probe(kong, "access")
    }

    fn preread(&self, kong: &Kong) -> Result<()> {
        self.probe(kong, "preread")
    }

    fn log(&self, kong: &Kong) -> Result<()> {
        self.probe(kong, "log")
    }
}

fn probe(phase: &str, method: &str, request: TestRequest) -> kong_rust_pdk_test::Outcome {
    let config = serde_json::json!({ "phase": phase, "method": method }).to_string();
    PluginTest::<Prober>::new(&config).unwrap().run(request)
}

fn error_of(outcome: &kong_rust_pdk_test::Outcome, method: &str) -> Error {
    outcome.calls_to(method)[0].result.clone().unwrap_err()
}

#[test]
fn a_function_outside_its_phases_fails_naming_function_and_phase() {
    let outcome = probe("access", "kong.response.get_status", TestRequest::get("/"));
    let error = error_of(&outcome, "kong.response.get_status");
    assert_eq!(error.kind(), ErrorKind::Kong);
    assert_eq!(
        error.message(),
        "kong.response.get_status: function cannot be called in access phase (only in: response, log)"
    );
    // Kong's Lua error ends the event: the plugin's next call fails without running…
    assert_eq!(
        outcome.logs_at(LogLevel::Debug),
        ["rewrite done", "log done"]
    );
    let after = &outcome.calls_to("kong.log.debug")[1];
    assert_eq!(
        after.result.as_ref().unwrap_err().kind(),
        ErrorKind::EventEnded
    );
    let failures = outcome.failures_in(Phase::Access);
    let kinds: Vec<FailureKind> = failures.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            FailureKind::Kong,
            FailureKind::Returned(ErrorKind::EventEnded)
        ]
    );
    // …and the client gets Kong's 500 instead of the service's answer.
    assert!(outcome.upstream_request.is_none());
    assert_eq!(outcome.response.status, 500);
    assert_eq!(outcome.response.source, Source::Error);
}

#[test]
fn each_function_has_kongs_phases() {
    let cases = [
        ("rewrite", "kong.router.get_route", "access, response, log"),
        ("rewrite", "kong.client.authenticate", "access"),
        ("access", "kong.log.serialize", "log"),
        ("access", "kong.service.response.get_raw_body", "response"),
        (
            "log",
            "kong.client.get_ip",
            "certificate, rewrite, access, response",
        ),
        ("log", "kong.service.set_target", "access"),
        (
            "certificate",
            "kong.request.get_path",
            "rewrite, access, response",
        ),
    ];
    for (phase, method, allowed) in cases {
        let outcome = probe(phase, method, TestRequest::get("https://example.com/"));
        let error = error_of(&outcome, method);
        assert!(
            error.message().starts_with(&format!(
                "{method}: function cannot be called in {phase} phase (only in: {allowed})"
            )),
            "{}",
            error.message()
        );
    }
}

#[test]
fn functions_work_in_their_phases() {
    for (phase, method) in [
        ("certificate", "kong.client.tls.disable_session_reuse"),
        ("rewrite", "kong.request.get_path"),
        ("access", "kong.router.get_route"),
        ("log", "kong.response.get_source"),
        ("log", "kong.client.get_consumer"),
    ] {
        let outcome = probe(phase, method, TestRequest::get("https://example.com/"));
        let call = &outcome.calls_to(method)[0];
        assert!(
            call.result.is_ok(),
            "{method} in {phase}: {:?}",
            call.result
        );
        assert!(outcome.failures.is_empty());
    }
}

#[test]
fn functions_external_plugins_cannot_use_fail_everywhere() {
    let outcome = probe(
        "access",
        "kong.response.get_raw_body",
        TestRequest::get("/"),
    );
    let error = error_of(&outcome, "kong.response.get_raw_body");
    assert_eq!(
        error.message(),
        "kong.response.get_raw_body: only available in the body_filter phase, which external plugins cannot implement"
    );
}

#[test]
fn an_unknown_function_fails_without_ending_the_event() {
    let outcome = probe(
        "access",
        "kong.request.get_everything",
        TestRequest::get("/"),
    );
    let error = error_of(&outcome, "kong.request.get_everything");
    assert_eq!(error.kind(), ErrorKind::InvalidCall);
    assert!(error.message().contains("could not find pdk method"));
    assert_eq!(
        outcome.logs_at(LogLevel::Debug),
        ["rewrite done", "access done", "log done"]
    );
    assert_eq!(outcome.response.status, 200);
}

#[test]
fn a_stream_runs_certificate_preread_and_log_without_http_functions() {
    let outcome = probe(
        "preread",
        "kong.request.get_header",
        TestRequest::stream("tls"),
    );
    assert_eq!(
        outcome.phases,
        [Phase::Certificate, Phase::Preread, Phase::Log]
    );
    let error = error_of(&outcome, "kong.request.get_header");
    assert!(error
        .message()
        .starts_with("kong.request.get_header: function cannot be called in preread phase"));
    let subsystem = probe(
        "preread",
        "kong.nginx.get_subsystem",
        TestRequest::stream("tcp"),
    );
    let call = &subsystem.calls_to("kong.nginx.get_subsystem")[0];
    assert_eq!(call.result.as_ref().unwrap().as_str(), Some("stream"));
    assert_eq!(subsystem.phases, [Phase::Preread, Phase::Log]);
    assert_eq!(subsystem.upstream_request.unwrap().scheme, "tcp");
}
