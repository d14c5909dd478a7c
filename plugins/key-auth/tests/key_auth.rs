//! rust-key-auth against the in-memory Kong.

use kong_rust_pdk_test::{PluginTest, Source, TestRequest};
use rust_key_auth::KeyAuth;
use serde_json::json;

const CONFIG: &str = r#"{"keys": {"k-alice": "alice", "k-ghost": "nobody"}}"#;

fn alice() -> serde_json::Value {
    json!({"id": "8a1c0e43-5a3c-4b8e-9d57-6f1f1c3a0b11", "username": "alice"})
}

#[test]
fn a_known_key_authenticates_its_consumer() {
    let test = PluginTest::<KeyAuth>::new(CONFIG).unwrap();
    let outcome = test.run(
        TestRequest::get("/items")
            .header("apikey", "k-alice")
            .known_consumer(alice()),
    );

    assert_eq!(outcome.response.source, Source::Service);
    let upstream = outcome.upstream_request.as_ref().unwrap();
    assert_eq!(upstream.header("x-consumer-username"), Some("alice"));
    assert_eq!(
        upstream.header("x-consumer-id"),
        Some("8a1c0e43-5a3c-4b8e-9d57-6f1f1c3a0b11")
    );
    // The key stays unless hide_credentials is set.
    assert_eq!(upstream.header("apikey"), Some("k-alice"));
    let consumer = outcome.consumer.expect("authenticated").to_string();
    assert!(consumer.contains(r#""username": "alice""#), "{consumer}");
    assert!(outcome.credential.is_some());
}

#[test]
fn the_key_may_come_in_the_query_and_be_hidden_from_the_service() {
    let config = r#"{"keys": {"k-alice": "alice"}, "hide_credentials": true}"#;
    let test = PluginTest::<KeyAuth>::new(config).unwrap();
    let outcome =
        test.run(TestRequest::get("/items?apikey=k-alice&page=2").known_consumer(alice()));
    let upstream = outcome.upstream_request.as_ref().unwrap();
    assert_eq!(upstream.header("x-consumer-username"), Some("alice"));
    assert_eq!(upstream.query, "page=2");
}

#[test]
fn no_key_or_an_unknown_one_gets_401_and_the_service_never_sees_it() {
    let test = PluginTest::<KeyAuth>::new(CONFIG).unwrap();
    for (request, message) in [
        (TestRequest::get("/items"), "No API key found in request"),
        (
            TestRequest::get("/items").header("apikey", "k-unknown"),
            "Invalid authentication credentials",
        ),
        // A key whose consumer is not in Kong's database.
        (
            TestRequest::get("/items").header("apikey", "k-ghost"),
            "Invalid authentication credentials",
        ),
    ] {
        let outcome = test.run(request.known_consumer(alice()));
        assert!(outcome.upstream_request.is_none());
        assert_eq!(outcome.response.status, 401);
        assert_eq!(outcome.response.source, Source::Exit);
        assert_eq!(
            outcome.response.json().unwrap(),
            json!({ "message": message })
        );
        assert_eq!(
            outcome.response.header("www-authenticate"),
            Some("Key realm=\"kong\"")
        );
        assert!(outcome.consumer.is_none());
    }
}

#[test]
fn key_names_must_not_be_empty() {
    let error = PluginTest::<KeyAuth>::new(r#"{"key_names": []}"#)
        .err()
        .unwrap();
    assert!(error.to_string().contains("key_names"), "{error}");
}

/// RPCs per request (issue 18): the PDK calls an authenticated request costs, each a round trip
/// to Kong. The two upstream header writes go as one `set_headers` (5 calls before batching).
#[test]
fn an_authenticated_request_costs_four_round_trips() {
    let test = PluginTest::<KeyAuth>::new(CONFIG).unwrap();
    let outcome = test.run(
        TestRequest::get("/items")
            .header("apikey", "k-alice")
            .known_consumer(alice()),
    );
    let methods: Vec<&str> = outcome.calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "kong.request.get_header",
            "kong.client.load_consumer",
            "kong.client.authenticate",
            "kong.service.request.set_headers",
        ]
    );
}
