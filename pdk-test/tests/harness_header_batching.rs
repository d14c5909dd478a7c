//! Header-write batching as Kong receives it: consecutive header writes arrive as one
//! `set_headers`, sent before any other call, before `exit` and when the handler returns, and
//! the request ends up exactly as the separate writes would have left it.

use kong_rust_pdk::prelude::*;
use kong_rust_pdk_test::{
    FailureKind, Outcome, Phase, PluginTest, TestRequest, UpstreamResponse, Value,
};

#[derive(Deserialize, Schema)]
struct Config {
    /// Steps for the access handler, `"op name value"`.
    #[schema(default = [])]
    access: Vec<String>,
    /// Steps for the response handler.
    #[schema(default = [])]
    response: Vec<String>,
}

/// Runs the steps its configuration lists, so each test states the writes it makes.
struct Script {
    config: Config,
}

fn run_steps(kong: &Kong, steps: &[String]) -> Result<()> {
    for step in steps {
        let mut words = step.splitn(3, ' ');
        let op = words.next().unwrap_or_default();
        let name = words.next().unwrap_or_default();
        let value = words.next().unwrap_or_default();
        match op {
            "set" => kong.service.request.set_header(name, value)?,
            "add" => kong.service.request.add_header(name, value)?,
            "clear" => kong.service.request.clear_header(name)?,
            "response-set" => kong.response.set_header(name, value)?,
            "response-add" => kong.response.add_header(name, value)?,
            "get" => drop(kong.request.get_header(name)?),
            "exit" => return kong.response.exit(403, "no", None).into(),
            "fail" => return Err(Error::msg("gave up")),
            "panic" => panic!("handler bug"),
            other => panic!("unknown step {other}"),
        }
    }
    Ok(())
}

#[plugin(name = "harness-header-batching", priority = 10)]
impl Plugin for Script {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        Ok(Script { config })
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        run_steps(kong, &self.config.access)
    }

    fn response(&self, kong: &Kong) -> Result<()> {
        run_steps(kong, &self.config.response)
    }
}

fn run(access: &[&str], response: &[&str], request: TestRequest) -> Outcome {
    let config = serde_json::json!({"access": access, "response": response}).to_string();
    PluginTest::<Script>::new(&config).unwrap().run(request)
}

/// Each call as `method` followed by its arguments rendered as JSON-ish text.
fn calls(outcome: &Outcome) -> Vec<String> {
    outcome
        .calls
        .iter()
        .map(|call| {
            let args: Vec<String> = call.args.iter().map(Value::to_string).collect();
            format!("{} {}", call.method, args.join(" "))
        })
        .collect()
}

#[test]
fn consecutive_upstream_writes_arrive_as_one_set_headers_with_the_separate_writes_effect() {
    let outcome = run(
        &[
            "set x-a 1",
            "set X-B 2",
            "add x-b 3",
            "set x-a 4",
            "get x-c",
        ],
        &[],
        TestRequest::get("/").header("x-b", "from-client"),
    );

    assert_eq!(
        calls(&outcome),
        [
            // The add re-sets `x-b` under its own spelling, as Kong's add_header does.
            r#"kong.service.request.set_headers {"x-a": ["4"], "x-b": ["2", "3"]}"#,
            r#"kong.request.get_header "x-c""#,
        ]
    );
    let upstream = outcome.upstream_request.as_ref().unwrap();
    // A later write to a name wins, and the add went after the set, not after the client's.
    assert_eq!(upstream.header_values("x-a"), ["4"]);
    assert_eq!(upstream.header_values("x-b"), ["2", "3"]);
}

#[test]
fn a_single_write_is_sent_as_the_plugin_made_it() {
    let outcome = run(&["set x-a 1", "get x-c"], &[], TestRequest::get("/"));
    assert_eq!(
        calls(&outcome),
        [
            r#"kong.service.request.set_header "x-a" "1""#,
            r#"kong.request.get_header "x-c""#,
        ]
    );
}

