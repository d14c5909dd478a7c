//! One `Headers` type for the plugin and the harness's outcome: names keep the case they were
//! given, on the wire to Kong and in the outcome, and compare case-insensitively.

use kong_rust_pdk::prelude::*;
use kong_rust_pdk_test::{PluginTest, TestRequest, Value};

#[derive(Deserialize, Schema)]
struct Config {}

struct Cors;

#[plugin(name = "harness-header-case", priority = 10)]
impl Plugin for Cors {
    type Config = Config;

    fn new(_: Config) -> Result<Self> {
        Ok(Cors)
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        kong.service.request.set_header("X-Upstream-Mark", "1")?;
        if kong.request.get_method()? == "OPTIONS" {
            let headers = Headers::from([
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Methods", "GET, POST"),
            ]);
            return kong.response.exit(204, "", Some(&headers)).into();
        }
        kong.response
            .set_header("Content-Type", "application/x-cors")?;
        kong.response.set_header("Access-Control-Allow-Origin", "*")
    }
}

fn names(headers: &Headers) -> Vec<&str> {
    headers.iter().map(|(name, _)| name).collect()
}

#[test]
fn exit_headers_reach_kong_and_the_client_in_the_case_the_plugin_gave() {
    let test = PluginTest::<Cors>::new("{}").unwrap();
    let outcome = test.run(TestRequest::get("/").method("OPTIONS"));

    let exit = &outcome.calls_to("kong.response.exit")[0];
    let Value::Map(sent) = &exit.args[2] else {
        panic!("headers argument: {:?}", exit.args[2]);
    };
    let sent: Vec<&str> = sent.iter().filter_map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        sent,
        [
            "Access-Control-Allow-Methods",
            "Access-Control-Allow-Origin"
        ]
    );

    assert_eq!(outcome.response.status, 204);
    let received = names(&outcome.response.headers);
    assert!(
        received.contains(&"Access-Control-Allow-Origin"),
        "{received:?}"
    );
    // The outcome's headers are the PDK's `Headers`: `get` is case-insensitive, gives `&str`.
    assert_eq!(
        outcome.response.headers.get("access-control-allow-methods"),
        Some("GET, POST")
    );
}

#[test]
fn headers_set_for_the_client_and_the_service_keep_their_case() {
    let test = PluginTest::<Cors>::new("{}").unwrap();
    let outcome = test.run(TestRequest::get("/").header("X-Client-Case", "kept"));

    let received = names(&outcome.response.headers);
    assert!(
        received.contains(&"Access-Control-Allow-Origin"),
        "{received:?}"
    );
    let upstream = outcome.upstream_request.as_ref().unwrap();
    let sent = names(&upstream.headers);
    assert!(sent.contains(&"X-Upstream-Mark"), "{sent:?}");
    assert!(sent.contains(&"X-Client-Case"), "{sent:?}");
    assert_eq!(upstream.headers.get("x-client-case"), Some("kept"));
}

#[test]
fn headers_equal_whatever_the_case_of_their_names() {
    let given = Headers::from([("Content-Type", "text/plain"), ("X-A", "1")]);
    let lower = Headers::from([("content-type", "text/plain"), ("x-a", "1")]);
    assert_eq!(given, lower);
    assert_ne!(
        given,
        Headers::from([("content-type", "text/html"), ("x-a", "1")])
    );
}

/// Sets in `access` what Cors sets, and has a `response` handler: Kong buffers the response.
struct BufferedCors;

#[plugin(name = "harness-header-case-buffered", priority = 10)]
impl Plugin for BufferedCors {
    type Config = Config;

    fn new(_: Config) -> Result<Self> {
        Ok(BufferedCors)
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        kong.response.set_header("Access-Control-Allow-Origin", "*")
    }

    fn response(&self, kong: &Kong) -> Result<()> {
        kong.response.set_header("x-buffered", "yes")
    }
}

fn service_sending_its_own_origin() -> kong_rust_pdk_test::UpstreamResponse {
    kong_rust_pdk_test::UpstreamResponse::new(200)
        .header("access-control-allow-origin", "https://app.example")
        .header("content-type", "text/plain")
}

#[test]
fn a_header_set_in_access_that_the_service_also_sends_reaches_the_client_twice() {
    let test = PluginTest::<Cors>::new("{}").unwrap();
    let outcome =
        test.run(TestRequest::get("/").upstream_response(service_sending_its_own_origin()));

    // nginx sends the plugin's value, then the service's (what Kong does without a
    // header_filter, which external plugins do not get).
    assert_eq!(
        outcome
            .response
            .header_values("access-control-allow-origin"),
        ["*", "https://app.example"]
    );
    // Content-Type is one nginx keeps once: the service's.
    assert_eq!(
        outcome.response.header_values("content-type"),
        ["text/plain"]
    );
    let received = names(&outcome.response.headers);
    assert!(
        received.contains(&"Access-Control-Allow-Origin"),
        "{received:?}"
    );
}

#[test]
fn with_a_response_handler_the_services_header_replaces_the_one_set_in_access() {
    let test = PluginTest::<BufferedCors>::new("{}").unwrap();
    let outcome =
        test.run(TestRequest::get("/").upstream_response(service_sending_its_own_origin()));

    assert_eq!(
        outcome
            .response
            .header_values("access-control-allow-origin"),
        ["https://app.example"]
    );
    assert_eq!(outcome.response.header("x-buffered"), Some("yes"));
}
