//! The typed PDK against a recording Kong: every method sends exactly the method name and
//! arguments Kong expects (protocol.md §11), and decodes Kong's answer, quirky shapes included
//! (protocol.md §6.2: `[]` for an empty map, integers for integral floats, `nil`, non-UTF-8
//! strings).

use kong_rust_pdk::pdk::{
    entity::{Consumer, Credential, EntityRef, Fields},
    Call, ClientVerify, Headers, Memory, MemoryUnit, MultiMap, QueryArg, Scheme, SerializeMode,
    Source, Subsystem, UriCaptures, VaultReference,
};
use kong_rust_pdk::{ErrorKind, Kong, Result};
use rmpv::Value;
use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet, VecDeque},
};

/// A Kong that records every call and answers from a queue of canned replies (then `nil`).
#[derive(Default)]
struct Recorder {
    replies: RefCell<VecDeque<Value>>,
    calls: RefCell<Vec<(String, Vec<Value>)>>,
}

impl Call for Recorder {
    fn call(&self, method: &str, args: &[u8]) -> Result<Vec<u8>> {
        let Value::Array(args) = rmpv::decode::read_value(&mut &args[..]).unwrap() else {
            panic!("{method}: arguments are not an array");
        };
        self.calls.borrow_mut().push((method.to_string(), args));
        let reply = self.replies.borrow_mut().pop_front().unwrap_or(Value::Nil);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &reply).unwrap();
        Ok(bytes)
    }
}

/// Plugin code making typed calls and checking their results.
type Run = Box<dyn Fn(&Kong) -> Result<()>>;

/// One typed call: the calls it must make, Kong's replies, and the checks on its result.
struct Case {
    calls: Vec<(&'static str, Vec<Value>)>,
    replies: Vec<Value>,
    run: Run,
}

/// A case making one call with `args`, answered with `reply`.
fn case(
    method: &'static str,
    args: Vec<Value>,
    reply: Value,
    run: impl Fn(&Kong) -> Result<()> + 'static,
) -> Case {
    Case {
        calls: vec![(method, args)],
        replies: vec![reply],
        run: Box::new(run),
    }
}

/// Runs the cases; returns the methods they called.
fn run(cases: Vec<Case>) -> BTreeSet<String> {
    let mut called = BTreeSet::new();
    for case in cases {
        let kong_side = Recorder {
            replies: RefCell::new(case.replies.into()),
            ..Recorder::default()
        };
        let kong = Kong::new(&kong_side);
        let expected: Vec<(String, Vec<Value>)> = case
            .calls
            .into_iter()
            .map(|(method, args)| (method.to_string(), args))
            .collect();
        let result = (case.run)(&kong);
        let calls = kong_side.calls.into_inner();
        assert_eq!(calls, expected);
        if let Err(error) = result {
            panic!("{expected:?}: {error}");
        }
        called.extend(calls.into_iter().map(|(method, _)| method));
    }
    called
}

fn s(text: &str) -> Value {
    Value::from(text)
}

fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(entries.iter().map(|(k, v)| (s(k), v.clone())).collect())
}

fn list(items: &[Value]) -> Value {
    Value::Array(items.to_vec())
}

fn empty() -> Value {
    Value::Array(Vec::new())
}

/// A `str` holding `a` and an invalid UTF-8 byte, as Kong may send header values.
fn not_utf8() -> Value {
    rmpv::decode::read_value(&mut &[0xa2, b'a', 0xff][..]).unwrap()
}

fn headers(entries: &[(&str, &[&str])]) -> Headers {
    entries
        .iter()
        .flat_map(|(k, vs)| vs.iter().map(move |v| (*k, *v)))
        .collect()
}

fn multi_map(entries: &[(&str, &[&str])]) -> MultiMap {
    entries
        .iter()
        .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
        .collect()
}

