//! rust-phases against the in-memory Kong: every phase, in order, each seeing the last.

use kong_rust_pdk_test::{LogLevel, Phase, PluginTest, TestRequest, UpstreamResponse};
use rust_phases::Phases;

#[test]
fn each_phase_leaves_its_mark_and_hands_data_to_the_next() {
    let test = PluginTest::<Phases>::new("{}").unwrap();
    let outcome = test.run(
        TestRequest::get("/orders?page=2")
            .upstream_response(UpstreamResponse::new(201).body("twelve bytes")),
    );

    assert_eq!(
        outcome.phases,
        [Phase::Rewrite, Phase::Access, Phase::Response, Phase::Log]
    );
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert_eq!(
        outcome.shared::<String>("from_rewrite").as_deref(),
        Some("r-ok")
    );
    let upstream = outcome.upstream_request.as_ref().unwrap();
    assert_eq!(upstream.header("x-rewrite"), Some("1"));
    assert_eq!(upstream.header("x-shared"), Some("r-ok"));
    assert_eq!(outcome.response.status, 201);
    assert_eq!(outcome.response.header("x-upstream-status"), Some("201"));
    assert_eq!(outcome.response.header("x-upstream-body-len"), Some("12"));
    assert_eq!(
        outcome.logs_at(LogLevel::Notice),
        ["rust-phases log: status=201 uri=/orders?page=2"]
    );
}

#[test]
fn an_empty_service_body_has_length_zero() {
    let test = PluginTest::<Phases>::new("{}").unwrap();
    let outcome = test.run(TestRequest::get("/").upstream_response(UpstreamResponse::new(204)));
    assert_eq!(outcome.response.header("x-upstream-body-len"), Some("0"));
    assert_eq!(outcome.response.header("x-upstream-status"), Some("204"));
}
