//! Bytes Kong never sends (and a few it does, split awkwardly): each gets a clear error reply or a
//! closed connection with a log line, and the host keeps serving everyone else.

use e2e::{artifacts, start_instance, Host, Setup};
use kong_driver::{KongClient, LuaValue, RawConn, Request};
use rmpv::Value;
use std::time::Duration;

fn setup() -> Setup {
    Setup::new(&[(&artifacts().hello, "librust_hello.so")])
}

/// A raw connection to rust-hello's socket, and whether its serverPid notification was read.
struct Conn {
    raw: RawConn,
    pid: u32,
    greeted: bool,
}

impl std::ops::Deref for Conn {
    type Target = RawConn;
    fn deref(&self) -> &RawConn {
        &self.raw
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut RawConn {
        &mut self.raw
    }
}

async fn connect(host: &Host) -> Conn {
    Conn {
        raw: RawConn::connect(host.socket("rust-hello")).await.unwrap(),
        pid: host.pid(),
        greeted: false,
    }
}

/// The next reply on `conn`: (raw bytes, value). The first comes after the serverPid
/// notification, which is checked and consumed (the host sends it once Kong's first bytes show
/// the connection speaks MsgPack:1, ahead of the first reply).
async fn reply(conn: &mut Conn) -> (Vec<u8>, Value) {
    if !std::mem::replace(&mut conn.greeted, true) {
        let (_, notification) = conn.raw.read_value().await.unwrap();
        assert_eq!(
            notification,
            Value::Array(vec![
                Value::from(2),
                Value::from("serverPid"),
                Value::from(conn.pid)
            ])
        );
    }
    conn.raw.read_value().await.expect("a reply")
}

/// `[1, msgid, error, nil]` exactly as the host must encode it.
fn error_bytes(msgid: u8, error: &str) -> Vec<u8> {
    let mut bytes = vec![0x94, 0x01, msgid];
    let mut text = Vec::new();
    rmpv::encode::write_value(&mut text, &Value::from(error)).unwrap();
    bytes.extend(text);
    bytes.push(0xc0);
    bytes
}

async fn assert_still_serving(host: &Host) {
    let kong = KongClient::new(host.socket("rust-hello"));
    assert!(
        kong.start_instance("rust-hello", "{}").await.is_ok(),
        "log:\n{}",
        host.log()
    );
}

#[tokio::test]
async fn bytes_that_are_not_messagepack_close_only_that_connection() {
    let setup = setup();
    let host = setup.start(&[]);
    let mut bad = connect(&host).await;
    let mut good = connect(&host).await;
    bad.send(&[0x94, 0x00, 0xc1]).await.unwrap();
    assert!(bad.is_closed(Duration::from_secs(5)).await);
    host.wait_for_log("is not valid MessagePack", Duration::from_secs(5));
    good.send(&Request::new("plugin.GetStatus", LuaValue::Nil).encode(1))
        .await
        .unwrap();
    assert_eq!(reply(&mut good).await.1[1].as_u64(), Some(1));
    assert_still_serving(&host).await;
}

#[tokio::test]
async fn a_map_where_the_request_array_belongs_closes_the_connection() {
    let setup = setup();
    let host = setup.start(&[]);
    let mut conn = connect(&host).await;
    conn.send(&LuaValue::map([(LuaValue::str("method"), LuaValue::str("plugin.Step"))]).to_bytes())
        .await
        .unwrap();
    assert!(conn.is_closed(Duration::from_secs(5)).await);
    host.wait_for_log(
        "expected the array [0, msgid, method, params], got a map",
        Duration::from_secs(5),
    );
    assert_still_serving(&host).await;
}

#[tokio::test]
async fn requests_with_an_id_get_exact_error_replies_and_the_connection_stays() {
    let setup = setup();
    let host = setup.start(&[]);
    let mut conn = connect(&host).await;
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (
            LuaValue::array([
                LuaValue::int(0),
                LuaValue::int(7),
                LuaValue::str("plugin.Step"),
            ])
            .to_bytes(),
            error_bytes(
                7,
                "expected [0, msgid, method, params], got an array of 3 elements",
            ),
        ),
        (
            LuaValue::array([
                LuaValue::int(0),
                LuaValue::int(8),
                LuaValue::int(5),
                LuaValue::array([LuaValue::int(1)]),
            ])
            .to_bytes(),
            error_bytes(8, "method name must be a string, got an integer"),
        ),
        (
            LuaValue::array([
                LuaValue::int(0),
                LuaValue::int(9),
                LuaValue::str("plugin.Nope"),
                LuaValue::array([LuaValue::int(1)]),
            ])
            .to_bytes(),
            error_bytes(9, "method plugin.Nope not implemented"),
        ),
        (
            LuaValue::array([
                LuaValue::int(0),
                LuaValue::int(10),
                LuaValue::str("plugin.HandleEvent"),
                LuaValue::int(1),
            ])
            .to_bytes(),
            error_bytes(
                10,
                "plugin.HandleEvent: params must be an array of one argument, got an integer",
            ),
        ),
        (
            Request::handle_event(12345, "access").encode(11),
            error_bytes(11, "no plugin instance 12345"),
        ),
    ];
    for (request, expected) in cases {
        conn.send(&request).await.unwrap();
        assert_eq!(reply(&mut conn).await.0, expected);
    }
}