fn client() -> Vec<Case> {
    let consumer_map = map(&[
        ("id", s("c-1")),
        ("username", s("alice")),
        ("custom_id", Value::Nil),
        ("created_at", Value::from(1_700_000_000)),
        ("tags", empty()),
        ("type", Value::from(0)),
    ]);
    let alice = Consumer {
        id: "c-1".into(),
        username: Some("alice".into()),
        custom_id: None,
        created_at: Some(1_700_000_000),
        updated_at: None,
        tags: Some(vec![]),
        fields: Fields::from([("type".to_string(), Value::from(0))]),
    };
    let credential = Credential {
        id: Some("k-1".into()),
        consumer: Some(EntityRef { id: "c-1".into() }),
        fields: Fields::from([("key".to_string(), s("secret"))]),
    };
    let (alice2, alice3, credential2) = (alice.clone(), alice.clone(), credential.clone());
    vec![
        case("kong.client.get_ip", vec![], s("10.0.0.1"), |k| {
            assert_eq!(k.client.get_ip()?, "10.0.0.1");
            Ok(())
        }),
        case("kong.client.get_forwarded_ip", vec![], s("1.2.3.4"), |k| {
            assert_eq!(k.client.get_forwarded_ip()?, "1.2.3.4");
            Ok(())
        }),
        case("kong.client.get_port", vec![], Value::from(51234), |k| {
            assert_eq!(k.client.get_port()?, 51234);
            Ok(())
        }),
        // An integral float is a port too.
        case(
            "kong.client.get_forwarded_port",
            vec![],
            Value::F64(443.0),
            |k| {
                assert_eq!(k.client.get_forwarded_port()?, 443);
                Ok(())
            },
        ),
        case(
            "kong.client.get_credential",
            vec![],
            map(&[
                ("id", s("k-1")),
                ("consumer", map(&[("id", s("c-1"))])),
                ("key", s("secret")),
            ]),
            move |k| {
                assert_eq!(k.client.get_credential()?, Some(credential.clone()));
                Ok(())
            },
        ),
        case("kong.client.get_credential", vec![], Value::Nil, |k| {
            assert_eq!(k.client.get_credential()?, None);
            Ok(())
        }),
        case(
            "kong.client.load_consumer",
            vec![s("alice"), Value::Boolean(true)],
            consumer_map.clone(),
            move |k| {
                assert_eq!(k.client.load_consumer("alice", true)?, Some(alice.clone()));
                Ok(())
            },
        ),
        case(
            "kong.client.load_consumer",
            vec![s("c-9"), Value::Boolean(false)],
            Value::Nil,
            |k| {
                assert_eq!(k.client.load_consumer("c-9", false)?, None);
                Ok(())
            },
        ),
        case("kong.client.get_consumer", vec![], consumer_map, move |k| {
            assert_eq!(k.client.get_consumer()?, Some(alice2.clone()));
            Ok(())
        }),
        // The consumer goes back with every field it came with; nothing after a nil.
        case(
            "kong.client.authenticate",
            vec![
                map(&[
                    ("id", s("c-1")),
                    ("username", s("alice")),
                    ("custom_id", Value::Nil),
                    ("created_at", Value::from(1_700_000_000)),
                    ("updated_at", Value::Nil),
                    ("tags", empty()),
                    ("type", Value::from(0)),
                ]),
                map(&[
                    ("id", s("k-1")),
                    ("consumer", map(&[("id", s("c-1"))])),
                    ("key", s("secret")),
                ]),
            ],
            Value::Nil,
            move |k| k.client.authenticate(&alice3, Some(&credential2)),
        ),
        case(
            "kong.client.get_protocol",
            vec![Value::Boolean(true)],
            s("https"),
            |k| {
                assert_eq!(k.client.get_protocol(true)?.as_deref(), Some("https"));
                Ok(())
            },
        ),
        case(
            "kong.client.tls.request_client_certificate",
            vec![],
            Value::Boolean(true),
            |k| {
                assert!(k.client.tls.request_client_certificate()?);
                Ok(())
            },
        ),
        case(
            "kong.client.tls.disable_session_reuse",
            vec![],
            Value::Nil,
            |k| {
                assert!(!k.client.tls.disable_session_reuse()?);
                Ok(())
            },
        ),
        case(
            "kong.client.tls.get_full_client_certificate_chain",
            vec![],
            s("-----BEGIN CERTIFICATE-----"),
            |k| {
                let chain = k.client.tls.get_full_client_certificate_chain()?;
                assert_eq!(chain.as_deref(), Some("-----BEGIN CERTIFICATE-----"));
                Ok(())
            },
        ),
        case(
            "kong.client.tls.set_client_verify",
            vec![s("FAILED:expired")],
            Value::Nil,
            |k| {
                k.client
                    .tls
                    .set_client_verify(&ClientVerify::Failed("expired".into()))
            },
        ),
    ]
}

fn ctx_and_nginx() -> Vec<Case> {
    vec![
        // A map stored empty comes back as an empty array.
        case("kong.ctx.shared.get", vec![s("seen")], empty(), |k| {
            let seen = k.ctx.shared.get::<BTreeMap<String, u8>>("seen")?;
            assert_eq!(seen, Some(BTreeMap::new()));
            Ok(())
        }),
        case(
            "kong.ctx.shared.set",
            vec![s("ratio"), Value::F64(0.5)],
            Value::Nil,
            |k| k.ctx.shared.set("ratio", &0.5),
        ),
        case(
            "kong.nginx.get_var",
            vec![s("request_uri")],
            s("/a?b"),
            |k| {
                assert_eq!(k.nginx.get_var("request_uri")?.as_deref(), Some("/a?b"));
                Ok(())
            },
        ),
        case("kong.nginx.get_tls1_version_str", vec![], Value::Nil, |k| {
            assert_eq!(k.nginx.get_tls1_version_str()?, None);
            Ok(())
        }),
        // KONG_ACCESS_START: milliseconds, integral, so an integer on the wire.
        case(
            "kong.nginx.get_ctx",
            vec![s("KONG_ACCESS_START")],
            Value::from(1_718_000_000_123_u64),
            |k| {
                let start = k.nginx.get_ctx::<f64>("KONG_ACCESS_START")?;
                assert_eq!(start, Some(1_718_000_000_123.0));
                Ok(())
            },
        ),
        case(
            "kong.nginx.set_ctx",
            vec![s("mark"), list(&[Value::from(1), Value::from(2)])],
            Value::Nil,
            |k| k.nginx.set_ctx("mark", &[1, 2]),
        ),
        case(
            "kong.nginx.req_start_time",
            vec![],
            Value::from(1_718_000_000),
            |k| {
                assert_eq!(k.nginx.req_start_time()?, 1_718_000_000.0);
                Ok(())
            },
        ),
        case("kong.nginx.get_subsystem", vec![], s("stream"), |k| {
            assert_eq!(k.nginx.get_subsystem()?, Subsystem::Stream);
            Ok(())
        }),
        case(
            "kong.nginx.get_statistics",
            vec![],
            map(&[
                ("connections_active", Value::from(3)),
                ("connections_reading", Value::from(0)),
                ("connections_writing", Value::from(1)),
                ("connections_waiting", Value::from(2)),
                ("connections_accepted", Value::from(10)),
                ("connections_handled", Value::from(10)),
                ("total_requests", Value::from(42)),
                ("new_in_a_later_kong", Value::from(1)),
            ]),
            |k| {
                let stats = k.nginx.get_statistics()?;
                assert_eq!((stats.connections_active, stats.total_requests), (3, 42));
                Ok(())
            },
        ),
    ]
}

