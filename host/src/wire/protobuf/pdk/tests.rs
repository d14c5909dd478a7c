//! The PDK over ProtoBuf:1 against a fake Kong: the frames each call sends, and the MessagePack
//! it gives the PDK for Kong's replies, compared with what Kong's MsgPack:1 would carry
//! (expectations written from Kong's Lua: `pb_rpc.lua`, `mp_rpc.lua`, `kong/pdk/*.lua`).

use super::*;
use prost_types::{value::Kind, ListValue, Struct};
use std::collections::{BTreeMap, VecDeque};

/// Kong's side of the event's connection: answers each round trip with the next canned reply
/// frame and records what the call sent.
#[derive(Default)]
struct FakeKong {
    replies: VecDeque<Vec<u8>>,
    sent: Sent,
}

/// The round trips a call made: method name and argument frame.
type Sent = Vec<(String, Vec<u8>)>;

impl RoundTrip for FakeKong {
    fn round_trip(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, HostError> {
        self.sent.push((method.to_string(), args.to_vec()));
        Ok(self
            .replies
            .pop_front()
            .unwrap_or_else(|| panic!("no reply left for {method}")))
    }
}

fn msgpack(value: &Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, value).unwrap();
    bytes
}

/// Runs `method(args)` with Kong answering `replies` in order; the decoded result and the
/// frames sent.
fn run(method: &str, args: Vec<Value>, replies: Vec<Vec<u8>>) -> (Result<Value, HostError>, Sent) {
    let (result, sent) = run_to_bytes(method, args, replies);
    let result = result.map(|bytes| rmpv::decode::read_value(&mut bytes.as_slice()).unwrap());
    (result, sent)
}

/// As `run`, with the MessagePack bytes the PDK receives.
fn run_to_bytes(
    method: &str,
    args: Vec<Value>,
    replies: Vec<Vec<u8>>,
) -> (Result<Vec<u8>, HostError>, Sent) {
    let mut kong = FakeKong {
        replies: replies.into(),
        sent: Vec::new(),
    };
    let result = call(&mut kong, method, &msgpack(&Value::Array(args)));
    assert!(kong.replies.is_empty(), "{method} left replies unread");
    (result, kong.sent)
}

fn string(v: &str) -> Vec<u8> {
    pb::String { v: v.into() }.encode_to_vec()
}

fn value(kind: Kind) -> prost_types::Value {
    prost_types::Value { kind: Some(kind) }
}

fn text(v: &str) -> prost_types::Value {
    value(Kind::StringValue(v.into()))
}

