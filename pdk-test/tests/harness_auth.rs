//! The harness: `kong.client.authenticate` sets the consumer and credential that later calls,
//! later phases and the serializer see.

use kong_rust_pdk::pdk::{
    entity::{Credential, Fields},
    QueryArg,
};
use kong_rust_pdk::prelude::*;
use kong_rust_pdk_test::{LogLevel, PluginTest, Source, TestRequest, Value};

#[derive(Deserialize, Schema)]
struct Config {}

/// API keys are consumer usernames (a toy scheme): `?apikey=<username>`.
struct KeyAuth;

fn field(entity: &Value, name: &str) -> Option<String> {
    entity.as_map()?.iter().find_map(|(key, value)| {
        (key.as_str() == Some(name)).then(|| value.as_str().map(str::to_string))?
    })
}

#[plugin(name = "harness-auth", priority = 10)]
impl Plugin for KeyAuth {
    type Config = Config;

    fn new(_: Config) -> Result<Self> {
        Ok(KeyAuth)
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        let Some(QueryArg::Value(key)) = kong.request.get_query_arg("apikey")? else {
            return kong.response.exit(401, "no key", None).into();
        };
        let Some(consumer) = kong.client.load_consumer(&key, true)? else {
            return kong.response.exit(403, "unknown key", None).into();
        };
        let credential = Credential {
            id: Some("cred-for-key".into()),
            consumer: None,
            fields: Fields::from([("consumer_id".to_string(), consumer.id.as_str().into())]),
        };
        kong.client.authenticate(&consumer, Some(&credential))?;
        let current = kong.client.get_consumer()?;
        let username = current.and_then(|c| c.username).unwrap_or_default();
        kong.service
            .request
            .set_header("x-consumer-username", &username)
    }

    fn log(&self, kong: &Kong) -> Result<()> {
        let consumer = kong.client.get_consumer()?;
        let credential = kong.client.get_credential()?;
        kong.log.notice(format!(
            "consumer={} credential={}",
            consumer
                .and_then(|c| c.username)
                .unwrap_or_else(|| "-".into()),
            credential.and_then(|c| c.id).unwrap_or_else(|| "-".into()),
        ))
    }
}

fn request(query: &str) -> TestRequest {
    TestRequest::get(&format!("/private?{query}"))
        .known_consumer(serde_json::json!({
            "id": "8f2c1a9e-0b3d-4c5e-9f60-7a8b9c0d1e2f",
            "username": "alice",
            "custom_id": null,
        }))
        .known_consumer(serde_json::json!({
            "id": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
            "username": "bob",
        }))
}

#[test]
fn authenticate_sets_consumer_and_credential_for_the_rest_of_the_request() {
    let outcome = PluginTest::<KeyAuth>::new("{}")
        .unwrap()
        .run(request("apikey=alice"));
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let upstream = outcome.upstream_request.as_ref().unwrap();
    assert_eq!(upstream.header("x-consumer-username"), Some("alice"));
    let consumer = outcome.consumer.as_ref().unwrap();
    assert_eq!(
        field(consumer, "id").as_deref(),
        Some("8f2c1a9e-0b3d-4c5e-9f60-7a8b9c0d1e2f")
    );
    assert_eq!(
        field(outcome.credential.as_ref().unwrap(), "id").as_deref(),
        Some("cred-for-key")
    );
    assert_eq!(
        outcome.logs_at(LogLevel::Notice),
        ["consumer=alice credential=cred-for-key"]
    );
    let serialized = outcome.serialized.unwrap();
    assert_eq!(serialized["consumer"]["username"], "alice");
    assert_eq!(serialized["consumer"]["custom_id"], serde_json::Value::Null);
    assert_eq!(
        serialized["authenticated_entity"],
        serde_json::json!({
            "id": "cred-for-key",
            "consumer_id": "8f2c1a9e-0b3d-4c5e-9f60-7a8b9c0d1e2f",
        })
    );
}

#[test]
fn load_consumer_finds_by_id_and_only_then_by_username() {
    let outcome = PluginTest::<KeyAuth>::new("{}")
        .unwrap()
        .run(request("apikey=1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"));
    assert_eq!(
        outcome
            .upstream_request
            .unwrap()
            .header("x-consumer-username"),
        Some("bob")
    );
}

#[test]
fn unknown_and_missing_keys_are_rejected_without_a_consumer() {
    let test = PluginTest::<KeyAuth>::new("{}").unwrap();
    let unknown = test.run(request("apikey=mallory"));
    assert_eq!(unknown.response.status, 403);
    assert_eq!(unknown.response.source, Source::Exit);
    assert!(unknown.consumer.is_none());
    assert_eq!(
        unknown.logs_at(LogLevel::Notice),
        ["consumer=- credential=-"]
    );
    assert!(unknown.serialized.unwrap().get("consumer").is_none());

    let missing = test.run(request("other=1"));
    assert_eq!(missing.response.status, 401);
    assert_eq!(missing.response.text(), "no key");
}

#[test]
fn a_consumer_set_by_an_earlier_plugin_is_visible() {
    let outcome = PluginTest::<KeyAuth>::new("{}").unwrap().run(
        TestRequest::get("/")
            .consumer(serde_json::json!({"id": "c-0", "username": "carol"}))
            .credential(serde_json::json!({"id": "cred-0"})),
    );
    assert_eq!(outcome.response.status, 401);
    assert_eq!(
        outcome.logs_at(LogLevel::Notice),
        ["consumer=carol credential=cred-0"]
    );
}