fn log() -> Vec<Case> {
    let level = |method: &'static str, write: fn(&Kong) -> Result<()>| {
        case(method, vec![s("n=1")], Value::Nil, write)
    };
    vec![
        level("kong.log.alert", |k| k.log.alert("n=1")),
        level("kong.log.crit", |k| k.log.crit("n=1")),
        level("kong.log.err", |k| k.log.err("n=1")),
        level("kong.log.warn", |k| k.log.warn("n=1")),
        level("kong.log.notice", |k| k.log.notice("n=1")),
        level("kong.log.info", |k| k.log.info("n=1")),
        level("kong.log.debug", |k| k.log.debug(format_args!("n={}", 1))),
        level("kong.log.deprecation", |k| k.log.deprecation("n=1")),
        case(
            "kong.log.set_serialize_value",
            vec![s("custom.tenant"), s("acme")],
            Value::Nil,
            |k| {
                k.log
                    .set_serialize_value("custom.tenant", "acme", SerializeMode::Set)
            },
        ),
        case(
            "kong.log.set_serialize_value",
            vec![
                s("request.headers.x-secret"),
                s("hidden"),
                map(&[("mode", s("replace"))]),
            ],
            Value::Nil,
            |k| {
                k.log.set_serialize_value(
                    "request.headers.x-secret",
                    "hidden",
                    SerializeMode::Replace,
                )
            },
        ),
        case(
            "kong.log.serialize",
            vec![],
            s(r#"{"request":{"method":"GET"},"response":{"status":200}}"#),
            |k| {
                let entry: serde_json::Value = k.log.serialize()?;
                assert_eq!(entry["response"]["status"], 200);
                Ok(())
            },
        ),
    ]
}

fn node_and_friends() -> Vec<Case> {
    vec![
        case(
            "kong.ip.is_trusted",
            vec![s("10.0.0.1")],
            Value::Boolean(false),
            |k| {
                assert!(!k.ip.is_trusted("10.0.0.1")?);
                Ok(())
            },
        ),
        case("kong.node.get_id", vec![], s("9f8e7d6c"), |k| {
            assert_eq!(k.node.get_id()?, "9f8e7d6c");
            Ok(())
        }),
        case("kong.node.get_hostname", vec![], s("kong-1"), |k| {
            assert_eq!(k.node.get_hostname()?, "kong-1");
            Ok(())
        }),
        // Bytes as numbers; no shared dict at all arrives as an empty array.
        case(
            "kong.node.get_memory_stats",
            vec![],
            map(&[
                ("lua_shared_dicts", empty()),
                (
                    "workers_lua_vms",
                    list(&[map(&[
                        ("http_allocated_gc", Value::from(1_102_848)),
                        ("pid", Value::from(18)),
                    ])]),
                ),
            ]),
            |k| {
                let stats = k.node.get_memory_stats(None, None)?;
                assert!(stats.lua_shared_dicts.is_empty());
                let worker = &stats.workers_lua_vms[0];
                assert_eq!(worker.http_allocated_gc, Some(Memory::Bytes(1_102_848)));
                assert_eq!(worker.pid, Some(18));
                Ok(())
            },
        ),
        // The unit is sent as Kong's default when only the scale is given.
        case(
            "kong.node.get_memory_stats",
            vec![s("b"), Value::from(1)],
            map(&[("lua_shared_dicts", empty()), ("workers_lua_vms", empty())]),
            |k| k.node.get_memory_stats(None, Some(1)).map(drop),
        ),
        case(
            "kong.node.get_memory_stats",
            vec![s("k")],
            map(&[
                (
                    "lua_shared_dicts",
                    map(&[(
                        "kong",
                        map(&[
                            ("allocated_slabs", s("40.00 KiB")),
                            ("capacity", s("5120.00 KiB")),
                        ]),
                    )]),
                ),
                (
                    "workers_lua_vms",
                    list(&[map(&[("err", s("could not get worker info"))])]),
                ),
            ]),
            |k| {
                let stats = k.node.get_memory_stats(Some(MemoryUnit::Kibibytes), None)?;
                let kong = &stats.lua_shared_dicts["kong"];
                assert_eq!(kong.capacity, Some(Memory::Text("5120.00 KiB".into())));
                let worker = &stats.workers_lua_vms[0];
                assert_eq!(worker.err.as_deref(), Some("could not get worker info"));
                Ok(())
            },
        ),
        case("kong.plugin.get_id", vec![], s("0a1b2c3d"), |k| {
            assert_eq!(k.plugin.get_id()?, "0a1b2c3d");
            Ok(())
        }),
        case("kong.cluster.get_id", vec![], Value::Nil, |k| {
            assert_eq!(k.cluster.get_id()?, None);
            Ok(())
        }),
    ]
}

