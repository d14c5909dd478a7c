//! The harness's in-memory Kong: headers, query and body round trips between the client
//! request, the service request and the client response.

use kong_rust_pdk::prelude::*;
use kong_rust_pdk_test::{PluginTest, TestRequest, UpstreamResponse, Value};

#[derive(Deserialize, Schema)]
struct Config {
    /// Request header copied upstream as `x-copied`.
    #[schema(default = "x-in")]
    source: String,
}

struct Copier {
    source: String,
}

#[plugin(name = "harness-headers", priority = 10)]
impl Plugin for Copier {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        Ok(Copier {
            source: config.source,
        })
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        let value = kong.request.get_header(&self.source)?.unwrap_or_default();
        kong.service
            .request
            .set_header("x-copied", &format!("seen:{value}"))?;
        kong.service.request.add_header("x-copied", "again")?;
        kong.service.request.clear_header("x-remove")?;
        // Kong reads the request it is about to send: the header set above is visible.
        let echoed = kong.request.get_header("X_Copied")?.unwrap_or_default();
        kong.response.set_header("x-echo", &echoed)?;
        let accepts = kong
            .request
            .get_headers(None)?
            .remove("accept")
            .unwrap_or_default();
        kong.response
            .set_header("x-accept-count", &accepts.len().to_string())?;
        kong.response.add_header("x-multi", "a")?;
        kong.response.add_header("x-multi", "2")?;
        let query = [
            ("b".to_string(), vec!["two words".to_string()]),
            // No values: a flag.
            ("a".to_string(), vec![]),
        ];
        kong.service.request.set_query(&query.into())?;
        kong.request.get_query(None)?;
        kong.request.get_raw_body(None)?;
        kong.service.request.set_raw_body(b"new body")?;
        Ok(())
    }
}

fn run(request: TestRequest) -> kong_rust_pdk_test::Outcome {
    PluginTest::<Copier>::new("{}").unwrap().run(request)
}

#[test]
fn a_header_set_for_the_service_reaches_it_and_later_reads() {
    let outcome = run(TestRequest::post("/orders?x=1")
        .header("X-In", "v1")
        .header("x-remove", "gone")
        .body("old"));
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let upstream = outcome.upstream_request.as_ref().unwrap();
    assert_eq!(upstream.header_values("X-Copied"), ["seen:v1", "again"]);
    assert_eq!(upstream.header("x-remove"), None);
    assert_eq!(upstream.header("host"), Some("upstream.test"));
    assert_eq!(upstream.header("x-forwarded-host"), Some("example.com"));
    assert_eq!(upstream.method, "POST");
    assert_eq!(upstream.path, "/orders");
    assert_eq!(upstream.query, "a&b=two%20words");
    assert_eq!(upstream.body, b"new body");
    assert_eq!(upstream.header("content-length"), Some("8"));
    assert_eq!(outcome.response.header("x-echo"), Some("seen:v1"));
}

#[test]
fn response_headers_set_in_access_are_applied_over_the_service_response() {
    let outcome = run(TestRequest::get("/")
        .header("accept", "text/html")
        .header("Accept", "application/json")
        .upstream_response(
            UpstreamResponse::new(201)
                .header("x-echo", "from the service")
                .header("x-service", "kept")
                .body("created"),
        ));
    let response = &outcome.response;
    assert_eq!(response.status, 201);
    assert_eq!(response.text(), "created");
    assert_eq!(response.header("x-echo"), Some("seen:"));
    assert_eq!(response.header("x-service"), Some("kept"));
    assert_eq!(response.header("x-accept-count"), Some("2"));
    assert_eq!(response.header_values("x-multi"), ["a", "2"]);
    assert_eq!(response.header("content-length"), Some("7"));
}

#[test]
fn results_are_encoded_as_kong_encodes_them() {
    let outcome = run(TestRequest::get("/p?flag&k=1&k=2")
        .header("accept", "a")
        .header("accept", "b"));
    let headers = &outcome.calls_to("kong.request.get_headers")[0];
    let Ok(Value::Map(entries)) = &headers.result else {
        panic!("get_headers returns a map: {:?}", headers.result);
    };
    let accept = entries
        .iter()
        .find(|(name, _)| name.as_str() == Some("accept"))
        .map(|(_, values)| values.clone());
    assert_eq!(accept, Some(Value::Array(vec!["a".into(), "b".into()])));
    let host = entries
        .iter()
        .find(|(name, _)| name.as_str() == Some("host"))
        .map(|(_, values)| values.clone());
    assert_eq!(host, Some(Value::Array(vec!["example.com".into()])));

    // get_query runs after set_query: it sees the query Kong will send.
    let query = &outcome.calls_to("kong.request.get_query")[0].result;
    assert_eq!(
        query.as_ref().unwrap(),
        &Value::Map(vec![
            ("a".into(), Value::Array(vec![])),
            ("b".into(), Value::Array(vec!["two words".into()])),
        ])
    );
    let body = &outcome.calls_to("kong.request.get_raw_body")[0].result;
    assert_eq!(body.as_ref().unwrap(), &Value::Binary(Vec::new()));
}

#[test]
fn preserve_host_and_service_paths_shape_the_upstream_request() {
    let outcome = run(
        TestRequest::get("https://api.example.com:8443/api/users?id=3")
            .route(serde_json::json!({
                "id": "r1",
                "paths": ["/api"],
                "strip_path": true,
                "preserve_host": true,
                "protocols": ["https"],
            }))
            .service(serde_json::json!({
                "id": "s1",
                "protocol": "https",
                "host": "users.internal",
                "port": 9443,
                "path": "/v2",
            })),
    );
    let upstream = outcome.upstream_request.unwrap();
    assert_eq!(
        (
            upstream.scheme.as_str(),
            upstream.host.as_str(),
            upstream.port
        ),
        ("https", "users.internal", 9443)
    );
    assert_eq!(upstream.path, "/v2/users");
    assert_eq!(upstream.header("host"), Some("api.example.com:8443"));
    assert_eq!(upstream.header("x-forwarded-proto"), Some("https"));
    assert_eq!(upstream.header("x-forwarded-port"), Some("8443"));
}

#[test]
fn configs_are_decoded_like_the_host_does() {
    let outcome = PluginTest::<Copier>::new(r#"{"source": "x-other"}"#)
        .unwrap()
        .run(TestRequest::get("/").header("x-other", "o"));
    let upstream = outcome.upstream_request.unwrap();
    assert_eq!(upstream.header("x-copied"), Some("seen:o"));

    let error = PluginTest::<Copier>::new(r#"{"source": 5}"#).err().unwrap();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.message().contains("`source`"), "{}", error.message());
}
