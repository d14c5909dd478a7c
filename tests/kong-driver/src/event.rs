//! The event ("bridge") loop Kong runs for one phase of one plugin (protocol.md §8, §11.1).

use rmpv::Value;

use crate::client::{KongClient, StepData};
use crate::error::Result;
use crate::value::LuaValue;
use crate::wire::{lua_bytes, lua_integer};

/// Answers PDK calls the way Kong's PDK would for one request.
pub trait PdkResponder {
    /// The first return value of `method(args...)`; `None` is Lua nil, which Kong
    /// sends as a step without `Data`. Terminal methods (`kong.response.exit` and
    /// `kong.response.error`) are also passed here so the responder can record
    /// them, but their result is discarded.
    fn respond(&mut self, method: &str, args: &[Value]) -> Option<LuaValue>;
}

/// One PDK call a plugin made.
#[derive(Debug, Clone, PartialEq)]
pub struct PdkCall {
    /// The dotted PDK name.
    pub method: String,
    /// The positional arguments as Kong spread them.
    pub args: Vec<Value>,
}

/// A terminal `kong.response.exit(status, body, headers)` or
/// `kong.response.error(status, message, headers)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    /// `kong.response.exit` or `kong.response.error`.
    pub method: String,
    /// The arguments as passed.
    pub args: Vec<Value>,
}

impl Exit {
    /// The status code, if the first argument is an integer.
    pub fn status(&self) -> Option<i64> {
        self.args.first().and_then(lua_integer)
    }

    /// The body (exit) or message (error) argument, if any.
    pub fn body(&self) -> Option<&Value> {
        self.args.get(1).filter(|v| !v.is_nil())
    }

    /// The body as bytes when it is a string or bin.
    pub fn body_bytes(&self) -> Option<&[u8]> {
        self.body().and_then(lua_bytes)
    }

    /// The headers argument (a map), if any.
    pub fn headers(&self) -> Option<&Value> {
        self.args.get(2).filter(|v| !v.is_nil())
    }

    /// A header value from the headers map, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&Value> {
        let Some(Value::Map(entries)) = self.headers() else {
            return None;
        };
        entries
            .iter()
            .find(|(k, _)| lua_bytes(k).is_some_and(|k| k.eq_ignore_ascii_case(name.as_bytes())))
            .map(|(_, v)| v)
    }
}

/// How an event ended from Kong's point of view.
#[derive(Debug, Clone, PartialEq)]
pub enum EventEnd {
    /// The server answered `"ret"`.
    Ret,
    /// The plugin called a terminal PDK method; Kong sends no further step.
    Exit(Exit),
    /// Kong raised a Lua error while serving a call (e.g. a raw body that is nil
    /// cannot be packed), so the event died without a step.
    Aborted(String),
}

/// Everything that happened during one event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventOutcome {
    /// The event id of the last reply.
    pub event_id: i64,
    /// The PDK calls in order, including a terminal one.
    pub calls: Vec<PdkCall>,
    /// How the event ended.
    pub end: EventEnd,
}

impl EventOutcome {
    /// The exit, if the event ended with one.
    pub fn exit(&self) -> Option<&Exit> {
        match &self.end {
            EventEnd::Exit(e) => Some(e),
            _ => None,
        }
    }
}

/// The step method Kong uses to return the result of `pdk_method` (protocol.md §7.4).
pub fn step_method_for(pdk_method: &str) -> &'static str {
    match pdk_method {
        "kong.client.get_credential" | "kong.client.authenticate" => "plugin.StepCredential",
        "kong.client.load_consumer" | "kong.client.get_consumer" => "plugin.StepConsumer",
        "kong.node.get_memory_stats" => "plugin.StepMemoryStats",
        "kong.router.get_route" => "plugin.StepRoute",
        "kong.router.get_service" => "plugin.StepService",
        m if is_multimap_method(m) => "plugin.StepMultiMap",
        _ => "plugin.Step",
    }
}

/// Whether Kong stops the event after this call (no step is sent).
pub fn is_terminal(pdk_method: &str) -> bool {
    matches!(pdk_method, "kong.response.exit" | "kong.response.error")
}

fn is_multimap_method(m: &str) -> bool {
    matches!(
        m,
        "kong.request.get_query"
            | "kong.request.get_headers"
            | "kong.response.get_headers"
            | "kong.service.response.get_headers"
    )
}