/// A `kong.request` method without arguments whose result is text.
fn request_text(method: &'static str, get: fn(&Kong) -> Result<String>) -> Case {
    case(method, vec![], s("text"), move |k| {
        assert_eq!(get(k)?, "text");
        Ok(())
    })
}

fn request() -> Vec<Case> {
    vec![
        request_text("kong.request.get_scheme", |k| k.request.get_scheme()),
        request_text("kong.request.get_host", |k| k.request.get_host()),
        request_text("kong.request.get_forwarded_scheme", |k| {
            k.request.get_forwarded_scheme()
        }),
        request_text("kong.request.get_forwarded_host", |k| {
            k.request.get_forwarded_host()
        }),
        request_text("kong.request.get_forwarded_path", |k| {
            k.request.get_forwarded_path()
        }),
        request_text("kong.request.get_method", |k| k.request.get_method()),
        request_text("kong.request.get_path", |k| k.request.get_path()),
        request_text("kong.request.get_raw_path", |k| k.request.get_raw_path()),
        request_text("kong.request.get_path_with_query", |k| {
            k.request.get_path_with_query()
        }),
        request_text("kong.request.get_raw_query", |k| k.request.get_raw_query()),
        case("kong.request.get_port", vec![], Value::from(8000), |k| {
            assert_eq!(k.request.get_port()?, 8000);
            Ok(())
        }),
        case(
            "kong.request.get_forwarded_prefix",
            vec![],
            Value::Nil,
            |k| {
                assert_eq!(k.request.get_forwarded_prefix()?, None);
                Ok(())
            },
        ),
        case(
            "kong.request.get_forwarded_port",
            vec![],
            Value::from(443),
            |k| {
                assert_eq!(k.request.get_forwarded_port()?, 443);
                Ok(())
            },
        ),
        // 1.1 is a float, 2 an integer, a stream request has none.
        case(
            "kong.request.get_http_version",
            vec![],
            Value::F64(1.1),
            |k| {
                assert_eq!(k.request.get_http_version()?, Some(1.1));
                Ok(())
            },
        ),
        case(
            "kong.request.get_http_version",
            vec![],
            Value::from(2),
            |k| {
                assert_eq!(k.request.get_http_version()?, Some(2.0));
                Ok(())
            },
        ),
        case("kong.request.get_http_version", vec![], Value::Nil, |k| {
            assert_eq!(k.request.get_http_version()?, None);
            Ok(())
        }),
        case("kong.request.get_query_arg", vec![s("a")], s("1"), |k| {
            assert_eq!(
                k.request.get_query_arg("a")?,
                Some(QueryArg::Value("1".into()))
            );
            Ok(())
        }),
        case(
            "kong.request.get_query_arg",
            vec![s("debug")],
            Value::Boolean(true),
            |k| {
                assert_eq!(k.request.get_query_arg("debug")?, Some(QueryArg::Flag));
                Ok(())
            },
        ),
        case(
            "kong.request.get_query_arg",
            vec![s("k")],
            list(&[s("1"), s("2")]),
            |k| {
                assert_eq!(
                    k.request.get_query_arg("k")?,
                    Some(QueryArg::Value("1".into()))
                );
                Ok(())
            },
        ),
        case(
            "kong.request.get_query_arg",
            vec![s("none")],
            Value::Nil,
            |k| {
                assert_eq!(k.request.get_query_arg("none")?, None);
                Ok(())
            },
        ),
        case(
            "kong.request.get_query",
            vec![Value::from(10)],
            map(&[("a", list(&[s("1"), s("2")])), ("flag", empty())]),
            |k| {
                let query = k.request.get_query(Some(10))?;
                assert_eq!(query, multi_map(&[("a", &["1", "2"]), ("flag", &[])]));
                Ok(())
            },
        ),
        // No query at all: Kong's empty table.
        case("kong.request.get_query", vec![], empty(), |k| {
            assert!(k.request.get_query(None)?.is_empty());
            Ok(())
        }),
        case(
            "kong.request.get_header",
            vec![s("X-Id")],
            not_utf8(),
            |k| {
                assert_eq!(k.request.get_header("X-Id")?.as_deref(), Some("a\u{fffd}"));
                Ok(())
            },
        ),
        case(
            "kong.request.get_headers",
            vec![],
            map(&[("accept", list(&[s("a"), s("b")]))]),
            |k| {
                let all = k.request.get_headers(None)?;
                assert_eq!(all, headers(&[("accept", &["a", "b"])]));
                // Names are case-insensitive.
                assert_eq!(all.get("Accept"), Some("a"));
                assert_eq!(all.get_all("ACCEPT"), ["a", "b"]);
                Ok(())
            },
        ),
        case(
            "kong.request.get_raw_body",
            vec![Value::from(1_048_576)],
            Value::Binary(vec![0, 159, 146, 150]),
            |k| {
                let body = k.request.get_raw_body(Some(1_048_576))?;
                assert_eq!(body, [0, 159, 146, 150]);
                Ok(())
            },
        ),
        case(
            "kong.request.get_body",
            vec![s("application/json")],
            map(&[("ids", list(&[Value::from(1), Value::from(2)]))]),
            |k| {
                let body: Option<BTreeMap<String, Vec<u32>>> =
                    k.request.get_body(Some("application/json"), None, None)?;
                assert_eq!(body.unwrap()["ids"], [1, 2]);
                Ok(())
            },
        ),
        case("kong.request.get_body", vec![], Value::Nil, |k| {
            let body: Option<serde_json::Value> = k.request.get_body(None, None, None)?;
            assert_eq!(body, None);
            Ok(())
        }),
        // Only a later argument: the mimetype is Kong's default, read first, never nil.
        Case {
            calls: vec![
                ("kong.request.get_header", vec![s("content-type")]),
                (
                    "kong.request.get_body",
                    vec![
                        s("application/x-www-form-urlencoded"),
                        Value::from(100),
                        Value::from(4096),
                    ],
                ),
            ],
            replies: vec![s("application/x-www-form-urlencoded"), empty()],
            run: Box::new(|k| {
                let body: Option<BTreeMap<String, String>> =
                    k.request.get_body(None, None, Some(4096))?;
                assert_eq!(body, Some(BTreeMap::new()));
                Ok(())
            }),
        },
        // Without a content type there is nothing to decode by: no body call.
        Case {
            calls: vec![("kong.request.get_header", vec![s("content-type")])],
            replies: vec![Value::Nil],
            run: Box::new(|k| {
                let body: Option<serde_json::Value> = k.request.get_body(None, Some(5), None)?;
                assert_eq!(body, None);
                Ok(())
            }),
        },
        case(
            "kong.request.get_start_time",
            vec![],
            Value::F64(1_718_000_000_123.000_2),
            |k| {
                assert_eq!(k.request.get_start_time()?, 1_718_000_000_123);
                Ok(())
            },
        ),
        // Empty named captures arrive as an empty array; a group that did not match is false.
        case(
            "kong.request.get_uri_captures",
            vec![],
            map(&[
                ("unnamed", list(&[s("users"), Value::Boolean(false)])),
                ("named", empty()),
            ]),
            |k| {
                let captures = k.request.get_uri_captures()?;
                assert_eq!(
                    captures,
                    UriCaptures {
                        unnamed: vec![Some("users".into()), None],
                        named: BTreeMap::new(),
                    }
                );
                Ok(())
            },
        ),
        // A table with holes arrives as a map with integer keys.
        case(
            "kong.request.get_uri_captures",
            vec![],
            map(&[
                (
                    "unnamed",
                    Value::Map(vec![(Value::from(2), s("7")), (Value::from(0), s("/u/7"))]),
                ),
                ("named", map(&[("id", s("7"))])),
            ]),
            |k| {
                let captures = k.request.get_uri_captures()?;
                assert_eq!(captures.unnamed, [None, Some("7".into())]);
                assert_eq!(captures.named["id"].as_deref(), Some("7"));
                Ok(())
            },
        ),
    ]
}

