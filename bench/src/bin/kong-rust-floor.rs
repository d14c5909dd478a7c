//! `kong-rust-floor`: the physical reference for the benchmark. It speaks Kong's plugin protocol
//! on one socket with canned replies and runs no plugin: one thread, one epoll set, no runtime,
//! so what it costs is framing, decoding, one write per reply and the socket round trips, the
//! least any plugin server must pay on this machine.
//!
//! Each connection speaks whichever protocol it opens with:
//! - MessagePack-RPC (`MsgPack:1`): `StartInstance` returns the config's `calls` as the instance
//!   id; `HandleEvent` and every Step answer `get_header("host")` until that many calls were
//!   made, then `"ret"`. Its only state is the calls left per event id (Kong keeps the id
//!   HandleEvent's reply gave for every Step of the event, so the count cannot travel in it).
//! - ProtoBuf:1 (Kong 3.8+'s `pb_rpc.lua`: a 4-byte native-endian length before each message,
//!   one connection for a whole event): `cmd_start_instance` likewise; `cmd_handle_event` writes
//!   the method frame `kong.request.get_header` and its argument `String{"host"}` that many
//!   times, reading Kong's answer after each, then the empty method frame and the `RpcReturn`.
//!   The messages are encoded by hand: the floor decodes only the fields it needs.

use std::{
    collections::HashMap,
    io::{self, Read, Write},
    os::{
        fd::AsFd,
        unix::net::{UnixListener, UnixStream},
    },
    path::PathBuf,
};

use clap::Parser;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use rmpv::ValueRef;

#[derive(Parser)]
#[command(about = "Answer Kong's plugin protocols with canned replies: the benchmark's floor")]
struct Cli {
    /// The socket to listen on.
    #[arg(long)]
    socket: PathBuf,
}

/// The listener's epoll token; connections use their slot number + 1.
const LISTENER: u64 = 0;

fn main() -> io::Result<()> {
    let cli = Cli::parse();
    let _ = std::fs::remove_file(&cli.socket);
    let listener = UnixListener::bind(&cli.socket)?;
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))?;

    let mut conns: HashMap<u64, Conn> = HashMap::new();
    let mut next_token = LISTENER + 1;
    let mut events = Events::default();
    let mut ready = vec![EpollEvent::empty(); 64];
    loop {
        let n = match epoll.wait(&mut ready, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for event in &ready[..n] {
            let token = event.data();
            if token == LISTENER {
                while let Ok((stream, _)) = listener.accept() {
                    stream.set_nonblocking(true)?;
                    epoll.add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, next_token))?;
                    conns.insert(next_token, Conn::new(stream));
                    next_token += 1;
                }
                continue;
            }
            let Some(conn) = conns.get_mut(&token) else {
                continue;
            };
            if conn.serve(&mut events).is_err() {
                let conn = conns.remove(&token).expect("looked up above");
                let _ = epoll.delete(&conn.stream);
            }
        }
    }
}

/// One Kong connection: what it has sent that is not answered yet, and where a ProtoBuf event
/// stands.
struct Conn {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    protocol: Option<Protocol>,
}

#[derive(Clone, Copy)]
enum Protocol {
    MsgPack,
    /// The ProtoBuf event this connection carries: its `sequence` and the calls still to make;
    /// `None` between events.
    ProtoBuf(Option<(u64, u64)>),
}

/// Why a connection is closed: Kong hung up, or sent what the floor does not answer.
struct Close;

impl From<io::Error> for Close {
    fn from(_: io::Error) -> Close {
        Close
    }
}

impl Conn {
    fn new(stream: UnixStream) -> Conn {
        Conn {
            stream,
            input: Vec::with_capacity(4096),
            output: Vec::with_capacity(256),
            protocol: None,
        }
    }