#[test]
fn a_clear_header_between_writes_sends_what_was_held_first() {
    let outcome = run(
        &[
            "set x-a 1",
            "set x-b 2",
            "clear x-a",
            "set x-c 3",
            "set x-d 4",
        ],
        &[],
        TestRequest::get("/"),
    );
    assert_eq!(
        calls(&outcome),
        [
            r#"kong.service.request.set_headers {"x-a": ["1"], "x-b": ["2"]}"#,
            r#"kong.service.request.clear_header "x-a""#,
            r#"kong.service.request.set_headers {"x-c": ["3"], "x-d": ["4"]}"#,
        ]
    );
    let upstream = outcome.upstream_request.as_ref().unwrap();
    assert_eq!(upstream.header("x-a"), None);
    assert_eq!(upstream.header("x-d"), Some("4"));
}

#[test]
fn an_add_with_nothing_held_for_its_name_goes_to_kong_which_knows_the_current_values() {
    let outcome = run(
        &["set x-a 1", "set x-c 5", "add x-b 2"],
        &[],
        TestRequest::get("/").header("x-b", "from-client"),
    );
    assert_eq!(
        calls(&outcome),
        [
            r#"kong.service.request.set_headers {"x-a": ["1"], "x-c": ["5"]}"#,
            r#"kong.service.request.add_header "x-b" "2""#,
        ]
    );
    let upstream = outcome.upstream_request.as_ref().unwrap();
    assert_eq!(upstream.header_values("x-b"), ["from-client", "2"]);
}

#[test]
fn a_host_write_goes_to_kong_as_made_since_it_also_sets_the_upstream_host() {
    let outcome = run(
        &[
            "set x-a 1",
            "set x-c 3",
            "set Host h.example",
            "set x-b 2",
            "set x-d 4",
        ],
        &[],
        TestRequest::get("/"),
    );
    assert_eq!(
        calls(&outcome),
        [
            r#"kong.service.request.set_headers {"x-a": ["1"], "x-c": ["3"]}"#,
            r#"kong.service.request.set_header "Host" "h.example""#,
            r#"kong.service.request.set_headers {"x-b": ["2"], "x-d": ["4"]}"#,
        ]
    );
    let upstream = outcome.upstream_request.as_ref().unwrap();
    assert_eq!(upstream.header("host"), Some("h.example"));
}

#[test]
fn response_writes_are_batched_apart_from_upstream_ones_keeping_the_calls_order() {
    let outcome = run(
        &[
            "set x-a 1",
            "set x-b 2",
            "response-set x-r 1",
            "response-set x-s 2",
        ],
        &[],
        TestRequest::get("/"),
    );
    assert_eq!(
        calls(&outcome),
        [
            r#"kong.service.request.set_headers {"x-a": ["1"], "x-b": ["2"]}"#,
            r#"kong.response.set_headers {"x-r": ["1"], "x-s": ["2"]}"#,
        ]
    );
    assert_eq!(outcome.response.header("x-s"), Some("2"));
}

#[test]
fn response_adds_and_underscored_names_go_to_kong_as_made() {
    let outcome = run(
        &[],
        &[
            "response-set x-r 1",
            "response-set x-s 2",
            "response-add x-r 3",
            "response-set x_u 4",
        ],
        TestRequest::get("/").upstream_response(UpstreamResponse::new(200)),
    );
    assert_eq!(
        calls(&outcome),
        [
            r#"kong.response.set_headers {"x-r": ["1"], "x-s": ["2"]}"#,
            r#"kong.response.add_header "x-r" "3""#,
            r#"kong.response.set_header "x_u" "4""#,
        ]
    );
    assert_eq!(outcome.response.header_values("x-r"), ["1", "3"]);
    assert_eq!(outcome.response.header("x-u"), Some("4"));
}

#[test]
fn held_writes_reach_kong_before_the_exit_and_the_exit_response_carries_them() {
    let outcome = run(
        &["response-set x-r 1", "response-set x-s 2", "exit"],
        &[],
        TestRequest::get("/"),
    );
    let methods: Vec<&str> = outcome.calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["kong.response.set_headers", "kong.response.exit"]);
    assert_eq!(outcome.response.status, 403);
    assert_eq!(outcome.response.header("x-s"), Some("2"));
}