fn response() -> Vec<Case> {
    let h = headers(&[("x-a", &["1", "2"])]);
    let (h2, h3) = (h.clone(), h.clone());
    vec![
        case("kong.response.get_status", vec![], Value::from(201), |k| {
            assert_eq!(k.response.get_status()?, 201);
            Ok(())
        }),
        case(
            "kong.response.get_header",
            vec![s("x-a")],
            Value::Nil,
            |k| {
                assert_eq!(k.response.get_header("x-a")?, None);
                Ok(())
            },
        ),
        case(
            "kong.response.get_headers",
            vec![Value::from(5)],
            map(&[("x-a", list(&[s("1"), s("2")]))]),
            move |k| {
                assert_eq!(k.response.get_headers(Some(5))?, h);
                Ok(())
            },
        ),
        case("kong.response.get_source", vec![], s("exit"), |k| {
            assert_eq!(k.response.get_source()?, Source::Exit);
            Ok(())
        }),
        case(
            "kong.response.set_status",
            vec![Value::from(299)],
            Value::Nil,
            |k| k.response.set_status(299),
        ),
        case(
            "kong.response.set_header",
            vec![s("x-a"), s("1")],
            Value::Nil,
            |k| k.response.set_header("x-a", "1"),
        ),
        case(
            "kong.response.add_header",
            vec![s("x-a"), s("2")],
            Value::Nil,
            |k| k.response.add_header("x-a", "2"),
        ),
        case(
            "kong.response.clear_header",
            vec![s("x-a")],
            Value::Nil,
            |k| k.response.clear_header("x-a"),
        ),
        case(
            "kong.response.set_headers",
            vec![map(&[("x-a", list(&[s("1"), s("2")]))])],
            Value::Nil,
            move |k| k.response.set_headers(&h2),
        ),
        // Headers without a body: the body is "", never a nil hole.
        case(
            "kong.response.exit",
            vec![
                Value::from(403),
                s(""),
                map(&[("x-a", list(&[s("1"), s("2")]))]),
            ],
            Value::Nil,
            move |k| k.response.exit(403, "", Some(&h3)).into(),
        ),
        case(
            "kong.response.exit",
            vec![Value::from(200), Value::Binary(vec![0xff, 0])],
            Value::Nil,
            |k| k.response.exit(200, [0xff, 0], None).into(),
        ),
        case(
            "kong.response.exit",
            vec![Value::from(429), map(&[("message", s("slow down"))])],
            Value::Nil,
            |k| {
                k.response
                    .exit_json(429, &serde_json::json!({"message": "slow down"}), None)
                    .into()
            },
        ),
        case(
            "kong.response.error",
            vec![Value::from(404)],
            Value::Nil,
            |k| k.response.error(404, None, None).into(),
        ),
        // Headers without a message: Kong's default message fills the slot.
        case(
            "kong.response.error",
            vec![
                Value::from(403),
                s("Forbidden"),
                map(&[("content-type", list(&[s("text/plain")]))]),
            ],
            Value::Nil,
            |k| {
                let plain = headers(&[("content-type", &["text/plain"])]);
                k.response.error(403, None, Some(&plain)).into()
            },
        ),
    ]
}