#[tokio::test]
async fn a_request_split_at_every_byte_boundary_is_answered_every_time() {
    let setup = setup();
    let host = setup.start(&[]);
    let (_kong, id) = start_instance(&host, "rust-hello", "{}").await;
    let mut conn = connect(&host).await;
    // rewrite is not a rust-hello phase: answered with "ret" and no side effect.
    for msgid in 1..=2u64 {
        let bytes = Request::handle_event(id, "rewrite").encode(msgid);
        for split in 1..bytes.len() {
            conn.send(&bytes[..split]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
            conn.send(&bytes[split..]).await.unwrap();
            let (_, value) = reply(&mut conn).await;
            assert_eq!(value[1].as_u64(), Some(msgid), "split at {split}");
            assert_eq!(value[3]["Data"].as_str(), Some("ret"), "split at {split}");
        }
    }
    // And byte by byte.
    conn.send_byte_by_byte(&Request::handle_event(id, "rewrite").encode(3))
        .await
        .unwrap();
    assert_eq!(reply(&mut conn).await.1[1].as_u64(), Some(3));
}

#[tokio::test]
async fn two_requests_in_one_write_get_two_replies_in_order() {
    let setup = setup();
    let host = setup.start(&[]);
    let mut conn = connect(&host).await;
    let mut both = Request::start_instance("rust-hello", "{}").encode(21);
    both.extend(Request::handle_event(-5, "access").encode(22));
    conn.send(&both).await.unwrap();
    let first = reply(&mut conn).await.1;
    assert_eq!(first[1].as_u64(), Some(21));
    assert!(first[3]["Id"].is_i64() || first[3]["Id"].is_u64());
    let second = reply(&mut conn).await.1;
    assert_eq!(second[1].as_u64(), Some(22));
    assert_eq!(second[2].as_str(), Some("no plugin instance -5"));
}

#[tokio::test]
async fn a_one_megabyte_config_starts_and_reaches_the_plugin() {
    let setup = setup();
    let host = setup.start(&[]);
    let message = "m".repeat(1 << 20);
    let config = format!(r#"{{"message":"{message}","__seq__":1}}"#);
    let (kong, id) = start_instance(&host, "rust-hello", &config).await;
    let mut request = kong_driver::SimRequest::new().header("host", "h");
    kong_driver::run_event(&kong, id, "access", &mut request)
        .await
        .unwrap();
    assert_eq!(
        request.upstream_headers().get_str("x-hello"),
        Some(format!("Hello {message} from rust").as_str())
    );
}

#[tokio::test]
async fn a_frame_over_the_limit_is_refused_from_its_header() {
    let setup = setup();
    let host = setup.start(&["--max-frame-bytes", "65536"]);
    let mut conn = connect(&host).await;
    // [0, 1, "plugin.StartInstance", [{"Name": .., "Config": <str32 announcing 1 GiB>}]]: only
    // the header is sent; the host must not wait for (or allocate) the gigabyte.
    let mut bytes = vec![0x94, 0x00, 0x01, 0xb4];
    bytes.extend(b"plugin.StartInstance");
    bytes.extend([0x91, 0x82, 0xa4]);
    bytes.extend(b"Name");
    bytes.extend([0xaa]);
    bytes.extend(b"rust-hello");
    bytes.extend([0xa6]);
    bytes.extend(b"Config");
    bytes.extend([0xdb, 0x40, 0x00, 0x00, 0x00]);
    conn.send(&bytes).await.unwrap();
    assert!(conn.is_closed(Duration::from_secs(5)).await);
    host.wait_for_log("exceeds the 65536-byte frame limit", Duration::from_secs(5));
    assert_still_serving(&host).await;
}

#[tokio::test]
async fn deep_nesting_is_refused() {
    let setup = setup();
    let host = setup.start(&[]);
    let mut conn = connect(&host).await;
    let mut bytes = vec![0x94, 0x00, 0x01, 0xab];
    bytes.extend(b"plugin.Step");
    bytes.extend(vec![0x91; 10_000]);
    conn.send(&bytes).await.unwrap();
    assert!(conn.is_closed(Duration::from_secs(5)).await);
    host.wait_for_log("nests deeper than", Duration::from_secs(5));
    assert_still_serving(&host).await;
}

/// `[0, msgid, method, [param]]` from rmpv values, for shapes the Kong driver never produces.
fn request_bytes(msgid: u8, method: &str, param: Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    let message = Value::Array(vec![
        Value::from(0),
        Value::from(msgid),
        Value::from(method),
        Value::Array(vec![param]),
    ]);
    rmpv::encode::write_value(&mut bytes, &message).unwrap();
    bytes
}

/// A msgpack str whose bytes are not UTF-8 (Kong sends such header values as they are).
fn invalid_utf8_str(bytes: &[u8]) -> Value {
    let mut encoded = vec![0xa0 | bytes.len() as u8];
    encoded.extend(bytes);
    rmpv::decode::read_value(&mut &encoded[..]).unwrap()
}

#[tokio::test]
async fn strings_that_are_not_utf8_are_handled_as_bytes() {
    let setup = setup();
    let host = setup.start(&[]);
    let mut conn = connect(&host).await;
    let (kong, id) = start_instance(&host, "rust-hello", "{}").await;

    let event = Value::Map(vec![
        (Value::from("InstanceId"), Value::from(id)),
        (Value::from("EventName"), invalid_utf8_str(b"acc\xffess")),
    ]);
    conn.send(&request_bytes(1, "plugin.HandleEvent", event))
        .await
        .unwrap();
    assert_eq!(
        reply(&mut conn).await.1[2].as_str(),
        Some("unknown event name \"acc\u{fffd}ess\"")
    );

    let start = Value::Map(vec![
        (Value::from("Name"), invalid_utf8_str(b"rust-\xfe")),
        (Value::from("Config"), Value::from("{}")),
    ]);
    conn.send(&request_bytes(2, "plugin.StartInstance", start))
        .await
        .unwrap();
    assert_eq!(
        reply(&mut conn).await.1[2].as_str(),
        Some("this socket serves plugin rust-hello, not rust-\u{fffd}")
    );

    // A header value that is not UTF-8 reaches the plugin with U+FFFD, not as an error.
    let mut request = kong_driver::SimRequest::new().header("host", b"h\xff");
    let outcome = kong_driver::run_event(&kong, id, "access", &mut request)
        .await
        .unwrap();
    assert!(matches!(outcome.end, kong_driver::EventEnd::Ret));
    assert_eq!(
        request.upstream_headers().get("x-hello-host"),
        Some("h\u{fffd}".as_bytes())
    );
}

#[tokio::test]
async fn integral_floats_are_accepted_where_kong_sends_integers() {
    let setup = setup();
    let host = setup.start(&[]);
    let (_kong, id) = start_instance(&host, "rust-hello", "{}").await;
    let mut conn = connect(&host).await;
    // Lua numbers are doubles: an id could arrive as 7.0 from another client library.
    let event = Value::Map(vec![
        (Value::from("InstanceId"), Value::F64(id as f64)),
        (Value::from("EventName"), Value::from("access")),
    ]);
    conn.send(&request_bytes(1, "plugin.HandleEvent", event))
        .await
        .unwrap();
    let (_, first) = reply(&mut conn).await;
    assert_eq!(
        first[3]["Data"]["Method"].as_str(),
        Some("kong.request.get_header")
    );
    let event_id = first[3]["EventId"].as_u64().unwrap();
    let step = Value::Map(vec![
        (Value::from("EventId"), Value::F64(event_id as f64)),
        (Value::from("Data"), Value::from("h")),
    ]);
    conn.send(&request_bytes(2, "plugin.Step", step))
        .await
        .unwrap();
    assert_eq!(
        reply(&mut conn).await.1[3]["Data"]["Method"].as_str(),
        Some("kong.service.request.set_headers")
    );
    // A fractional id is not an id.
    let bad = Value::Map(vec![
        (Value::from("InstanceId"), Value::F64(1.5)),
        (Value::from("EventName"), Value::from("access")),
    ]);
    conn.send(&request_bytes(3, "plugin.HandleEvent", bad))
        .await
        .unwrap();
    assert_eq!(
        reply(&mut conn).await.1[2].as_str(),
        Some("plugin.HandleEvent: `InstanceId` must be an integer")
    );
}
