//! The harness: the response phase reads the service's response and rewrites it.

use kong_rust_pdk::prelude::*;
use kong_rust_pdk_test::{Phase, PluginTest, Source, TestRequest, UpstreamResponse, Value};

#[derive(Deserialize, Schema)]
struct Config {
    /// Field added to JSON responses.
    #[schema(default = "wrapped")]
    marker: String,
}

/// Wraps JSON service responses as `{"data": <body>, "<marker>": true}`; other responses get a
/// header only.
struct Wrapper {
    marker: String,
}

#[plugin(name = "harness-response", priority = 10)]
impl Plugin for Wrapper {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        Ok(Wrapper {
            marker: config.marker,
        })
    }

    fn response(&self, kong: &Kong) -> Result<()> {
        let status = kong.service.response.get_status()?;
        let content_type = kong.service.response.get_header("Content-Type")?;
        kong.response
            .set_header("x-upstream-status", &status.to_string())?;
        if content_type.as_deref() != Some("application/json") {
            return kong.response.set_status(299);
        }
        let raw = kong.service.response.get_raw_body()?;
        let data: serde_json::Value = serde_json::from_slice(&raw)?;
        let wrapped = serde_json::json!({ "data": data, self.marker.clone(): true });
        let headers = Headers::from([("Content-Type", "application/vnd.wrapped+json")]);
        kong.response
            .exit(200, wrapped.to_string(), Some(&headers))
            .into()
    }
}

fn service_json() -> UpstreamResponse {
    UpstreamResponse::new(201)
        .header("x-from-service", "1")
        .json_body(&serde_json::json!({"id": 7}))
}

#[test]
fn the_response_phase_replaces_the_body_from_the_service_body() {
    let outcome = PluginTest::<Wrapper>::new(r#"{"marker": "ok"}"#)
        .unwrap()
        .run(TestRequest::get("/things/7").upstream_response(service_json()));
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert_eq!(outcome.phases, [Phase::Response]);
    let response = &outcome.response;
    assert_eq!(response.status, 200);
    assert_eq!(response.source, Source::Exit);
    assert_eq!(
        response.json().unwrap(),
        serde_json::json!({"data": {"id": 7}, "ok": true})
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/vnd.wrapped+json")
    );
    assert_eq!(
        response.header("content-length"),
        Some(response.body.len().to_string().as_str())
    );
    // The service's other headers and the plugin's own survive the exit.
    assert_eq!(response.header("x-from-service"), Some("1"));
    assert_eq!(response.header("x-upstream-status"), Some("201"));
    // The response phase turns on buffered proxying.
    assert!(outcome.upstream_request.unwrap().buffered);
}

#[test]
fn other_responses_pass_through_with_the_new_status() {
    let outcome = PluginTest::<Wrapper>::new("{}").unwrap().run(
        TestRequest::get("/").upstream_response(
            UpstreamResponse::new(200)
                .header("content-type", "text/plain")
                .body("plain"),
        ),
    );
    let response = &outcome.response;
    assert_eq!(response.status, 299);
    assert_eq!(response.source, Source::Service);
    assert_eq!(response.text(), "plain");
    assert_eq!(response.header("x-upstream-status"), Some("200"));
    assert!(outcome.exit.is_none());
}

#[test]
fn service_response_results_are_encoded_as_kong_encodes_them() {
    let outcome = PluginTest::<Wrapper>::new("{}")
        .unwrap()
        .run(TestRequest::get("/").upstream_response(service_json()));
    let status = &outcome.calls_to("kong.service.response.get_status")[0];
    assert_eq!(status.result.as_ref().unwrap(), &Value::from(201));
    let body = &outcome.calls_to("kong.service.response.get_raw_body")[0];
    assert_eq!(
        body.result.as_ref().unwrap(),
        &Value::Binary(br#"{"id":7}"#.to_vec())
    );
}