fn router_and_service() -> Vec<Case> {
    vec![
        case(
            "kong.router.get_route",
            vec![],
            map(&[
                ("id", s("r-1")),
                ("name", Value::Nil),
                ("paths", list(&[s("/api")])),
                ("headers", empty()),
                ("strip_path", Value::Boolean(true)),
                ("https_redirect_status_code", Value::from(426)),
                ("service", map(&[("id", s("s-1"))])),
                ("ws_id", s("w-1")),
            ]),
            |k| {
                let route = k.router.get_route()?.unwrap();
                assert_eq!(route.id, "r-1");
                assert_eq!(route.name, None);
                assert_eq!(route.paths, Some(vec!["/api".into()]));
                assert_eq!(route.headers, Some(BTreeMap::new()));
                assert_eq!(route.https_redirect_status_code, Some(426));
                assert_eq!(route.service, Some(EntityRef { id: "s-1".into() }));
                Ok(())
            },
        ),
        case(
            "kong.router.get_service",
            vec![],
            map(&[
                ("id", s("s-1")),
                ("host", s("upstream.test")),
                ("port", Value::from(443)),
                ("path", Value::Nil),
                ("read_timeout", Value::from(60_000)),
            ]),
            |k| {
                let service = k.router.get_service()?.unwrap();
                assert_eq!(
                    (service.host.as_deref(), service.port, service.path),
                    (Some("upstream.test"), Some(443), None)
                );
                assert_eq!(service.read_timeout, Some(60_000));
                Ok(())
            },
        ),
        case("kong.router.get_service", vec![], Value::Nil, |k| {
            assert_eq!(k.router.get_service()?, None);
            Ok(())
        }),
        case(
            "kong.service.set_upstream",
            vec![s("pool")],
            Value::Nil,
            |k| {
                assert!(!k.service.set_upstream("pool")?);
                Ok(())
            },
        ),
        case(
            "kong.service.set_target",
            vec![s("10.0.0.9"), Value::from(8443)],
            Value::Nil,
            |k| k.service.set_target("10.0.0.9", 8443),
        ),
        case(
            "kong.service.set_retries",
            vec![Value::from(3)],
            Value::Nil,
            |k| k.service.set_retries(3),
        ),
        case(
            "kong.service.set_timeouts",
            vec![Value::from(1000), Value::from(2000), Value::from(3000)],
            Value::Nil,
            |k| k.service.set_timeouts(1000, 2000, 3000),
        ),
        case(
            "kong.service.set_tls_verify",
            vec![Value::Boolean(true)],
            Value::Boolean(true),
            |k| {
                assert!(k.service.set_tls_verify(true)?);
                Ok(())
            },
        ),
        case(
            "kong.service.set_tls_verify_depth",
            vec![Value::from(3)],
            Value::Boolean(true),
            |k| {
                assert!(k.service.set_tls_verify_depth(3)?);
                Ok(())
            },
        ),
    ]
}