fn strct(fields: Vec<(&str, prost_types::Value)>) -> Struct {
    Struct {
        fields: fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

fn strs(values: &[&str]) -> Value {
    Value::Array(values.iter().map(|v| Value::from(*v)).collect())
}

#[test]
fn a_header_read_sends_the_name_as_a_string_message_and_returns_msgpack_str() {
    let (result, sent) = run(
        "kong.request.get_header",
        vec![Value::from("host")],
        vec![string("example.com")],
    );
    // String{v: "host"}: field 1, length-delimited, 4 bytes.
    assert_eq!(
        sent,
        vec![(
            "kong.request.get_header".to_string(),
            vec![0x0a, 4, b'h', b'o', b's', b't']
        )]
    );
    assert_eq!(result.unwrap(), Value::from("example.com"));
}

#[test]
fn an_absent_header_comes_back_from_kong_as_an_empty_frame_and_reads_as_nil() {
    // pb_rpc wraps nil as {v = nil}, which encodes to zero bytes; MsgPack:1 sends no Data.
    let (result, _) = run(
        "kong.request.get_header",
        vec![Value::from("x-missing")],
        vec![Vec::new()],
    );
    assert_eq!(result.unwrap(), Value::Nil);
    let (result, _) = run("kong.request.get_path", vec![], vec![Vec::new()]);
    assert_eq!(result.unwrap(), Value::from(""), "a path is never nil");
}

#[test]
fn a_header_value_that_is_not_utf8_reaches_the_pdk_as_the_same_str_bytes() {
    let reply = pb::String {
        v: vec![b'c', b'a', b'f', 0xe9],
    }
    .encode_to_vec();
    let (result, _) = run_to_bytes(
        "kong.request.get_header",
        vec![Value::from("x-name")],
        vec![reply],
    );
    // fixstr of 4 bytes, as lua-MessagePack packs any Lua string.
    assert_eq!(result.unwrap(), vec![0xa4, b'c', b'a', b'f', 0xe9]);
}

/// Each argument message shape, as Kong's `pb_unwrap` reads it.
#[test]
fn every_argument_shape_encodes_the_message_kong_unwraps_into_the_same_arguments() {
    let cases: Vec<(&str, Vec<Value>, Vec<u8>)> = vec![
        ("kong.client.get_ip", vec![], vec![]),
        // Kong's own default max: proto3 would send 0, which Kong's get_headers rejects.
        (
            "kong.request.get_headers",
            vec![],
            pb::Int { v: 100 }.encode_to_vec(),
        ),
        (
            "kong.request.get_query",
            vec![Value::from(7)],
            vec![0x08, 7],
        ),
        (
            "kong.client.get_protocol",
            vec![Value::from(true)],
            vec![0x08, 1],
        ),
        (
            "kong.ctx.shared.set",
            vec![Value::from("k"), Value::from(1.5)],
            pb::Kv {
                k: "k".into(),
                v: Some(value(Kind::NumberValue(1.5))),
            }
            .encode_to_vec(),
        ),
        // nil travels as a Value without a kind: Kong reads null_value as "NULL_VALUE".
        (
            "kong.ctx.shared.set",
            vec![Value::from("k"), Value::Nil],
            pb::Kv {
                k: "k".into(),
                v: Some(prost_types::Value { kind: None }),
            }
            .encode_to_vec(),
        ),
        (
            "kong.service.request.set_headers",
            vec![map(vec![("x-a", strs(&["1", "2"]))])],
            strct(vec![(
                "x-a",
                value(Kind::ListValue(ListValue {
                    values: vec![text("1"), text("2")],
                })),
            )])
            .encode_to_vec(),
        ),
        (
            "kong.log.notice",
            vec![Value::from("hello"), Value::from(3)],
            ListValue {
                values: vec![text("hello"), value(Kind::NumberValue(3.0))],
            }
            .encode_to_vec(),
        ),
        (
            "kong.service.request.set_raw_body",
            vec![Value::Binary(vec![0, 0xff])],
            vec![0x0a, 2, 0, 0xff],
        ),
        (
            "kong.response.exit",
            vec![
                Value::from(403),
                Value::from("no"),
                map(vec![("x-why", strs(&["key"]))]),
            ],
            pb::ExitArgs {
                status: 403,
                body: b"no".to_vec(),
                headers: Some(strct(vec![(
                    "x-why",
                    value(Kind::ListValue(ListValue {
                        values: vec![text("key")],
                    })),
                )])),
            }
            .encode_to_vec(),
        ),
        (
            "kong.service.set_target",
            vec![Value::from("10.0.0.1"), Value::from(8080)],
            pb::Target {
                host: "10.0.0.1".into(),
                port: 8080,
            }
            .encode_to_vec(),
        ),
        (
            "kong.client.load_consumer",
            vec![Value::from("alice"), Value::from(true)],
            pb::ConsumerSpec {
                id: "alice".into(),
                by_username: true,
            }
            .encode_to_vec(),
        ),
        (
            "kong.client.authenticate",
            vec![
                map(vec![
                    ("id", Value::from("c1")),
                    ("username", Value::from("alice")),
                ]),
                map(vec![
                    ("id", Value::from("k1")),
                    ("consumer", map(vec![("id", Value::from("c1"))])),
                ]),
            ],
            pb::AuthenticateArgs {
                consumer: Some(pb::Consumer {
                    id: "c1".into(),
                    username: "alice".into(),
                    ..Default::default()
                }),
                credential: Some(pb::AuthenticatedCredential {
                    id: "k1".into(),
                    consumer_id: "c1".into(),
                }),
            }
            .encode_to_vec(),
        ),
    ];
    for (method, args, expected) in cases {
        let (result, sent) = run(method, args, vec![Vec::new()]);
        result.unwrap_or_else(|error| panic!("{method}: {}", error.message));
        assert_eq!(sent, vec![(method.to_string(), expected)], "{method}");
    }
}

/// Each result message shape, as the MessagePack lua-MessagePack would pack the same Lua value.
#[test]
fn every_result_shape_decodes_to_the_msgpack_that_kong_msgpack_would_carry() {
    let cases: Vec<(&str, Vec<u8>, Value)> = vec![
        (
            "kong.client.get_port",
            pb::Int { v: 443 }.encode_to_vec(),
            Value::from(443),
        ),
        (
            "kong.service.response.get_status",
            Vec::new(),
            Value::from(0),
        ),
        // Lua numbers: integral ones pack as integers, others as doubles.
        (
            "kong.nginx.req_start_time",
            pb::Number { v: 1700000000.25 }.encode_to_vec(),
            Value::F64(1700000000.25),
        ),
        (
            "kong.request.get_http_version",
            pb::Number { v: 1.1 }.encode_to_vec(),
            Value::F64(1.1),
        ),
        (
            "kong.request.get_http_version",
            pb::Number { v: 2.0 }.encode_to_vec(),
            Value::from(2),
        ),
        ("kong.request.get_http_version", Vec::new(), Value::Nil),
        (
            "kong.ip.is_trusted",
            pb::Bool { v: true }.encode_to_vec(),
            Value::from(true),
        ),
        ("kong.ip.is_trusted", Vec::new(), Value::from(false)),
        // set_upstream returns true or nil.
        ("kong.service.set_upstream", Vec::new(), Value::Nil),
        (
            "kong.service.set_upstream",
            vec![0x08, 1],
            Value::from(true),
        ),
        ("kong.response.set_status", Vec::new(), Value::Nil),
        (
            "kong.log.serialize",
            string("{\"a\":1}"),
            Value::from("{\"a\":1}"),
        ),
        // ctx values: nil as null_value (Kong sends 1), numbers, strings, tables.
        (
            "kong.ctx.shared.get",
            value(Kind::NullValue(1)).encode_to_vec(),
            Value::Nil,
        ),
        (
            "kong.ctx.shared.get",
            value(Kind::NumberValue(42.0)).encode_to_vec(),
            Value::from(42),
        ),
        (
            "kong.ctx.shared.get",
            value(Kind::NumberValue(-0.5)).encode_to_vec(),
            Value::F64(-0.5),
        ),
        (
            "kong.ctx.shared.get",
            value(Kind::NumberValue(1e300)).encode_to_vec(),
            Value::F64(1e300),
        ),
        (
            "kong.ctx.shared.get",
            value(Kind::BoolValue(false)).encode_to_vec(),
            Value::from(false),
        ),
        (
            "kong.nginx.get_ctx",
            value(Kind::StructValue(strct(vec![
                ("n", value(Kind::NumberValue(3.0))),
                (
                    "l",
                    value(Kind::ListValue(ListValue {
                        values: vec![text("a"), value(Kind::BoolValue(true))],
                    })),
                ),
            ])))
            .encode_to_vec(),
            map(vec![
                ("l", Value::Array(vec![Value::from("a"), Value::from(true)])),
                ("n", Value::from(3)),
            ]),
        ),
        // An empty Lua table: a struct over ProtoBuf, an empty array over MsgPack.
        (
            "kong.nginx.get_ctx",
            value(Kind::StructValue(Struct::default())).encode_to_vec(),
            Value::Array(vec![]),
        ),
        // Multi-maps: str -> [str], true -> [], lists as they are; empty -> empty map.
        (
            "kong.request.get_query",
            strct(vec![
                ("a", text("1")),
                ("flag", value(Kind::BoolValue(true))),
                (
                    "r",
                    value(Kind::ListValue(ListValue {
                        values: vec![text("1"), text("2")],
                    })),
                ),
            ])
            .encode_to_vec(),
            map(vec![
                ("a", strs(&["1"])),
                ("flag", Value::Array(vec![])),
                ("r", strs(&["1", "2"])),
            ]),
        ),
        ("kong.response.get_headers", Vec::new(), Value::Map(vec![])),
        (
            "kong.request.get_raw_body",
            pb::RawBodyResult {
                kind: Some(pb::raw_body_result::Kind::Content(b"{}".to_vec())),
            }
            .encode_to_vec(),
            Value::Binary(b"{}".to_vec()),
        ),
        (
            "kong.request.get_raw_body",
            pb::RawBodyResult {
                kind: Some(pb::raw_body_result::Kind::Content(Vec::new())),
            }
            .encode_to_vec(),
            Value::Binary(Vec::new()),
        ),
        (
            "kong.service.response.get_raw_body",
            pb::ByteString { v: b"up".to_vec() }.encode_to_vec(),
            Value::Binary(b"up".to_vec()),
        ),
        (
            "kong.request.get_uri_captures",
            pb::UriCapturesResult {
                unnamed: vec![b"/users/7".to_vec(), b"7".to_vec()],
                named: [("id".to_string(), b"7".to_vec())].into(),
            }
            .encode_to_vec(),
            map(vec![
                ("unnamed", strs(&["/users/7", "7"])),
                ("named", map(vec![("id", Value::from("7"))])),
            ]),
        ),
        (
            "kong.request.get_uri_captures",
            Vec::new(),
            map(vec![
                ("unnamed", Value::Array(vec![])),
                ("named", Value::Array(vec![])),
            ]),
        ),
        // Entities: proto3 defaults are fields Kong's table did not have; empty is nil.
        ("kong.client.get_consumer", Vec::new(), Value::Nil),
        (
            "kong.client.load_consumer",
            pb::Consumer {
                id: "c1".into(),
                created_at: 1700000000,
                username: "alice".into(),
                custom_id: String::new(),
                tags: vec!["t".into()],
            }
            .encode_to_vec(),
            map(vec![
                ("id", Value::from("c1")),
                ("created_at", Value::from(1700000000)),
                ("username", Value::from("alice")),
                ("tags", strs(&["t"])),
            ]),
        ),
        (
            "kong.client.get_credential",
            pb::AuthenticatedCredential {
                id: "k1".into(),
                consumer_id: "c1".into(),
            }
            .encode_to_vec(),
            map(vec![
                ("id", Value::from("k1")),
                ("consumer", map(vec![("id", Value::from("c1"))])),
            ]),
        ),
        (
            "kong.router.get_route",
            pb::Route {
                id: "r1".into(),
                paths: vec!["/".into()],
                strip_path: true,
                service: Some(pb::ServiceKey { id: "s1".into() }),
                ..Default::default()
            }
            .encode_to_vec(),
            map(vec![
                ("id", Value::from("r1")),
                ("paths", strs(&["/"])),
                ("strip_path", Value::from(true)),
                ("service", map(vec![("id", Value::from("s1"))])),
            ]),
        ),
        ("kong.router.get_service", Vec::new(), Value::Nil),
        (
            "kong.router.get_service",
            pb::Service {
                id: "s1".into(),
                host: "up".into(),
                port: 80,
                ..Default::default()
            }
            .encode_to_vec(),
            map(vec![
                ("id", Value::from("s1")),
                ("host", Value::from("up")),
                ("port", Value::from(80)),
            ]),
        ),
    ];
    for (method, reply, expected) in cases {
        let args = match method {
            "kong.client.load_consumer" => vec![Value::from("c1")],
            "kong.ctx.shared.get" | "kong.nginx.get_ctx" => vec![Value::from("k")],
            "kong.ip.is_trusted" | "kong.service.set_upstream" => vec![Value::from("x")],
            "kong.response.set_status" => vec![Value::from(204)],
            _ => vec![],
        };
        let (result, _) = run(method, args, vec![reply]);
        let result = result.unwrap_or_else(|error| panic!("{method}: {}", error.message));
        assert_eq!(result, expected, "{method}");
    }
}

#[test]
fn memory_stats_keep_kongs_shape() {
    use pb::memory_stats::{lua_shared_dicts::DictStats, LuaSharedDicts, WorkerLuaVm};
    let reply = pb::MemoryStats {
        lua_shared_dicts: Some(LuaSharedDicts {
            kong: Some(DictStats {
                allocated_slabs: 12288,
                capacity: 5242880,
            }),
            kong_db_cache: None,
        }),
        workers_lua_vms: vec![WorkerLuaVm {
            http_allocated_gc: 1024,
            pid: 77,
        }],
    };
    let (result, _) = run(
        "kong.node.get_memory_stats",
        vec![],
        vec![reply.encode_to_vec()],
    );
    let dict = |slabs: i64, capacity: i64| {
        map(vec![
            ("allocated_slabs", Value::from(slabs)),
            ("capacity", Value::from(capacity)),
        ])
    };
    assert_eq!(
        result.unwrap(),
        map(vec![
            (
                "lua_shared_dicts",
                // The dict Kong did not report is left out, not zero.
                map(vec![("kong", dict(12288, 5242880))])
            ),
            (
                "workers_lua_vms",
                Value::Array(vec![map(vec![
                    ("http_allocated_gc", Value::from(1024)),
                    ("pid", Value::from(77)),
                ])])
            ),
        ])
    );
}

#[test]
fn a_body_kong_keeps_in_a_file_fails_the_call_with_the_reason() {
    let reply = pb::RawBodyResult {
        kind: Some(pb::raw_body_result::Kind::BodyFilepath(
            "/tmp/client_body/1".into(),
        )),
    };
    let (result, _) = run(
        "kong.request.get_raw_body",
        vec![],
        vec![reply.encode_to_vec()],
    );
    let error = result.unwrap_err();
    assert_eq!(error.kind, HostErrorKind::Kong);
    assert!(
        error.message.contains("/tmp/client_body/1"),
        "{}",
        error.message
    );
}

#[test]
fn a_reply_that_is_not_the_result_message_fails_the_call_naming_the_method() {
    let (result, _) = run("kong.client.get_port", vec![], vec![vec![0xff, 0xff]]);
    let error = result.unwrap_err();
    assert_eq!(error.kind, HostErrorKind::Kong);
    assert!(
        error
            .message
            .starts_with("kong.client.get_port: Kong's ProtoBuf:1 reply is not a Int"),
        "{}",
        error.message
    );
}

#[test]
fn every_refused_method_fails_at_once_naming_the_method_the_protocol_and_msgpack() {
    let refused: Vec<&str> = METHODS
        .iter()
        .filter(|entry| matches!(entry.how, How::Refused))
        .map(|entry| entry.name)
        .chain(["kong.nginx.no_such_function"])
        .collect();
    assert!(refused.len() > 20);
    for method in refused {
        let (result, sent) = run(method, vec![Value::from("x")], vec![]);
        let error = result.unwrap_err();
        assert_eq!(error.kind, HostErrorKind::InvalidCall, "{method}");
        assert!(sent.is_empty(), "{method} made a round trip");
        for part in [method, "ProtoBuf:1", "serve this plugin with MsgPack:1"] {
            assert!(error.message.contains(part), "{method}: {}", error.message);
        }
    }
}

#[test]
fn the_table_lists_the_pdk_catalogue_in_order_and_exactly_the_methods_of_kongs_proto() {
    let catalogue = include_str!("../../../../../pdk-test/src/kong/catalogue.rs");
    let typed: Vec<&str> = catalogue
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("f(\"kong") || line.starts_with("unusable(\"kong"))
        .filter_map(|line| line.split('"').nth(1))
        .collect();
    let ours: Vec<&str> = METHODS.iter().map(|entry| entry.name).collect();
    assert_eq!(ours, typed);

    // Every method of Kong's .proto is ours and served natively, but for get_query_arg, which
    // Kong cannot answer for a flag (`true` does not fit its String) and is built on get_query.
    let mut served: Vec<&str> = METHODS
        .iter()
        .filter(|entry| matches!(entry.how, How::Native(..)))
        .map(|entry| entry.name)
        .chain(["kong.request.get_query_arg"])
        .collect();
    served.sort_unstable();
    let mut in_proto = proto_method_names();
    in_proto.sort();
    assert_eq!(in_proto.len(), 74);
    assert_eq!(served, in_proto);
    let refused = METHODS
        .iter()
        .filter(|entry| !matches!(entry.how, How::Native(..)))
        .count();
    assert_eq!(refused, METHODS.len() - 73);
}

/// The PDK names of `pdk.proto`'s rpcs, found as `pb_rpc.lua`'s `load_service` finds them: the
/// `MethodName` option, else `Kong.Service_Request_SetHeader` with `_` as `.` and each
/// lower-to-upper step (digits between) split by `_`, lower-cased.
fn proto_method_names() -> Vec<String> {
    let proto = include_str!("../../../../proto/pdk.proto");
    proto
        .lines()
        .map(str::trim)
        .filter_map(|line| line.strip_prefix("rpc "))
        .map(|line| {
            if let Some((_, name)) = line.split_once("(MethodName) = \"") {
                return name.split('"').next().unwrap().to_string();
            }
            let rpc = line.split('(').next().unwrap();
            let dotted = format!("Kong.{}", rpc.replace('_', "."));
            let chars: Vec<char> = dotted.chars().collect();
            let mut name = String::new();
            for (i, &c) in chars.iter().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    let before = chars[..i].iter().rev().skip_while(|c| c.is_ascii_digit());
                    if before.clone().next().is_some_and(char::is_ascii_lowercase) {
                        name.push('_');
                    }
                }
                name.push(c.to_ascii_lowercase());
            }
            name
        })
        .collect()
}

