//! `kong-rust-pb-floor` played by Kong's side of ProtoBuf:1, frame by frame, as `pb_rpc.lua`
//! writes and reads them: a real process on a real Unix socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use prost::Message;

#[allow(dead_code, clippy::all)]
mod messages {
    include!(concat!(env!("OUT_DIR"), "/kong_plugin_protocol.rs"));
}

use messages::{
    rpc_call::Call, rpc_return::Return, CmdHandleEvent, CmdStartInstance, RpcCall, RpcReturn,
};

/// The floor on a fresh socket; killed when dropped.
struct Floor {
    child: Child,
    dir: PathBuf,
}

impl Floor {
    /// `test`: a name for the socket's directory, unique among the tests running at once.
    fn start(test: &str) -> (Floor, UnixStream) {
        let dir = std::env::temp_dir().join(format!("pb-floor-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("floor.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_kong-rust-pb-floor"))
            .arg("--socket")
            .arg(&socket)
            .spawn()
            .unwrap();
        let floor = Floor { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match UnixStream::connect(&socket) {
                Ok(stream) => {
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    return (floor, stream);
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(error) => panic!("the floor never listened: {error}"),
            }
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

fn write_frame(stream: &mut UnixStream, message: &[u8]) {
    let mut frame = (message.len() as u32).to_ne_bytes().to_vec();
    frame.extend_from_slice(message);
    stream.write_all(&frame).unwrap();
}

fn read_frame(stream: &mut UnixStream) -> Vec<u8> {
    let mut length = [0; 4];
    stream.read_exact(&mut length).unwrap();
    let mut message = vec![0; u32::from_ne_bytes(length) as usize];
    stream.read_exact(&mut message).unwrap();
    message
}

fn rpc(stream: &mut UnixStream, sequence: i64, call: Call) {
    let call = RpcCall {
        sequence,
        call: Some(call),
    };
    write_frame(stream, &call.encode_to_vec());
}

/// Kong's side of one event: answers each `get_header` and returns how many there were.
fn event(stream: &mut UnixStream, sequence: i64, instance_id: i32) -> usize {
    rpc(
        stream,
        sequence,
        Call::CmdHandleEvent(CmdHandleEvent {
            instance_id,
            event_name: "access".into(),
        }),
    );
    let mut calls = 0;
    loop {
        let method = read_frame(stream);
        if method.is_empty() {
            break;
        }
        assert_eq!(method, b"kong.request.get_header");
        // String{v: "host"}: field 1, length-delimited, 4 bytes.
        assert_eq!(read_frame(stream), [0x0a, 4, b'h', b'o', b's', b't']);
        let host = messages::String {
            v: b"example.com".to_vec(),
        };
        write_frame(stream, &host.encode_to_vec());
        calls += 1;
    }
    let done = RpcReturn::decode(read_frame(stream).as_slice()).unwrap();
    assert_eq!(
        done.sequence, sequence,
        "the RpcReturn carries the call's sequence"
    );
    calls
}

#[test]
fn the_floor_starts_an_instance_with_its_calls_and_makes_them_on_every_event_of_a_pooled_connection(
) {
    let (_floor, mut kong) = Floor::start("events");
    rpc(
        &mut kong,
        2,
        Call::CmdStartInstance(CmdStartInstance {
            name: "rust-bench".into(),
            config: br#"{"calls":3}"#.to_vec(),
        }),
    );
    let started = RpcReturn::decode(read_frame(&mut kong).as_slice()).unwrap();
    assert_eq!(started.sequence, 2);
    let Some(Return::InstanceStatus(status)) = started.r#return else {
        panic!("no instance status: {started:?}");
    };
    assert_eq!(
        (status.name.as_str(), status.instance_id),
        ("rust-bench", 3)
    );

    // Kong pools the connection: the next events come on the same one.
    assert_eq!(event(&mut kong, 4, 3), 3);
    assert_eq!(event(&mut kong, 6, 3), 3);
    assert_eq!(event(&mut kong, 8, 0), 0);
}

#[test]
fn a_frame_that_is_not_an_rpc_call_closes_the_connection() {
    let (_floor, mut kong) = Floor::start("bad-frame");
    write_frame(&mut kong, &[0xff, 0xff, 0xff]);
    let mut rest = Vec::new();
    assert_eq!(kong.read_to_end(&mut rest).unwrap(), 0);
}