fn service_request() -> Vec<Case> {
    let unit = |method: &'static str, args: Vec<Value>, run: fn(&Kong) -> Result<()>| {
        case(method, args, Value::Nil, run)
    };
    vec![
        unit("kong.service.request.enable_buffering", vec![], |k| {
            k.service.request.enable_buffering()
        }),
        unit("kong.service.request.set_scheme", vec![s("https")], |k| {
            k.service.request.set_scheme(Scheme::Https)
        }),
        unit("kong.service.request.set_path", vec![s("/v2")], |k| {
            k.service.request.set_path("/v2")
        }),
        unit(
            "kong.service.request.set_raw_query",
            vec![s("a=1&b")],
            |k| k.service.request.set_raw_query("a=1&b"),
        ),
        unit("kong.service.request.set_method", vec![s("PATCH")], |k| {
            k.service.request.set_method("PATCH")
        }),
        // A flag (no values) is sent as Lua's true, as get_query reports it.
        unit(
            "kong.service.request.set_query",
            vec![map(&[
                ("a", list(&[s("1"), s("2")])),
                ("flag", Value::Boolean(true)),
            ])],
            |k| {
                let query = multi_map(&[("a", &["1", "2"]), ("flag", &[])]);
                k.service.request.set_query(&query)
            },
        ),
        unit("kong.service.request.clear_query_arg", vec![s("a")], |k| {
            k.service.request.clear_query_arg("a")
        }),
        unit(
            "kong.service.request.set_header",
            vec![s("x-b"), s("1")],
            |k| k.service.request.set_header("x-b", "1"),
        ),
        unit(
            "kong.service.request.add_header",
            vec![s("x-b"), s("2")],
            |k| k.service.request.add_header("x-b", "2"),
        ),
        unit("kong.service.request.clear_header", vec![s("x-b")], |k| {
            k.service.request.clear_header("x-b")
        }),
        unit(
            "kong.service.request.set_headers",
            vec![map(&[("x-b", list(&[s("1")]))])],
            |k| k.service.request.set_headers(&headers(&[("x-b", &["1"])])),
        ),
        unit(
            "kong.service.request.set_raw_body",
            vec![Value::Binary(vec![0xff])],
            |k| k.service.request.set_raw_body([0xff]),
        ),
        unit("kong.service.request.set_raw_body", vec![s("text")], |k| {
            k.service.request.set_raw_body("text")
        }),
        case(
            "kong.service.request.set_body",
            vec![map(&[("a", Value::from(1))]), s("application/json")],
            Value::Boolean(true),
            |k| {
                let args = BTreeMap::from([("a", 1)]);
                assert!(k
                    .service
                    .request
                    .set_body(&args, Some("application/json"))?);
                Ok(())
            },
        ),
        case(
            "kong.service.request.disable_tls",
            vec![],
            Value::Boolean(true),
            |k| {
                assert!(k.service.request.disable_tls()?);
                Ok(())
            },
        ),
    ]
}

