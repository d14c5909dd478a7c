//! The harness: the log phase works from the snapshot Kong takes after the response
//! (protocol.md §10.3): the serializer output, the saved status and headers; the live request is
//! gone.

use kong_rust_pdk::pdk::SerializeMode;
use kong_rust_pdk::prelude::*;
use kong_rust_pdk_test::{
    FailureKind, LogLevel, Phase, PluginTest, TestRequest, UpstreamResponse, ROUTE_ID, SERVICE_ID,
};

#[derive(Deserialize, Schema)]
struct Config {}

struct Logger;

#[plugin(name = "harness-log", priority = 10)]
impl Plugin for Logger {
    type Config = Config;

    fn new(_: Config) -> Result<Self> {
        Ok(Logger)
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        kong.log
            .set_serialize_value("custom.tenant", "acme", SerializeMode::Set)?;
        kong.log.set_serialize_value(
            "request.headers.x-secret",
            "hidden",
            SerializeMode::Replace,
        )?;
        kong.service.request.set_header("x-added", "1")?;
        Ok(())
    }

    fn log(&self, kong: &Kong) -> Result<()> {
        let serialized: serde_json::Value = kong.log.serialize()?;
        let status = kong.response.get_status()?;
        let agent = kong.request.get_header("user-agent")?.unwrap_or_default();
        kong.log.info(format!(
            "{} {} -> {status} (serialized {}) by {agent}",
            serialized["request"]["method"],
            serialized["request"]["uri"],
            serialized["response"]["status"]
        ))?;
        // The live request is gone: Kong raises, the event dies.
        let path = kong.request.get_path();
        kong.log.info("unreachable")?;
        path.map(drop)
    }
}

fn request() -> TestRequest {
    TestRequest::get("/search?q=rust")
        .header("user-agent", "curl/8")
        .header("authorization", "Bearer abc")
        .header("x-secret", "s3cr3t")
        .client_ip("10.1.2.3")
        .started_at(1_718_000_000_123)
        .latencies(2, 30, 35)
        .consumer(serde_json::json!({"id": "c-1", "username": "alice"}))
        .credential(serde_json::json!({"id": "cred-1", "consumer_id": "c-1"}))
        .upstream_response(
            UpstreamResponse::new(201)
                .header("x-service", "yes")
                .body("done"),
        )
}

#[test]
fn the_log_phase_sees_the_saved_status_and_request_headers() {
    let outcome = PluginTest::<Logger>::new("{}").unwrap().run(request());
    assert_eq!(
        outcome.logs_at(LogLevel::Info),
        [r#""GET" "/search?q=rust" -> 201 (serialized 201) by curl/8"#]
    );
}

#[test]
fn calls_needing_the_live_request_fail_in_the_log_phase() {
    let outcome = PluginTest::<Logger>::new("{}").unwrap().run(request());
    let get_path = &outcome.calls_to("kong.request.get_path")[0];
    let error = get_path.result.as_ref().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Kong);
    assert!(
        error.message().starts_with(
            "kong.request.get_path: function cannot be called in log phase (only in: rewrite, access, response)"
        ),
        "{}",
        error.message()
    );
    assert!(error.message().contains("kong.log.serialize()"));
    let failures = outcome.failures_in(Phase::Log);
    assert_eq!(failures[0].kind, FailureKind::Kong);
    // The event died with it: the next call fails without running.
    let after = &outcome.calls_to("kong.log.info")[1];
    assert_eq!(
        after.result.as_ref().unwrap_err().kind(),
        ErrorKind::EventEnded
    );
    assert_eq!(outcome.logs_at(LogLevel::Info).len(), 1);
    // The client had its answer long before.
    assert_eq!(outcome.response.status, 201);
}

#[test]
fn serialize_returns_kongs_serializer_output() {
    let outcome = PluginTest::<Logger>::new("{}").unwrap().run(request());
    let serialized = outcome.serialized.unwrap();
    let request = &serialized["request"];
    assert_eq!(request["uri"], "/search?q=rust");
    assert_eq!(request["url"], "http://example.com:80/search?q=rust");
    assert_eq!(request["method"], "GET");
    assert_eq!(request["querystring"], serde_json::json!({"q": "rust"}));
    assert_eq!(request["headers"]["user-agent"], "curl/8");
    assert_eq!(request["headers"]["x-added"], "1");
    assert_eq!(request["headers"]["authorization"], "REDACTED");
    assert_eq!(request["headers"]["x-secret"], "hidden");
    assert_eq!(serialized["upstream_uri"], "/search?q=rust");
    assert_eq!(serialized["response"]["status"], 201);
    assert_eq!(serialized["response"]["headers"]["x-service"], "yes");
    assert_eq!(
        serialized["latencies"],
        serde_json::json!({"kong": 2, "proxy": 30, "request": 35})
    );
    assert_eq!(serialized["client_ip"], "10.1.2.3");
    assert_eq!(serialized["started_at"], 1_718_000_000_123_u64);
    assert_eq!(serialized["consumer"]["username"], "alice");
    assert_eq!(
        serialized["authenticated_entity"],
        serde_json::json!({"id": "cred-1", "consumer_id": "c-1"})
    );
    assert_eq!(serialized["route"]["id"], ROUTE_ID);
    assert_eq!(serialized["service"]["id"], SERVICE_ID);
    assert_eq!(serialized["service"]["path"], serde_json::Value::Null);
    assert_eq!(serialized["tries"][0]["ip"], "upstream.test");
    assert_eq!(serialized["custom"], serde_json::json!({"tenant": "acme"}));
}