    /// Reads what is there, answers every complete message and writes the answers in one go.
    fn serve(&mut self, events: &mut Events) -> Result<(), Close> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(Close),
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let protocol = match self.protocol {
            Some(protocol) => protocol,
            None if self.input.len() < 2 => return Ok(()),
            // Every MsgPack request opens with [0x94, 0x00] (a 4-array, type 0); a ProtoBuf
            // length that opens so would be 148 + a multiple of 65,536 bytes, which no canned
            // benchmark call is.
            None if self.input[..2] == [0x94, 0x00] => Protocol::MsgPack,
            None => Protocol::ProtoBuf(None),
        };
        self.protocol = Some(protocol);
        self.output.clear();
        let consumed = match protocol {
            Protocol::MsgPack => msgpack::answer(&self.input, events, &mut self.output)?,
            Protocol::ProtoBuf(event) => {
                let (consumed, event) = protobuf::answer(&self.input, event, &mut self.output)?;
                self.protocol = Some(Protocol::ProtoBuf(event));
                consumed
            }
        };
        self.input.drain(..consumed);
        self.write_all()
    }

    /// Kong reads each answer before it sends again, so the socket buffer always has room; a
    /// full one is waited out rather than buffered.
    fn write_all(&mut self) -> Result<(), Close> {
        let mut written = 0;
        while written < self.output.len() {
            match self.stream.write(&self.output[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut pollfd = [PollFd::new(self.stream.as_fd(), PollFlags::POLLOUT)];
                    poll(&mut pollfd, PollTimeout::NONE).map_err(io::Error::from)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// The MsgPack:1 calls each event in flight has still to make.
#[derive(Default)]
struct Events {
    next_id: u64,
    left: HashMap<u64, u64>,
}

/// The `calls` of a StartInstance's JSON config: how many PDK calls each event makes.
fn calls_in(config: &[u8]) -> Option<u64> {
    let config: serde_json::Value = serde_json::from_slice(config).ok()?;
    Some(
        config
            .get("calls")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(1),
    )
}

mod msgpack {
    use super::*;

    /// Answers each complete request in `input`; returns how many bytes were answered.
    pub fn answer(input: &[u8], events: &mut Events, out: &mut Vec<u8>) -> Result<usize, Close> {
        let mut rest = input;
        loop {
            let before = rest;
            match rmpv::decode::read_value_ref(&mut rest) {
                Ok(request) => reply(&request, events, out).ok_or(Close)?,
                Err(e) if is_incomplete(&e) => return Ok(input.len() - before.len()),
                Err(_) => return Err(Close),
            }
        }
    }

    fn is_incomplete(error: &rmpv::decode::Error) -> bool {
        use rmpv::decode::Error::{InvalidDataRead, InvalidMarkerRead};
        matches!(error, InvalidMarkerRead(e) | InvalidDataRead(e)
            if e.kind() == io::ErrorKind::UnexpectedEof)
    }

    /// Encodes the canned reply to `[0, msgid, method, [param]]`; `None` for anything else.
    fn reply(request: &ValueRef<'_>, events: &mut Events, out: &mut Vec<u8>) -> Option<()> {
        let ValueRef::Array(fields) = request else {
            return None;
        };
        let [ValueRef::Integer(kind), ValueRef::Integer(msgid), ValueRef::String(method), ValueRef::Array(params)] =
            fields.as_slice()
        else {
            return None;
        };
        if kind.as_u64() != Some(0) {
            return None;
        }
        let param = params.first()?;
        rmp::encode::write_array_len(out, 4).ok()?;
        rmp::encode::write_uint(out, 1).ok()?;
        rmp::encode::write_uint(out, msgid.as_u64()?).ok()?;
        rmp::encode::write_nil(out).ok()?;
        match method.as_str()? {
            "plugin.StartInstance" => {
                let ValueRef::String(config) = field(param, "Config")? else {
                    return None;
                };
                rmp::encode::write_map_len(out, 1).ok()?;
                rmp::encode::write_str(out, "Id").ok()?;
                rmp::encode::write_uint(out, calls_in(config.as_bytes())?).ok()?;
            }
            "plugin.CloseInstance" => rmp::encode::write_nil(out).ok()?,
            "plugin.HandleEvent" => {
                let calls = int(field(param, "InstanceId")?)?;
                events.next_id += 1;
                let id = events.next_id;
                step_reply(out, id, calls, events)?;
            }
            _ => {
                // Every Step variant.
                let id = int(field(param, "EventId")?)?;
                let left = events.left.remove(&id)?;
                step_reply(out, id, left, events)?;
            }
        }
        Some(())
    }

    /// `{"EventId": id, "Data": get_header("host")}` while calls are `left`, else `"ret"`.
    fn step_reply(out: &mut Vec<u8>, id: u64, left: u64, events: &mut Events) -> Option<()> {
        rmp::encode::write_map_len(out, 2).ok()?;
        rmp::encode::write_str(out, "EventId").ok()?;
        rmp::encode::write_uint(out, id).ok()?;
        rmp::encode::write_str(out, "Data").ok()?;
        if left == 0 {
            rmp::encode::write_str(out, "ret").ok()?;
            return Some(());
        }
        events.left.insert(id, left - 1);
        rmp::encode::write_map_len(out, 2).ok()?;
        rmp::encode::write_str(out, "Method").ok()?;
        rmp::encode::write_str(out, "kong.request.get_header").ok()?;
        rmp::encode::write_str(out, "Args").ok()?;
        rmp::encode::write_array_len(out, 1).ok()?;
        rmp::encode::write_str(out, "host").ok()?;
        Some(())
    }

    fn field<'a>(map: &'a ValueRef<'a>, key: &str) -> Option<&'a ValueRef<'a>> {
        let ValueRef::Map(entries) = map else {
            return None;
        };
        entries
            .iter()
            .find(|(k, _)| matches!(k, ValueRef::String(s) if s.as_str() == Some(key)))
            .map(|(_, v)| v)
    }

    fn int(value: &ValueRef<'_>) -> Option<u64> {
        match value {
            ValueRef::Integer(n) => n.as_u64(),
            _ => None,
        }
    }
}

/// ProtoBuf:1, with Kong's field numbers (`kong/include/kong/pluginsocket.proto`): `RpcCall`
/// has `sequence` = 1 and the command oneof at 31–36; `RpcReturn` has `sequence` = 1 and
/// `instance_status` = 33, whose `name` = 1, `instance_id` = 2.
mod protobuf {
    use super::*;

    const CMD_START_INSTANCE: u64 = 33;
    const CMD_CLOSE_INSTANCE: u64 = 35;
    const CMD_HANDLE_EVENT: u64 = 36;
    const METHOD: &[u8] = b"kong.request.get_header";
    /// `String { v: "host" }`, the argument of each call.
    const ARGS: &[u8] = b"\x0a\x04host";

    /// Answers each complete frame in `input`, carrying `event` (sequence, calls left) from one
    /// frame to the next; returns the bytes answered and where the event stands.
    pub fn answer(
        input: &[u8],
        mut event: Option<(u64, u64)>,
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<(u64, u64)>), Close> {
        let mut consumed = 0;
        while let Some(frame) = frame(&input[consumed..]) {
            consumed += 4 + frame.len();
            event = match event {
                // Kong's answer to the last call; its value does not matter to the floor.
                Some((sequence, left)) => next_call(out, sequence, left),
                None => call(frame, out)?,
            };
        }
        Ok((consumed, event))
    }

    fn frame(input: &[u8]) -> Option<&[u8]> {
        let len = u32::from_ne_bytes(input.get(..4)?.try_into().ok()?) as usize;
        input.get(4..4 + len)
    }

    /// An `RpcCall`: answered at once, or (`cmd_handle_event`) opened as an event.
    fn call(message: &[u8], out: &mut Vec<u8>) -> Result<Option<(u64, u64)>, Close> {
        let (mut sequence, mut command) = (0, None);
        for (field, value) in fields(message) {
            match (field?, value) {
                (1, Value::Varint(v)) => sequence = v,
                (field @ 31..=36, Value::Bytes(body)) => command = Some((field, body)),
                _ => {}
            }
        }
        let (kind, body) = command.ok_or(Close)?;
        match kind {
            CMD_HANDLE_EVENT => {
                let instance = fields(body)
                    .find_map(|(f, v)| match (f, v) {
                        (Ok(1), Value::Varint(id)) => Some(id),
                        _ => None,
                    })
                    .ok_or(Close)?;
                Ok(next_call(out, sequence, instance))
            }
            CMD_START_INSTANCE => {
                let config = fields(body)
                    .find_map(|(f, v)| match (f, v) {
                        (Ok(2), Value::Bytes(config)) => Some(config),
                        _ => None,
                    })
                    .ok_or(Close)?;
                let calls = calls_in(config).ok_or(Close)?;
                let mut status = Vec::new();
                put_bytes(&mut status, 1, b"rust-bench");
                put_varint_field(&mut status, 2, calls);
                let mut reply = Vec::new();
                put_varint_field(&mut reply, 1, sequence);
                put_bytes(&mut reply, 33, &status);
                put_frame(out, &reply);
                Ok(None)
            }
            CMD_CLOSE_INSTANCE => {
                let mut reply = Vec::new();
                put_varint_field(&mut reply, 1, sequence);
                put_frame(out, &reply);
                Ok(None)
            }
            _ => Err(Close),
        }
    }

    /// The next `get_header("host")` while calls are `left`, else the end of the event.
    fn next_call(out: &mut Vec<u8>, sequence: u64, left: u64) -> Option<(u64, u64)> {
        if left == 0 {
            put_frame(out, b"");
            let mut reply = Vec::new();
            put_varint_field(&mut reply, 1, sequence);
            put_frame(out, &reply);
            return None;
        }
        put_frame(out, METHOD);
        put_frame(out, ARGS);
        Some((sequence, left - 1))
    }

    enum Value<'a> {
        Varint(u64),
        Bytes(&'a [u8]),
        Other,
    }

    /// The (field number, value) pairs of `message`; an `Err` field ends a malformed message.
    fn fields(mut message: &[u8]) -> impl Iterator<Item = (Result<u64, Close>, Value<'_>)> {
        std::iter::from_fn(move || {
            if message.is_empty() {
                return None;
            }
            let Some(key) = varint(&mut message) else {
                message = &[];
                return Some((Err(Close), Value::Other));
            };
            let value = match key & 7 {
                0 => varint(&mut message).map(Value::Varint),
                2 => varint(&mut message).and_then(|len| {
                    let len = usize::try_from(len).ok()?;
                    let body = message.get(..len)?;
                    message = &message[len..];
                    Some(Value::Bytes(body))
                }),
                1 => message.get(8..).map(|rest| {
                    message = rest;
                    Value::Other
                }),
                5 => message.get(4..).map(|rest| {
                    message = rest;
                    Value::Other
                }),
                _ => None,
            };
            match value {
                Some(value) => Some((Ok(key >> 3), value)),
                None => {
                    message = &[];
                    Some((Err(Close), Value::Other))
                }
            }
        })
    }

    fn varint(input: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for (i, byte) in input.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                *input = &input[i + 1..];
                return Some(value);
            }
        }
        None
    }

    fn put_varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push(value as u8 | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    fn put_varint_field(out: &mut Vec<u8>, field: u64, value: u64) {
        put_varint(out, field << 3);
        put_varint(out, value);
    }

    fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
        put_varint(out, field << 3 | 2);
        put_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    fn put_frame(out: &mut Vec<u8>, message: &[u8]) {
        out.extend_from_slice(&(message.len() as u32).to_ne_bytes());
        out.extend_from_slice(message);
    }
}