fn service_response() -> Vec<Case> {
    vec![
        case(
            "kong.service.response.get_status",
            vec![],
            Value::from(502),
            |k| {
                assert_eq!(k.service.response.get_status()?, 502);
                Ok(())
            },
        ),
        case(
            "kong.service.response.get_header",
            vec![s("content-type")],
            s("application/json"),
            |k| {
                let content_type = k.service.response.get_header("content-type")?;
                assert_eq!(content_type.as_deref(), Some("application/json"));
                Ok(())
            },
        ),
        // No headers: an empty map may come as an empty array.
        case("kong.service.response.get_headers", vec![], empty(), |k| {
            assert!(k.service.response.get_headers(None)?.is_empty());
            Ok(())
        }),
        case(
            "kong.service.response.get_raw_body",
            vec![],
            Value::Binary(br#"{"id":7}"#.to_vec()),
            |k| {
                assert_eq!(k.service.response.get_raw_body()?, br#"{"id":7}"#);
                Ok(())
            },
        ),
        Case {
            calls: vec![
                ("kong.service.response.get_header", vec![s("content-type")]),
                (
                    "kong.service.response.get_body",
                    vec![s("application/json"), Value::from(10)],
                ),
            ],
            replies: vec![s("application/json"), map(&[("id", Value::from(7))])],
            run: Box::new(|k| {
                let body: Option<serde_json::Value> =
                    k.service.response.get_body(None, Some(10))?;
                assert_eq!(body, Some(serde_json::json!({"id": 7})));
                Ok(())
            }),
        },
    ]
}

fn vault_and_telemetry() -> Vec<Case> {
    let reference = "{vault://env/db/password}";
    vec![
        case(
            "kong.vault.get",
            vec![s(reference)],
            s("s3cr3t"),
            move |k| {
                assert_eq!(k.vault.get(reference)?.as_deref(), Some("s3cr3t"));
                Ok(())
            },
        ),
        case(
            "kong.vault.is_reference",
            vec![s(reference)],
            Value::Boolean(true),
            move |k| {
                assert!(k.vault.is_reference(reference)?);
                Ok(())
            },
        ),
        case(
            "kong.vault.parse_reference",
            vec![s(reference)],
            map(&[
                ("name", s("env")),
                ("resource", s("db")),
                ("key", s("password")),
                ("config", empty()),
            ]),
            move |k| {
                let parsed = k.vault.parse_reference(reference)?;
                assert_eq!(
                    parsed,
                    Some(VaultReference {
                        name: "env".into(),
                        resource: "db".into(),
                        key: Some("password".into()),
                        version: None,
                        config: Some(Fields::new()),
                    })
                );
                Ok(())
            },
        ),
        case(
            "kong.vault.update",
            vec![map(&[("password", s(reference))])],
            map(&[("password", s("s3cr3t"))]),
            move |k| {
                let config = BTreeMap::from([("password".to_string(), reference.to_string())]);
                let updated = k.vault.update(&config)?;
                assert_eq!(updated["password"], "s3cr3t");
                Ok(())
            },
        ),
        case("kong.vault.flush", vec![], Value::Nil, |k| k.vault.flush()),
        case(
            "kong.telemetry.log",
            vec![
                s("my-plugin"),
                map(&[("level", s("info"))]),
                s("access"),
                s("hello"),
                map(&[("k", s("v"))]),
            ],
            Value::Nil,
            |k| {
                k.telemetry.log(
                    "my-plugin",
                    &BTreeMap::from([("level", "info")]),
                    "access",
                    "hello",
                    &BTreeMap::from([("k", "v")]),
                )
            },
        ),
    ]
}

#[test]
fn kong_client() {
    run(client());
}

#[test]
fn kong_ctx_and_kong_nginx() {
    run(ctx_and_nginx());
}

#[test]
fn kong_log() {
    run(log());
}

#[test]
fn kong_ip_node_plugin_cluster() {
    run(node_and_friends());
}

#[test]
fn kong_request() {
    run(request());
}

#[test]
fn kong_response() {
    run(response());
}

#[test]
fn kong_router_and_kong_service() {
    run(router_and_service());
}

#[test]
fn kong_service_request() {
    run(service_request());
}

#[test]
fn kong_service_response() {
    run(service_response());
}

#[test]
fn kong_vault_and_kong_telemetry() {
    run(vault_and_telemetry());
}

/// The typed PDK and the harness's Kong cover the same functions, so neither can drift.
#[test]
fn typed_methods_are_exactly_the_catalogue() {
    let mut typed = BTreeSet::new();
    for cases in [
        client(),
        ctx_and_nginx(),
        log(),
        node_and_friends(),
        request(),
        response(),
        router_and_service(),
        service_request(),
        service_response(),
        vault_and_telemetry(),
    ] {
        typed.extend(run(cases));
    }
    let mut catalogue: BTreeSet<String> = kong_rust_pdk_test::catalogue_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    // `kong.log(...)` is `kong.log.notice(...)`: one typed method for both.
    assert!(catalogue.remove("kong.log"));
    assert_eq!(typed, catalogue);
}

/// Wrong shapes fail with `UnexpectedResult`, naming the method and what came.
#[test]
fn wrong_shapes_are_unexpected_results() {
    for (reply, run) in [
        (
            Value::Nil,
            Box::new(|k: &Kong| k.client.get_ip().map(drop)) as Run,
        ),
        (s("x"), Box::new(|k: &Kong| k.client.get_port().map(drop))),
        (
            Value::from(70_000),
            Box::new(|k: &Kong| k.request.get_port().map(drop)),
        ),
        (
            s("maybe"),
            Box::new(|k: &Kong| k.response.get_source().map(drop)),
        ),
        (
            map(&[("username", s("no id"))]),
            Box::new(|k: &Kong| k.client.get_consumer().map(drop)),
        ),
        (
            Value::from(1),
            Box::new(|k: &Kong| k.request.get_raw_body(None).map(drop)),
        ),
    ] {
        let kong_side = Recorder {
            replies: RefCell::new(VecDeque::from([reply])),
            ..Recorder::default()
        };
        let error = run(&Kong::new(&kong_side)).unwrap_err();
        let method = &kong_side.calls.borrow()[0].0;
        assert_eq!(error.kind(), ErrorKind::UnexpectedResult, "{error}");
        assert!(
            error
                .message()
                .starts_with(&format!("{method}: Kong returned ")),
            "{error}"
        );
    }
}

/// Calls Kong would raise on without ever answering (terminal ones) or that cannot be sent
/// are refused before anything is sent.
#[test]
fn unsendable_calls_are_refused_locally() {
    let kong_side = Recorder::default();
    let kong = Kong::new(&kong_side);
    for error in [
        kong.response
            .error(302, None, None)
            .into_result()
            .unwrap_err(),
        kong.response.exit(99, "", None).into_result().unwrap_err(),
        kong.log
            .set_serialize_value("k", &None::<u8>, SerializeMode::Add)
            .unwrap_err(),
    ] {
        assert_eq!(error.kind(), ErrorKind::InvalidCall, "{error}");
    }
    assert!(kong_side.calls.borrow().is_empty());
}