#[test]
fn exit_and_error_are_terminal_and_nothing_else_is() {
    assert!(is_terminal("kong.response.exit"));
    assert!(is_terminal("kong.response.error"));
    assert!(!is_terminal("kong.response.set_status"));
}

// Emulated methods: the round trips they make, and the result Kong's MsgPack:1 would give.

fn headers_reply(fields: Vec<(&str, &str)>) -> Vec<u8> {
    strct(fields.into_iter().map(|(k, v)| (k, text(v))).collect()).encode_to_vec()
}

fn exit_sent(sent: &(String, Vec<u8>)) -> pb::ExitArgs {
    assert_eq!(sent.0, "kong.response.exit");
    pb::ExitArgs::decode(sent.1.as_slice()).unwrap()
}

fn header_of(exit: &pb::ExitArgs, name: &str) -> Option<String> {
    match &exit.headers.as_ref()?.fields.get(name)?.kind {
        Some(Kind::StringValue(value)) => Some(value.clone()),
        _ => None,
    }
}

#[test]
fn response_error_without_accept_exits_with_kongs_json_body_and_the_request_id() {
    let (result, sent) = run(
        "kong.response.error",
        vec![Value::from(403)],
        vec![
            headers_reply(vec![("host", "example.com")]),
            string("abc123"),
            Vec::new(),
        ],
    );
    assert_eq!(result.unwrap(), Value::Nil);
    assert_eq!(sent[0].0, "kong.request.get_headers");
    assert_eq!(
        sent[1],
        ("kong.nginx.get_var".into(), string("kong_request_id"))
    );
    let exit = exit_sent(&sent[2]);
    assert_eq!(exit.status, 403);
    assert_eq!(
        String::from_utf8(exit.body.clone()).unwrap(),
        "{\n  \"message\":\"Forbidden\",\n  \"request_id\":\"abc123\"\n}"
    );
    assert_eq!(
        header_of(&exit, "Content-Type").as_deref(),
        Some("application/json; charset=utf-8")
    );
}