#[test]
fn held_writes_are_sent_when_the_handler_returns_an_error_or_panics() {
    for (last, kind) in [
        ("fail", FailureKind::Returned(ErrorKind::Plugin)),
        ("panic", FailureKind::Panicked),
    ] {
        let outcome = run(
            &["set x-a 1", "set x-b 2", last],
            &[],
            TestRequest::get("/"),
        );
        assert_eq!(
            calls(&outcome),
            [r#"kong.service.request.set_headers {"x-a": ["1"], "x-b": ["2"]}"#],
            "{last}"
        );
        assert_eq!(outcome.failures.len(), 1, "{last}: {:?}", outcome.failures);
        assert_eq!(outcome.failures[0].kind, kind, "{last}");
        if last == "panic" {
            assert!(
                outcome.failures[0].message.contains("handler bug"),
                "{:?}",
                outcome.failures
            );
        }
    }
}

#[test]
fn a_write_kong_refuses_in_the_phase_fails_at_the_write_with_kongs_message() {
    // kong.service.request.set_header is rewrite/access only: in response Kong raises.
    let outcome = run(
        &[],
        &[
            "response-set x-r 1",
            "response-set x-s 2",
            "set x-a 1",
            "get x-never",
        ],
        TestRequest::get("/").upstream_response(UpstreamResponse::new(200)),
    );
    assert_eq!(
        calls(&outcome),
        [
            r#"kong.response.set_headers {"x-r": ["1"], "x-s": ["2"]}"#,
            r#"kong.service.request.set_header "x-a" "1""#,
        ]
    );
    let failure = &outcome.failures[0];
    assert_eq!(failure.kind, FailureKind::Kong);
    assert_eq!(failure.phase, Phase::Response);
    assert!(
        failure
            .message
            .starts_with("kong.service.request.set_header: "),
        "{}",
        failure.message
    );
}

#[test]
fn a_write_after_the_exit_fails_at_the_write_as_the_event_is_over() {
    let outcome = run(&["exit", "set x-a 1"], &[], TestRequest::get("/"));
    let methods: Vec<&str> = outcome.calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["kong.response.exit"]);

    // Through `into_result`, the plugin that goes on writing gets EventEnded at the write.
    struct AfterExit;
    #[derive(Deserialize, Schema)]
    struct Empty {}
    #[plugin(name = "harness-after-exit", priority = 10)]
    impl Plugin for AfterExit {
        type Config = Empty;
        fn new(_: Empty) -> Result<Self> {
            Ok(AfterExit)
        }
        fn access(&self, kong: &Kong) -> Result<()> {
            kong.response.exit(403, "no", None).into_result()?;
            let error = kong.service.request.set_header("x-a", "1").unwrap_err();
            assert_eq!(error.kind(), ErrorKind::EventEnded);
            kong.log.err("not reached")
        }
    }
    let outcome = PluginTest::<AfterExit>::new("{}")
        .unwrap()
        .run(TestRequest::get("/"));
    let methods: Vec<&str> = outcome.calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "kong.response.exit",
            "kong.service.request.set_header",
            "kong.log.err"
        ]
    );
}

/// Reads four headers with `get_headers_named`, then each with `get_header`, and logs both.
struct Reader;

#[plugin(name = "harness-header-reader", priority = 10)]
impl Plugin for Reader {
    type Config = Config;

    fn new(_: Config) -> Result<Self> {
        Ok(Reader)
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        let names = ["X-Twice", "x-once", "x-empty", "x-missing"];
        let named = kong.request.get_headers_named(names)?;
        let one_by_one = names
            .iter()
            .map(|name| kong.request.get_header(name))
            .collect::<Result<Vec<_>>>()?;
        kong.log.notice(format!("{named:?} {one_by_one:?}"))
    }
}

#[test]
fn several_request_headers_are_read_in_one_call_with_get_headers_values() {
    let outcome = PluginTest::<Reader>::new("{}").unwrap().run(
        TestRequest::get("/")
            .header("x-twice", "first")
            .header("X-TWICE", "second")
            .header("X-Once", "1")
            .header("x-empty", ""),
    );
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert_eq!(
        calls(&outcome)[0],
        "kong.request.get_headers 1000",
        "one round trip for the four names"
    );
    let expected = r#"[Some("first"), Some("1"), Some(""), None]"#;
    assert_eq!(
        outcome.logs_at(kong_rust_pdk_test::LogLevel::Notice),
        [format!("{expected} {expected}")]
    );
}