/// Kong's post-processing of a PDK result (protocol.md §11.1 step 4). `Err` is the Lua error
/// Kong would raise.
pub fn kong_fixup(
    pdk_method: &str,
    result: Option<LuaValue>,
) -> std::result::Result<Option<LuaValue>, String> {
    if is_multimap_method(pdk_method) {
        return Ok(result.map(fix_multimap));
    }
    if matches!(
        pdk_method,
        "kong.request.get_raw_body"
            | "kong.response.get_raw_body"
            | "kong.service.response.get_raw_body"
    ) {
        return match result {
            Some(LuaValue::Str(b)) => Ok(Some(LuaValue::Bin(b))),
            Some(b @ LuaValue::Bin(_)) => Ok(Some(b)),
            other => Err(format!(
                "{pdk_method} returned {other:?}: cannot pack as bin"
            )),
        };
    }
    Ok(result)
}

/// Strings become 1-element arrays, `true` an empty array, arrays stay; an empty
/// table is sent as an empty map.
fn fix_multimap(v: LuaValue) -> LuaValue {
    let fix = |v: LuaValue| match v {
        LuaValue::Str(s) => LuaValue::Array(vec![LuaValue::Str(s)]),
        LuaValue::Bool(true) => LuaValue::Array(Vec::new()),
        other => other,
    };
    match v {
        LuaValue::Map(entries) if !entries.is_empty() => {
            LuaValue::Map(entries.into_iter().map(|(k, v)| (k, fix(v))).collect())
        }
        LuaValue::Array(items) if !items.is_empty() => {
            LuaValue::Array(items.into_iter().map(fix).collect())
        }
        LuaValue::Map(_) | LuaValue::Array(_) | LuaValue::EmptyMap => LuaValue::EmptyMap,
        other => other,
    }
}

