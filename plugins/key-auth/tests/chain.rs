//! rust-key-auth chained with rust-request-logger, each from its own crate, in one test binary:
//! the logger's log phase sees the consumer key-auth authenticated, and the 401 key-auth answers.

use kong_rust_pdk_test::{Handler, LogLevel, Phase, PluginChain, Source, TestRequest};
use rust_key_auth::KeyAuth;
use rust_request_logger::RequestLogger;
use serde_json::{json, Value};

fn chain() -> PluginChain {
    // Added logger first: the chain runs them in Kong's order anyway (1250 before 5).
    PluginChain::new()
        .plugin::<RequestLogger>(
            r#"{"fields": ["response.status", "consumer.username"], "level": "info"}"#,
        )
        .unwrap()
        .plugin::<KeyAuth>(r#"{"keys": {"k-alice": "alice"}}"#)
        .unwrap()
}

fn logged(outcome: &kong_rust_pdk_test::Outcome) -> Value {
    let lines = outcome.logs_at(LogLevel::Info);
    assert_eq!(lines.len(), 1, "{:?}", outcome.logs);
    serde_json::from_str(lines[0]).unwrap()
}

#[test]
fn the_chain_runs_key_auth_before_the_logger_by_priority() {
    assert_eq!(chain().order(), ["rust-key-auth", "rust-request-logger"]);
}

#[test]
fn the_logger_logs_the_consumer_key_auth_authenticated() {
    let alice = json!({"id": "8a1c0e43-5a3c-4b8e-9d57-6f1f1c3a0b11", "username": "alice"});
    let outcome = chain().run(
        TestRequest::get("/items")
            .header("apikey", "k-alice")
            .known_consumer(alice),
    );

    assert_eq!(
        outcome.handlers,
        [
            Handler {
                plugin: "rust-key-auth",
                phase: Phase::Access
            },
            Handler {
                plugin: "rust-request-logger",
                phase: Phase::Log
            },
        ]
    );
    assert_eq!(outcome.response.source, Source::Service);
    assert_eq!(
        logged(&outcome),
        json!({"response.status": 200, "consumer.username": "alice"})
    );
    assert_eq!(outcome.logs[0].plugin, "rust-request-logger");
}

#[test]
fn the_logger_still_logs_the_401_key_auth_answered() {
    let outcome = chain().run(TestRequest::get("/items"));

    assert!(outcome.upstream_request.is_none());
    let exit = outcome.exit.as_ref().unwrap();
    assert_eq!((exit.plugin, exit.status), ("rust-key-auth", 401));
    assert_eq!(
        logged(&outcome),
        json!({"response.status": 401, "consumer.username": null})
    );
}