#[test]
fn response_error_follows_accept_by_quality() {
    let (_, sent) = run(
        "kong.response.error",
        vec![Value::from(401), Value::from("Who are you")],
        vec![
            headers_reply(vec![("accept", "application/json;q=0.5, text/html")]),
            string("rid"),
            Vec::new(),
        ],
    );
    let exit = exit_sent(&sent[2]);
    assert_eq!(
        header_of(&exit, "Content-Type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        String::from_utf8(exit.body).unwrap(),
        "<!doctype html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n    <title>Error</title>\n  </head>\n  <body>\n    <h1>Error</h1>\n    <p>Who are you.</p>\n    <p>request_id: rid</p>\n  </body>\n</html>\n"
    );
}

#[test]
fn response_error_with_a_content_type_header_uses_it_without_reading_accept() {
    let headers = map(vec![
        ("Content-Type", strs(&["text/plain"])),
        ("WWW-Authenticate", strs(&["Basic"])),
    ]);
    let (_, sent) = run(
        "kong.response.error",
        vec![Value::from(401), Value::from("Unauthorized"), headers],
        vec![string("rid"), Vec::new()],
    );
    assert_eq!(sent.len(), 2, "no get_headers round trip");
    let exit = exit_sent(&sent[1]);
    assert_eq!(
        String::from_utf8(exit.body.clone()).unwrap(),
        "Unauthorized\nrequest_id: rid\n"
    );
    assert_eq!(
        header_of(&exit, "Content-Type").as_deref(),
        Some("text/plain")
    );
    assert!(exit
        .headers
        .unwrap()
        .fields
        .contains_key("WWW-Authenticate"));
}

#[test]
fn response_error_to_a_grpc_request_has_no_body() {
    let (_, sent) = run(
        "kong.response.error",
        vec![Value::from(500)],
        vec![
            headers_reply(vec![("content-type", "application/grpc")]),
            pb::Number { v: 2.0 }.encode_to_vec(),
            Vec::new(),
        ],
    );
    assert_eq!(sent[1].0, "kong.request.get_http_version");
    let exit = exit_sent(&sent[2]);
    assert!(exit.body.is_empty());
    assert_eq!(
        header_of(&exit, "Content-Type").as_deref(),
        Some("application/grpc")
    );
}

#[test]
fn response_error_with_a_status_below_400_fails_before_any_round_trip() {
    let (result, sent) = run("kong.response.error", vec![Value::from(302)], vec![]);
    assert_eq!(result.unwrap_err().kind, HostErrorKind::InvalidCall);
    assert!(sent.is_empty());
}

fn raw_body_reply(body: &[u8]) -> Vec<u8> {
    pb::RawBodyResult {
        kind: Some(pb::raw_body_result::Kind::Content(body.to_vec())),
    }
    .encode_to_vec()
}

#[test]
fn request_get_body_decodes_json_as_cjson_and_lua_messagepack_would() {
    let (result, sent) = run(
        "kong.request.get_body",
        vec![],
        vec![
            string("application/json; charset=utf-8"),
            raw_body_reply(br#"{"n": 1, "f": 1.5, "big": 1e20, "none": null, "l": [], "o": {}}"#),
        ],
    );
    assert_eq!(
        sent[0],
        ("kong.request.get_header".into(), string("Content-Type"))
    );
    assert_eq!(sent[1], ("kong.request.get_raw_body".into(), Vec::new()));
    let result = result.unwrap();
    let field = |name: &str| {
        result
            .as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(field("n"), Value::from(1));
    assert_eq!(field("f"), Value::F64(1.5));
    assert_eq!(field("big"), Value::F64(1e20));
    assert_eq!(field("none"), Value::Nil);
    assert_eq!(field("l"), Value::Array(vec![]));
    assert_eq!(field("o"), Value::Array(vec![]));
}

#[test]
fn request_get_body_gives_nil_for_a_json_scalar_a_bad_document_or_no_content_type() {
    for body in [&b"\"text\""[..], b"{broken"] {
        let (result, _) = run(
            "kong.request.get_body",
            vec![Value::from("application/json")],
            vec![raw_body_reply(body)],
        );
        assert_eq!(result.unwrap(), Value::Nil);
    }
    let (result, sent) = run("kong.request.get_body", vec![], vec![Vec::new()]);
    assert_eq!(result.unwrap(), Value::Nil);
    assert_eq!(sent.len(), 1, "no body read without a content type");
}

#[test]
fn request_get_body_decodes_a_form_as_ngx_get_post_args() {
    let (result, _) = run(
        "kong.request.get_body",
        vec![Value::from("application/x-www-form-urlencoded")],
        vec![raw_body_reply(b"a=1&b=x+y%21&a=2&flag&=skipped&&e=")],
    );
    assert_eq!(
        result.unwrap(),
        map(vec![
            ("a", strs(&["1", "2"])),
            ("b", Value::from("x y!")),
            ("flag", Value::from(true)),
            ("e", Value::from("")),
        ])
    );
}

#[test]
fn service_response_get_body_needs_buffered_proxying_as_kong_does() {
    let (result, sent) = run("kong.service.response.get_body", vec![], vec![Vec::new()]);
    assert!(result.unwrap_err().message.contains("buffered proxying"));
    assert_eq!(
        sent[0],
        ("kong.nginx.get_ctx".into(), string("buffered_proxying"))
    );

    let (result, _) = run(
        "kong.service.response.get_body",
        vec![],
        vec![
            value(Kind::BoolValue(true)).encode_to_vec(),
            string("application/json"),
            pb::ByteString {
                v: b"[1,2]".to_vec(),
            }
            .encode_to_vec(),
        ],
    );
    assert_eq!(
        result.unwrap(),
        Value::Array(vec![Value::from(1), Value::from(2)])
    );
}

#[test]
fn clear_query_arg_removes_every_occurrence_and_reserializes_as_urlsearchparams() {
    let (result, sent) = run(
        "kong.service.request.clear_query_arg",
        vec![Value::from("apikey")],
        vec![string("apikey=s3cr3t&q=a%20b&apikey=x&z"), Vec::new()],
    );
    assert_eq!(result.unwrap(), Value::Nil);
    assert_eq!(sent[0], ("kong.request.get_raw_query".into(), Vec::new()));
    assert_eq!(
        sent[1],
        (
            "kong.service.request.set_raw_query".into(),
            string("q=a+b&z=")
        )
    );
    let (_, sent) = run(
        "kong.service.request.clear_query_arg",
        vec![Value::from("apikey")],
        vec![Vec::new()],
    );
    assert_eq!(sent.len(), 1, "an empty query is left alone");
}

#[test]
fn raw_path_is_the_request_uri_up_to_its_query() {
    for (uri, path) in [
        ("/a%20b?x=1", "/a%20b"),
        ("/plain", "/plain"),
        ("?odd", "?odd"),
    ] {
        let (result, sent) = run("kong.request.get_raw_path", vec![], vec![string(uri)]);
        assert_eq!(
            sent[0],
            ("kong.nginx.get_var".into(), string("request_uri"))
        );
        assert_eq!(result.unwrap(), Value::from(path));
    }
}

#[test]
fn forwarded_path_reads_the_header_only_from_a_trusted_client() {
    let (result, sent) = run(
        "kong.request.get_forwarded_path",
        vec![],
        vec![string("10.0.0.2"), vec![0x08, 1], string("/outer")],
    );
    assert_eq!(result.unwrap(), Value::from("/outer"));
    assert_eq!(sent[1], ("kong.ip.is_trusted".into(), string("10.0.0.2")));
    assert_eq!(
        sent[2],
        ("kong.request.get_header".into(), string("X-Forwarded-Path"))
    );

    let (result, sent) = run(
        "kong.request.get_forwarded_path",
        vec![],
        vec![string("10.0.0.2"), Vec::new(), string("/inner")],
    );
    assert_eq!(result.unwrap(), Value::from("/inner"));
    assert_eq!(sent[2].0, "kong.request.get_path");
}

#[test]
fn forwarded_prefix_falls_back_to_the_upstream_variable() {
    let (result, sent) = run(
        "kong.request.get_forwarded_prefix",
        vec![],
        vec![string("1.2.3.4"), Vec::new(), Vec::new()],
    );
    assert_eq!(result.unwrap(), Value::Nil);
    assert_eq!(
        sent[2],
        (
            "kong.nginx.get_var".into(),
            string("upstream_x_forwarded_prefix")
        )
    );
}

#[test]
fn start_time_is_kongs_processing_start_else_the_request_start_in_milliseconds() {
    let (result, _) = run(
        "kong.request.get_start_time",
        vec![],
        vec![value(Kind::NumberValue(1700000000123.0)).encode_to_vec()],
    );
    assert_eq!(result.unwrap(), Value::from(1700000000123_i64));
    let (result, sent) = run(
        "kong.request.get_start_time",
        vec![],
        vec![
            value(Kind::NullValue(1)).encode_to_vec(),
            pb::Number { v: 1700000000.5 }.encode_to_vec(),
        ],
    );
    assert_eq!(result.unwrap(), Value::from(1700000000500_i64));
    assert_eq!(sent[1].0, "kong.nginx.req_start_time");
}

#[test]
fn plugin_id_logging_and_buffering_go_through_their_native_equivalents() {
    let (result, sent) = run(
        "kong.plugin.get_id",
        vec![],
        vec![text("7f1c").encode_to_vec()],
    );
    assert_eq!(result.unwrap(), Value::from("7f1c"));
    assert_eq!(sent[0], ("kong.nginx.get_ctx".into(), string("plugin_id")));

    let (_, sent) = run("kong.log", vec![Value::from("hi")], vec![Vec::new()]);
    assert_eq!(sent[0].0, "kong.log.notice");

    let (_, sent) = run(
        "kong.service.request.enable_buffering",
        vec![],
        vec![Vec::new()],
    );
    let expected = pb::Kv {
        k: "buffered_proxying".into(),
        v: Some(value(Kind::BoolValue(true))),
    };
    assert_eq!(
        sent[0],
        ("kong.nginx.set_ctx".into(), expected.encode_to_vec())
    );
}

#[test]
fn get_query_arg_reads_the_query_so_a_flag_or_a_repeated_argument_comes_back_as_over_msgpack() {
    let query = strct(vec![
        ("flag", value(Kind::BoolValue(true))),
        (
            "r",
            value(Kind::ListValue(ListValue {
                values: vec![text("1"), text("2")],
            })),
        ),
        ("one", text("x")),
    ])
    .encode_to_vec();
    for (name, expected) in [
        ("flag", Value::from(true)),
        ("r", Value::from("1")),
        ("one", Value::from("x")),
        ("missing", Value::Nil),
    ] {
        let (result, sent) = run(
            "kong.request.get_query_arg",
            vec![Value::from(name)],
            vec![query.clone()],
        );
        assert_eq!(result.unwrap(), expected, "{name}");
        assert_eq!(
            sent,
            vec![("kong.request.get_query".into(), vec![0x08, 100])]
        );
    }
}

#[test]
fn exit_with_a_table_body_sends_kongs_json_with_its_content_type() {
    let body = map(vec![
        ("message", Value::from("a/b")),
        ("n", Value::from(1)),
        ("f", Value::F64(0.1)),
        ("e", Value::Array(vec![])),
    ]);
    let (_, sent) = run(
        "kong.response.exit",
        vec![Value::from(401), body],
        vec![Vec::new()],
    );
    let exit = exit_sent(&sent[0]);
    assert_eq!(
        String::from_utf8(exit.body.clone()).unwrap(),
        r#"{"message":"a\/b","n":1,"f":0.1,"e":{}}"#
    );
    assert_eq!(
        header_of(&exit, "Content-Type").as_deref(),
        Some("application/json; charset=utf-8")
    );

    let headers = map(vec![("content-type", strs(&["application/problem+json"]))]);
    let (_, sent) = run(
        "kong.response.exit",
        vec![
            Value::from(400),
            map(vec![("a", Value::from(true))]),
            headers,
        ],
        vec![Vec::new()],
    );
    let exit = exit_sent(&sent[0]);
    assert_eq!(exit.body, br#"{"a":true}"#);
    assert_eq!(
        exit.headers.unwrap().fields.len(),
        1,
        "the plugin's content type stays"
    );
}

#[test]
fn numbers_in_a_json_body_print_as_cjson_prints_them() {
    for (number, text) in [
        (Value::from(100000000000000_i64), "1e+14"),
        (Value::from(12345678901234_i64), "12345678901234"),
        (Value::F64(0.1), "0.1"),
        (Value::F64(1.0 / 3.0), "0.33333333333333"),
        (Value::F64(0.00001), "1e-05"),
        (Value::from(-7), "-7"),
    ] {
        assert_eq!(
            convert::cjson_encode(&Value::Array(vec![number])).unwrap(),
            format!("[{text}]")
        );
    }
}

#[test]
fn arguments_protobuf_cannot_carry_fail_before_any_round_trip() {
    let cases = [
        (
            "kong.log.set_serialize_value",
            vec![
                Value::from("k"),
                Value::from(1),
                map(vec![("mode", Value::from("add"))]),
            ],
        ),
        ("kong.node.get_memory_stats", vec![Value::from("m")]),
        (
            "kong.ctx.shared.set",
            vec![Value::from("k"), Value::Binary(vec![0xff])],
        ),
        // A Lua table with an integer key: google.protobuf.Struct has string keys only.
        (
            "kong.ctx.shared.set",
            vec![
                Value::from("k"),
                Value::Map(vec![(Value::from(1), Value::from("x"))]),
            ],
        ),
    ];
    for (method, args) in cases {
        let (result, sent) = run(method, args, vec![]);
        let error = result.unwrap_err();
        assert_eq!(error.kind, HostErrorKind::InvalidCall, "{method}");
        assert!(error.message.starts_with(method), "{}", error.message);
        assert!(sent.is_empty(), "{method} made a round trip");
    }
    let (result, sent) = run(
        "kong.node.get_memory_stats",
        vec![Value::from("b")],
        vec![Vec::new()],
    );
    assert!(result.is_ok());
    assert_eq!(
        sent,
        vec![("kong.node.get_memory_stats".into(), Vec::new())]
    );
}

#[test]
fn every_method_of_the_protocol_table_is_served_as_the_code_serves_it() {
    let doc = include_str!("../../../../../docs/pdk-protocols.md");
    let rows: Vec<(&str, &str)> = doc
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|row| {
            let (name, rest) = row.split_once('`')?;
            let protobuf = rest.split('|').nth(2)?.trim();
            Some((name, protobuf))
        })
        .collect();
    let names: Vec<&str> = rows.iter().map(|(name, _)| *name).collect();
    let ours: Vec<&str> = METHODS.iter().map(|entry| entry.name).collect();
    assert_eq!(names, ours);
    for ((name, protobuf), entry) in rows.iter().zip(METHODS) {
        let documented = match entry.how {
            How::Native(..) => protobuf.starts_with("native"),
            How::Emulated(_) => protobuf.starts_with("emulated"),
            How::Refused => *protobuf == "**refused**" || *protobuf == "unusable",
        };
        assert!(documented, "{name}: the table says {protobuf:?}");
    }
}

/// The PDK's own typed methods over ProtoBuf:1: what a plugin gets is what it gets over MsgPack:1.
#[cfg(feature = "fuzzing")]
mod typed {
    use super::*;
    use kong_rust_pdk::pdk::{Call, Kong as Pdk, QueryArg};
    use std::cell::RefCell;

    /// The host's side of a plugin's calls, over ProtoBuf:1 to a fake Kong.
    struct OverProtobuf(RefCell<FakeKong>);

    impl OverProtobuf {
        fn replying(replies: Vec<Vec<u8>>) -> Self {
            OverProtobuf(RefCell::new(FakeKong {
                replies: replies.into(),
                sent: Vec::new(),
            }))
        }
    }

    impl Call for OverProtobuf {
        fn call(&self, method: &str, args: &[u8]) -> kong_rust_pdk::Result<Vec<u8>> {
            call(&mut *self.0.borrow_mut(), method, args).map_err(|error| {
                kong_rust_pdk::Error::new(
                    kong_rust_pdk::ErrorKind::Kong,
                    error.message.into_string(),
                )
            })
        }
    }

    #[test]
    fn typed_reads_decode_kongs_protobuf_replies_as_they_decode_msgpack() {
        let host = OverProtobuf::replying(vec![
            Vec::new(),
            string("example.com"),
            pb::Number { v: 1.1 }.encode_to_vec(),
            value(Kind::NumberValue(42.0)).encode_to_vec(),
            strct(vec![
                ("flag", value(Kind::BoolValue(true))),
                ("a", text("1")),
            ])
            .encode_to_vec(),
            strct(vec![("debug", value(Kind::BoolValue(true)))]).encode_to_vec(),
            Vec::new(),
            pb::Route {
                id: "r1".into(),
                paths: vec!["/".into()],
                service: Some(pb::ServiceKey { id: "s1".into() }),
                ..Default::default()
            }
            .encode_to_vec(),
        ]);
        let kong = Pdk::new(&host);
        assert_eq!(kong.request.get_header("x-missing").unwrap(), None);
        assert_eq!(
            kong.request.get_header("host").unwrap().as_deref(),
            Some("example.com")
        );
        assert_eq!(kong.request.get_http_version().unwrap(), Some(1.1));
        assert_eq!(kong.ctx.shared.get::<u32>("n").unwrap(), Some(42));
        let query = kong.request.get_query(None).unwrap();
        assert_eq!(query["a"], vec!["1".to_string()]);
        assert!(query["flag"].is_empty());
        assert_eq!(
            kong.request.get_query_arg("debug").unwrap(),
            Some(QueryArg::Flag)
        );
        assert!(kong.client.get_consumer().unwrap().is_none());
        let route = kong.router.get_route().unwrap().unwrap();
        assert_eq!(route.id, "r1");
        assert_eq!(route.paths, Some(vec!["/".to_string()]));
        assert_eq!(route.service.unwrap().id, "s1");
        assert!(host.0.borrow().replies.is_empty());
    }

    #[test]
    fn typed_get_body_and_error_work_over_protobuf() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Login {
            user: String,
            remember: bool,
        }
        let host = OverProtobuf::replying(vec![
            string("application/json"),
            raw_body_reply(br#"{"user": "ada", "remember": true}"#),
            headers_reply(vec![("accept", "text/plain")]),
            string("rid"),
            Vec::new(),
        ]);
        let kong = Pdk::new(&host);
        let login: Option<Login> = kong.request.get_body(None, None, None).unwrap();
        assert_eq!(
            login,
            Some(Login {
                user: "ada".into(),
                remember: true
            })
        );
        kong.response.error(429, None, None).into_result().unwrap();
        let fake = host.0.borrow();
        let exit = exit_sent(fake.sent.last().unwrap());
        assert_eq!(exit.status, 429);
        assert_eq!(exit.body, b"Too many requests\nrequest_id: rid\n");
    }

    #[test]
    fn a_refused_method_reaches_the_plugin_as_an_error_naming_the_way_out() {
        let host = OverProtobuf::replying(vec![]);
        let kong = Pdk::new(&host);
        let error = kong.vault.get("{vault://env/secret}").unwrap_err();
        assert!(
            error.message().contains("serve this plugin with MsgPack:1"),
            "{}",
            error.message()
        );
        assert!(host.0.borrow().sent.is_empty());
    }
}

#[test]
fn set_body_encodes_a_form_as_kongs_make_ordered_args() {
    let args = map(vec![
        ("b", strs(&["2", "1 2"])),
        ("a", Value::from("x&y")),
        ("flag", Value::from(true)),
        ("off", Value::from(false)),
        ("n", Value::from(1.5)),
    ]);
    let (result, sent) = run(
        "kong.service.request.set_body",
        vec![args, Value::from("application/x-www-form-urlencoded")],
        vec![Vec::new(), Vec::new()],
    );
    assert_eq!(result.unwrap(), Value::from(true));
    // Sorted per argument; `false` leaves an empty entry, as in Kong.
    assert_eq!(
        sent[0],
        (
            "kong.service.request.set_raw_body".into(),
            string("&a=x%26y&b=2&b=1%202&flag&n=1.5")
        )
    );
    let set_header = pb::Kv {
        k: "Content-Type".into(),
        v: Some(text("application/x-www-form-urlencoded")),
    };
    assert_eq!(
        sent[1],
        (
            "kong.service.request.set_header".into(),
            set_header.encode_to_vec()
        )
    );
}

#[test]
fn set_body_takes_the_request_content_type_and_gives_nil_without_one() {
    let (result, sent) = run(
        "kong.service.request.set_body",
        vec![map(vec![("a", Value::from(1))])],
        vec![string("application/json"), Vec::new(), Vec::new()],
    );
    assert_eq!(result.unwrap(), Value::from(true));
    assert_eq!(
        sent[0],
        ("kong.request.get_header".into(), string("Content-Type"))
    );
    assert_eq!(sent[1].1, string(r#"{"a":1}"#));

    let (result, sent) = run(
        "kong.service.request.set_body",
        vec![map(vec![("a", Value::from(1))])],
        vec![Vec::new()],
    );
    assert_eq!(result.unwrap(), Value::Nil);
    assert_eq!(sent.len(), 1);
}

#[test]
fn set_body_writes_multipart_with_the_given_boundary_in_name_order() {
    let (_, sent) = run(
        "kong.service.request.set_body",
        vec![
            map(vec![("z", Value::from("last")), ("a", Value::from(7))]),
            Value::from("multipart/form-data; boundary=\"XyZ\""),
        ],
        vec![Vec::new(), Vec::new()],
    );
    assert_eq!(
        sent[0].1,
        string(
            "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n7\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"z\"\r\n\r\nlast\r\n--XyZ--\r\n"
        )
    );
    let header = pb::Kv::decode(sent[1].1.as_slice()).unwrap();
    assert_eq!(header.v, Some(text("multipart/form-data; boundary=XyZ")));
}

#[test]
fn set_body_with_a_content_type_kong_cannot_encode_fails_before_writing() {
    let (result, sent) = run(
        "kong.service.request.set_body",
        vec![map(vec![]), Value::from("text/plain")],
        vec![],
    );
    let error = result.unwrap_err();
    assert!(
        error
            .message
            .contains("unsupported content type text/plain"),
        "{}",
        error.message
    );
    assert!(sent.is_empty());
}

#[test]
fn response_error_with_a_content_type_kong_has_no_template_for_fails_before_any_round_trip() {
    let headers = map(vec![("Content-Type", strs(&["image/png"]))]);
    let (result, sent) = run(
        "kong.response.error",
        vec![Value::from(404), Value::Nil, headers],
        vec![],
    );
    let error = result.unwrap_err();
    assert!(error
        .message
        .contains("no template found for MIME type image/png"));
    assert!(
        sent.is_empty(),
        "Kong is never left waiting half-way through an exit"
    );
}

/// Every native method, one by one: its wire name, the argument bytes for a sample of its
/// argument shape, and the MessagePack for a canned reply of its result shape (bytes written
/// out by hand from the messages' field numbers).
#[test]
fn every_native_method_sends_its_own_name_and_argument_bytes_and_returns_its_msgpack() {
    let sample = |arg: Arg| -> (Vec<Value>, Vec<u8>) {
        match arg {
            Arg::None | Arg::BytesUnit => (vec![], vec![]),
            Arg::Text => (vec![Value::from("x")], vec![0x0a, 1, b'x']),
            Arg::Int { .. } => (vec![Value::from(7)], vec![0x08, 7]),
            Arg::Flag => (vec![Value::from(true)], vec![0x08, 1]),
            // KV{k: "k", v: Value{string_value: "v"}}
            Arg::KeyValue => (
                vec![Value::from("k"), Value::from("v")],
                vec![0x0a, 1, b'k', 0x12, 3, 0x1a, 1, b'v'],
            ),
            // Struct{fields: {"a": Value{string_value: "b"}}}
            Arg::Map => (
                vec![map(vec![("a", Value::from("b"))])],
                vec![0x0a, 8, 0x0a, 1, b'a', 0x12, 3, 0x1a, 1, b'b'],
            ),
            // ListValue{values: [Value{string_value: "m"}]}
            Arg::List => (vec![Value::from("m")], vec![0x0a, 3, 0x1a, 1, b'm']),
            Arg::Bytes => (vec![Value::from("b")], vec![0x0a, 1, b'b']),
            // ExitArgs{status: 403, body: "no"}
            Arg::Exit => (
                vec![Value::from(403), Value::from("no")],
                vec![0x08, 0x93, 0x03, 0x12, 2, b'n', b'o'],
            ),
            Arg::Target => (
                vec![Value::from("h"), Value::from(80)],
                vec![0x0a, 1, b'h', 0x10, 80],
            ),
            Arg::ConsumerSpec => (
                vec![Value::from("c"), Value::from(true)],
                vec![0x0a, 1, b'c', 0x10, 1],
            ),
            // AuthenticateArgs{consumer: Consumer{id: "c"}}
            Arg::Authenticate => (
                vec![map(vec![("id", Value::from("c"))])],
                vec![0x0a, 3, 0x0a, 1, b'c'],
            ),
        }
    };
    let canned = |reply: Reply| -> (Vec<u8>, Value) {
        match reply {
            Reply::Nothing
            | Reply::OptionalText
            | Reply::TrueOrNil
            | Reply::Consumer
            | Reply::Credential
            | Reply::Service => (vec![], Value::Nil),
            Reply::Text => (vec![0x0a, 1, b't'], Value::from("t")),
            Reply::Integer => (vec![0x08, 5], Value::from(5)),
            Reply::Number => {
                let mut double = vec![0x09];
                double.extend_from_slice(&2.5f64.to_le_bytes());
                (double, Value::F64(2.5))
            }
            Reply::OptionalNumber => {
                let mut double = vec![0x09];
                double.extend_from_slice(&2.0f64.to_le_bytes());
                (double, Value::from(2))
            }
            Reply::Flag => (vec![0x08, 1], Value::from(true)),
            Reply::Any => (vec![0x1a, 1, b's'], Value::from("s")),
            // Struct{fields: {"h": Value{string_value: "v"}}}
            Reply::MultiMap => (
                vec![0x0a, 8, 0x0a, 1, b'h', 0x12, 3, 0x1a, 1, b'v'],
                map(vec![("h", strs(&["v"]))]),
            ),
            Reply::Route => (vec![0x0a, 1, b'r'], map(vec![("id", Value::from("r"))])),
            Reply::RawBody | Reply::Bytes => (vec![0x0a, 1, b'b'], Value::Binary(b"b".to_vec())),
            Reply::UriCaptures => (
                vec![],
                map(vec![
                    ("unnamed", Value::Array(vec![])),
                    ("named", Value::Array(vec![])),
                ]),
            ),
            Reply::MemoryStats => (
                vec![],
                map(vec![
                    ("lua_shared_dicts", Value::Map(vec![])),
                    ("workers_lua_vms", Value::Array(vec![])),
                ]),
            ),
        }
    };
    let mut checked = 0;
    for entry in METHODS {
        let How::Native(arg, reply) = entry.how else {
            continue;
        };
        let (args, sent_bytes) = sample(arg);
        let (reply_bytes, expected) = canned(reply);
        let (result, sent) = run(entry.name, args, vec![reply_bytes]);
        let result = result.unwrap_or_else(|error| panic!("{}: {}", entry.name, error.message));
        assert_eq!(
            sent,
            vec![(entry.name.to_string(), sent_bytes)],
            "{}",
            entry.name
        );
        assert_eq!(result, expected, "{}", entry.name);
        checked += 1;
    }
    assert_eq!(checked, 73);
}
