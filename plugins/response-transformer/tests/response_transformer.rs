//! rust-response-transformer against the in-memory Kong.

use kong_rust_pdk_test::{PluginTest, TestRequest, UpstreamResponse};
use rust_response_transformer::ResponseTransformer;
use serde_json::json;

const CONFIG: &str = r#"{
    "remove_headers": ["X-Internal"],
    "add_headers": {"x-transformed": "yes"},
    "remove_json": ["secret"],
    "add_json": {"source": "kong"}
}"#;

fn service_json() -> UpstreamResponse {
    UpstreamResponse::new(201)
        .header("x-internal", "node-7")
        .header("x-kept", "1")
        .json_body(&json!({"id": 7, "secret": "s3cr3t"}))
}

#[test]
fn json_body_and_headers_are_rewritten_and_the_status_kept() {
    let test = PluginTest::<ResponseTransformer>::new(CONFIG).unwrap();
    let outcome = test.run(TestRequest::get("/items/7").upstream_response(service_json()));

    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert_eq!(outcome.response.status, 201);
    assert_eq!(
        outcome.response.json().unwrap(),
        json!({"id": 7, "source": "kong"})
    );
    assert_eq!(outcome.response.header("x-internal"), None);
    assert_eq!(outcome.response.header("x-kept"), Some("1"));
    assert_eq!(outcome.response.header("x-transformed"), Some("yes"));
    let length = outcome.response.header("content-length").unwrap();
    assert_eq!(length, outcome.response.body.len().to_string());
}

#[test]
fn a_body_that_is_not_json_passes_unchanged() {
    let test = PluginTest::<ResponseTransformer>::new(CONFIG).unwrap();
    let outcome = test.run(
        TestRequest::get("/page").upstream_response(
            UpstreamResponse::new(200)
                .header("content-type", "text/html")
                .header("x-internal", "node-7")
                .body("<p>secret</p>"),
        ),
    );
    assert_eq!(outcome.response.text(), "<p>secret</p>");
    assert_eq!(outcome.response.header("x-internal"), None);
    assert_eq!(outcome.response.header("x-transformed"), Some("yes"));
}

#[test]
fn header_only_config_edits_headers_in_place() {
    let test = PluginTest::<ResponseTransformer>::new(r#"{"add_headers": {"x-a": "1"}}"#).unwrap();
    let outcome = test.run(TestRequest::get("/").upstream_response(service_json()));
    assert_eq!(outcome.exit, None);
    assert_eq!(outcome.response.header("x-a"), Some("1"));
    assert_eq!(
        outcome.response.json().unwrap(),
        json!({"id": 7, "secret": "s3cr3t"})
    );
}

/// RPCs per request (issue 18): a JSON response with a header removed, two added and the body
/// rewritten. The two added headers go as one `set_headers` (7 calls before batching); the
/// removal is a `clear_header`, which Kong must see before them.
#[test]
fn a_rewritten_json_response_costs_six_round_trips() {
    let config = r#"{
        "remove_headers": ["X-Internal"],
        "add_headers": {"x-transformed": "yes", "x-transformer": "rust"},
        "remove_json": ["secret"],
        "add_json": {"source": "kong"}
    }"#;
    let test = PluginTest::<ResponseTransformer>::new(config).unwrap();
    let outcome = test.run(TestRequest::get("/items/7").upstream_response(service_json()));
    let methods: Vec<&str> = outcome.calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "kong.response.clear_header",
            "kong.response.set_headers",
            "kong.service.response.get_header",
            "kong.service.response.get_raw_body",
            "kong.service.response.get_status",
            "kong.response.exit",
        ]
    );
    assert_eq!(outcome.response.header("x-transformer"), Some("rust"));
    assert_eq!(outcome.response.header("x-transformed"), Some("yes"));
}
