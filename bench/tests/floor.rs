//! The floor answers both protocols byte for byte as the benchmark relies on: `calls` PDK calls
//! per event, then the event's end, on a real socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

struct Floor {
    child: Child,
    dir: std::path::PathBuf,
}

impl Floor {
    fn start(label: &str) -> (Floor, UnixStream) {
        let dir = std::env::temp_dir().join(format!("floor-test-{}-{label}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("floor.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_kong-rust-floor"))
            .arg("--socket")
            .arg(&socket)
            .spawn()
            .unwrap();
        let floor = Floor { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(stream) = UnixStream::connect(&socket) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                return (floor, stream);
            }
            assert!(Instant::now() < deadline, "the floor never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_exact(stream: &mut UnixStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).unwrap();
    buf
}

fn msgpack(value: &rmpv::Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).unwrap();
    out
}

fn request(msgid: u64, method: &str, param: rmpv::Value) -> Vec<u8> {
    msgpack(&rmpv::Value::Array(vec![
        0.into(),
        msgid.into(),
        method.into(),
        rmpv::Value::Array(vec![param]),
    ]))
}

fn map(entries: &[(&str, rmpv::Value)]) -> rmpv::Value {
    rmpv::Value::Map(
        entries
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect(),
    )
}

fn reply(msgid: u64, result: rmpv::Value) -> Vec<u8> {
    msgpack(&rmpv::Value::Array(vec![
        1.into(),
        msgid.into(),
        rmpv::Value::Nil,
        result,
    ]))
}

#[test]
fn over_msgpack_each_event_makes_the_configured_calls_then_returns() {
    let (_floor, mut kong) = Floor::start("msgpack");
    let start = request(
        1,
        "plugin.StartInstance",
        map(&[
            ("Name", "rust-bench".into()),
            ("Config", r#"{"calls":2}"#.into()),
        ]),
    );
    kong.write_all(&start).unwrap();
    let expected = reply(1, map(&[("Id", 2.into())]));
    assert_eq!(read_exact(&mut kong, expected.len()), expected);

    let call = map(&[
        ("Method", "kong.request.get_header".into()),
        ("Args", rmpv::Value::Array(vec!["host".into()])),
    ]);
    let handle = request(
        2,
        "plugin.HandleEvent",
        map(&[("InstanceId", 2.into()), ("EventName", "access".into())]),
    );
    kong.write_all(&handle).unwrap();
    let step = |data| map(&[("EventId", 1.into()), ("Data", data)]);
    for (msgid, answer) in [(2, call.clone()), (3, call), (4, "ret".into())] {
        let expected = reply(msgid, step(answer));
        assert_eq!(read_exact(&mut kong, expected.len()), expected);
        if msgid < 4 {
            let next = request(msgid + 1, "plugin.Step", step("example.com".into()));
            kong.write_all(&next).unwrap();
        }
    }
}

fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = (message.len() as u32).to_ne_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

fn read_frame(stream: &mut UnixStream) -> Vec<u8> {
    let len = u32::from_ne_bytes(read_exact(stream, 4).try_into().unwrap());
    read_exact(stream, len as usize)
}

#[test]
fn over_protobuf_each_event_holds_its_connection_for_the_configured_calls() {
    let (_floor, mut kong) = Floor::start("protobuf");
    // RpcCall { sequence: 2, cmd_start_instance { name: "rust-bench", config: {"calls":2} } }
    let config = br#"{"calls":2}"#;
    let mut start = b"\x0a\x0arust-bench\x12".to_vec();
    start.push(config.len() as u8);
    start.extend_from_slice(config);
    let mut call = vec![0x08, 0x02, 0x8a, 0x02, start.len() as u8];
    call.extend_from_slice(&start);
    kong.write_all(&frame(&call)).unwrap();
    // RpcReturn { sequence: 2, instance_status { name: "rust-bench", instance_id: 2 } }
    assert_eq!(
        read_frame(&mut kong),
        b"\x08\x02\x8a\x02\x0e\x0a\x0arust-bench\x10\x02"
    );

    // RpcCall { sequence: 4, cmd_handle_event { instance_id: 2, event_name: "access" } }
    kong.write_all(&frame(b"\x08\x04\xa2\x02\x0a\x08\x02\x12\x06access"))
        .unwrap();
    for _ in 0..2 {
        assert_eq!(read_frame(&mut kong), b"kong.request.get_header");
        assert_eq!(read_frame(&mut kong), b"\x0a\x04host");
        // String { v: "example.com" }
        kong.write_all(&frame(b"\x0a\x0bexample.com")).unwrap();
    }
    assert_eq!(read_frame(&mut kong), b"");
    assert_eq!(read_frame(&mut kong), b"\x08\x04");
}