/// Drives one event as Kong's bridge loop does: HandleEvent, then one step per
/// PDK call with the responder's (fixed-up) result, until `"ret"`, a terminal
/// call, or a Kong-side Lua error. Each call goes through the client's pool, so
/// consecutive calls may use different connections.
pub async fn run_event(
    client: &KongClient,
    instance_id: i64,
    phase: &str,
    responder: &mut impl PdkResponder,
) -> Result<EventOutcome> {
    let mut reply = client.handle_event(instance_id, phase).await?;
    let mut calls = Vec::new();
    loop {
        let event_id = reply.event_id;
        let outcome = |calls, end| EventOutcome {
            event_id,
            calls,
            end,
        };
        let StepData::Call { method, args, .. } = reply.data else {
            return Ok(outcome(calls, EventEnd::Ret));
        };
        let result = responder.respond(&method, &args);
        calls.push(PdkCall {
            method: method.clone(),
            args: args.clone(),
        });
        if is_terminal(&method) {
            return Ok(outcome(calls, EventEnd::Exit(Exit { method, args })));
        }
        let data = match kong_fixup(&method, result) {
            Ok(data) => data,
            Err(lua_error) => return Ok(outcome(calls, EventEnd::Aborted(lua_error))),
        };
        reply = client
            .step(step_method_for(&method), event_id, data)
            .await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Request;
    use crate::sim::SimRequest;
    use crate::testutil::{hex, scripted_server, socket_path};
    use std::time::Duration;

    #[test]
    fn step_methods() {
        assert_eq!(
            step_method_for("kong.client.authenticate"),
            "plugin.StepCredential"
        );
        assert_eq!(
            step_method_for("kong.client.load_consumer"),
            "plugin.StepConsumer"
        );
        assert_eq!(
            step_method_for("kong.node.get_memory_stats"),
            "plugin.StepMemoryStats"
        );
        assert_eq!(step_method_for("kong.router.get_route"), "plugin.StepRoute");
        assert_eq!(
            step_method_for("kong.router.get_service"),
            "plugin.StepService"
        );
        assert_eq!(
            step_method_for("kong.service.response.get_headers"),
            "plugin.StepMultiMap"
        );
        assert_eq!(step_method_for("kong.request.get_header"), "plugin.Step");
        assert_eq!(step_method_for("kong.nope"), "plugin.Step");
    }

    /// protocol.md §15.2 steps 1, 3, 5 and §15.3's step frames, byte for byte.
    #[test]
    fn spec_request_bytes() {
        assert_eq!(
            Request::handle_event(7, "access").encode(2),
            hex(
                r#"94 00 02 b2 "plugin.HandleEvent" 91 82 aa "InstanceId" 07 a9 "EventName" a6 "access""#
            )
        );
        assert_eq!(
            Request::step("plugin.Step", 0, Some(LuaValue::str("example.com"))).encode(3),
            hex(r#"94 00 03 ab "plugin.Step" 91 82 a7 "EventId" 00 a4 "Data" ab "example.com""#)
        );
        assert_eq!(
            Request::step("plugin.Step", 0, None).encode(4),
            hex(r#"94 00 04 ab "plugin.Step" 91 81 a7 "EventId" 00"#)
        );
        let headers = LuaValue::multimap([("host", vec!["example.com"]), ("accept", vec!["*/*"])]);
        assert_eq!(
            Request::step("plugin.StepMultiMap", 0, Some(headers)).encode(5),
            hex(
                r#"94 00 05 b3 "plugin.StepMultiMap" 91 82 a7 "EventId" 00 a4 "Data" 82 a4 "host" 91 ab "example.com" a6 "accept" 91 a3 "*/*""#
            )
        );
        let empty = kong_fixup("kong.request.get_headers", Some(LuaValue::Map(vec![])));
        assert_eq!(
            Request::step("plugin.StepMultiMap", 0, empty.unwrap()).encode(5),
            hex(r#"94 00 05 b3 "plugin.StepMultiMap" 91 82 a7 "EventId" 00 a4 "Data" 80"#)
        );
        let flag = kong_fixup(
            "kong.request.get_query",
            Some(LuaValue::map([("debug", true)])),
        );
        assert_eq!(
            flag.unwrap().unwrap().to_bytes(),
            hex(r#"81 a5 "debug" 90"#)
        );
        let body = kong_fixup(
            "kong.request.get_raw_body",
            Some(LuaValue::str([0, 1, b'h', b'i'])),
        );
        assert_eq!(
            Request::step("plugin.Step", 0, body.unwrap()).encode(6),
            hex(r#"94 00 06 ab "plugin.Step" 91 82 a7 "EventId" 00 a4 "Data" c4 04 00 01 68 69"#)
        );
        assert!(kong_fixup("kong.request.get_raw_body", None).is_err());
    }

    /// A fake server answering with protocol.md §15's server bytes; afterwards we check it
    /// received exactly §15.1/§15.2's Kong bytes.
    #[tokio::test]
    async fn runs_spec_event_against_fake_server() {
        let path = socket_path("event");
        let received = scripted_server(
            &path,
            vec![
                hex(
                    r#"94 01 01 c0 83 a2 "Id" 07 a4 "Name" aa "rust-hello" a9 "StartTime" ce 66 66 99 80"#,
                ),
                hex(
                    r#"94 01 02 c0 82 a7 "EventId" 00 a4 "Data" 82 a6 "Method" b7 "kong.request.get_header" a4 "Args" 91 a4 "host""#,
                ),
                hex(
                    r#"94 01 03 c0 82 a7 "EventId" 00 a4 "Data" 82 a6 "Method" b8 "kong.response.set_header" a4 "Args" 92 a7 "x-hello" bb "Rust says hi to example.com""#,
                ),
                hex(r#"94 01 04 c0 82 a7 "EventId" 00 a4 "Data" a3 "ret""#),
            ],
        );
        let client = KongClient::new(&path);
        client.set_read_timeout(Duration::from_secs(5));
        let start = client
            .start_instance("rust-hello", SPEC_CONFIG)
            .await
            .unwrap();
        assert_eq!(start.id, 7);
        let mut sim = SimRequest::new().header("Host", "example.com");
        let outcome = run_event(&client, start.id, "access", &mut sim)
            .await
            .unwrap();
        assert_eq!(outcome.end, EventEnd::Ret);
        assert_eq!(outcome.event_id, 0);
        let methods: Vec<_> = outcome.calls.iter().map(|c| c.method.as_str()).collect();
        assert_eq!(
            methods,
            ["kong.request.get_header", "kong.response.set_header"]
        );
        assert_eq!(
            sim.response_headers().get_str("x-hello"),
            Some("Rust says hi to example.com")
        );
        assert_eq!(client.server_pid(), Some(12345));
        assert_eq!(client.connections_opened(), 1);
        let received = received.lock().unwrap().clone();
        assert_eq!(received.len(), 4);
        assert_eq!(received[0].len(), 254);
        assert_eq!(received[0], hex(SPEC_START_INSTANCE_DUMP));
        assert_eq!(
            received[1],
            hex(
                r#"94 00 02 b2 "plugin.HandleEvent" 91 82 aa "InstanceId" 07 a9 "EventName" a6 "access""#
            )
        );
        assert_eq!(
            received[2],
            hex(r#"94 00 03 ab "plugin.Step" 91 82 a7 "EventId" 00 a4 "Data" ab "example.com""#)
        );
        assert_eq!(
            received[3],
            hex(r#"94 00 04 ab "plugin.Step" 91 81 a7 "EventId" 00"#)
        );
    }

    #[tokio::test]
    async fn exit_is_terminal_and_unknown_methods_get_no_data() {
        let path = socket_path("exit");
        let received = scripted_server(
            &path,
            vec![
                hex(
                    r#"94 01 01 c0 82 a7 "EventId" 09 a4 "Data" 82 a6 "Method" a8 "kong.foo" a4 "Args" 91 01"#,
                ),
                hex(
                    r#"94 01 02 c0 82 a7 "EventId" 09 a4 "Data" 82 a6 "Method" b2 "kong.response.exit" a4 "Args" 93 cd 01 93 a4 "nope" 81 a3 "X-A" a1 "b""#,
                ),
            ],
        );
        let client = KongClient::new(&path);
        let mut sim = SimRequest::new();
        let outcome = run_event(&client, 3, "access", &mut sim).await.unwrap();
        let exit = outcome.exit().expect("ended by exit");
        assert_eq!(exit.status(), Some(403));
        assert_eq!(exit.body_bytes(), Some(&b"nope"[..]));
        assert_eq!(exit.header("x-a"), Some(&Value::from("b")));
        assert_eq!(sim.exit(), Some(exit));
        assert_eq!(sim.unknown_calls().len(), 1);
        assert_eq!(outcome.event_id, 9);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let received = received.lock().unwrap().clone();
        assert_eq!(received.len(), 2, "no step after exit");
        assert_eq!(
            received[1],
            hex(r#"94 00 02 ab "plugin.Step" 91 81 a7 "EventId" 09"#)
        );
    }

    const SPEC_CONFIG: &str = r#"{"message":"hi","__key__":"plugins:rust-hello:::::0dc6f45b-8f8d-40d2-a504-473544ee190b","__plugin_id":"4a2a7b3c-9d5e-4f61-8a7b-1c2d3e4f5a6b","__ws_id":"0dc6f45b-8f8d-40d2-a504-473544ee190b","__seq__":7}"#;

    /// The bytes of protocol.md §15.1, as a hex dump.
    const SPEC_START_INSTANCE_DUMP: &str = "
        94 00 01 b4 70 6c 75 67 69 6e 2e 53 74 61 72 74
        49 6e 73 74 61 6e 63 65 91 82 a4 4e 61 6d 65 aa
        72 75 73 74 2d 68 65 6c 6c 6f a6 43 6f 6e 66 69
        67 da 00 ca 7b 22 6d 65 73 73 61 67 65 22 3a 22
        68 69 22 2c 22 5f 5f 6b 65 79 5f 5f 22 3a 22 70
        6c 75 67 69 6e 73 3a 72 75 73 74 2d 68 65 6c 6c
        6f 3a 3a 3a 3a 3a 30 64 63 36 66 34 35 62 2d 38
        66 38 64 2d 34 30 64 32 2d 61 35 30 34 2d 34 37
        33 35 34 34 65 65 31 39 30 62 22 2c 22 5f 5f 70
        6c 75 67 69 6e 5f 69 64 22 3a 22 34 61 32 61 37
        62 33 63 2d 39 64 35 65 2d 34 66 36 31 2d 38 61
        37 62 2d 31 63 32 64 33 65 34 66 35 61 36 62 22
        2c 22 5f 5f 77 73 5f 69 64 22 3a 22 30 64 63 36
        66 34 35 62 2d 38 66 38 64 2d 34 30 64 32 2d 61
        35 30 34 2d 34 37 33 35 34 34 65 65 31 39 30 62
        22 2c 22 5f 5f 73 65 71 5f 5f 22 3a 37 7d";

    #[test]
    fn start_instance_matches_spec_dump() {
        let bytes = Request::start_instance("rust-hello", SPEC_CONFIG).encode(1);
        assert_eq!(bytes.len(), 254);
        assert_eq!(bytes, hex(SPEC_START_INSTANCE_DUMP));
    }
}
