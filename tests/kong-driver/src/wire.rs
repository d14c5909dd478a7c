//! MsgPack:1 framing: building requests as Kong does and cutting the server's
//! unframed byte stream into complete MessagePack values (protocol.md §6).

use std::time::Duration;

use rmpv::Value;
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

use crate::error::{Error, Result};
use crate::value::LuaValue;

/// How much spare room each socket read asks for.
const READ_CHUNK: usize = 64 * 1024;

/// Encodes `[0, msgid, method, [param]]` exactly as Kong sends a call: every Kong
/// call has exactly one positional argument.
pub fn encode_request(msgid: u64, method: &str, param: &LuaValue) -> Vec<u8> {
    let msg = LuaValue::Array(vec![
        LuaValue::int(0),
        LuaValue::Num(msgid as f64),
        LuaValue::str(method),
        LuaValue::Array(vec![param.clone()]),
    ]);
    msg.to_bytes()
}

/// One message the server may send (protocol.md §6.1).
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// `[1, msgid, error, result]`.
    Response {
        /// The echoed message id (any number; Kong compares numerically).
        msgid: Value,
        /// `nil` on success, else (normally) a string.
        error: Value,
        /// The call's result, ignored by Kong when `error` is set.
        result: Value,
    },
    /// `[2, label, args]`.
    Notification {
        /// E.g. `"serverPid"`.
        label: Value,
        /// The notification's payload.
        args: Value,
    },
}

impl ServerMessage {
    /// Classifies a decoded value; anything whose first element is not 1 or 2 is
    /// rejected as Kong does ("RPC response expected").
    pub fn parse(v: Value) -> Result<Self> {
        let Value::Array(items) = v else {
            return Err(Error::Protocol(format!(
                "RPC response expected from plugin server, got {v}"
            )));
        };
        let mut it = items.into_iter();
        let kind = it.next().unwrap_or(Value::Nil);
        let mut next = || it.next().unwrap_or(Value::Nil);
        match lua_number(&kind) {
            Some(1.0) => Ok(ServerMessage::Response {
                msgid: next(),
                error: next(),
                result: next(),
            }),
            Some(2.0) => Ok(ServerMessage::Notification {
                label: next(),
                args: next(),
            }),
            _ => Err(Error::Protocol(format!(
                "RPC response expected from plugin server, got message type {kind}"
            ))),
        }
    }
}

/// The value as a Lua number, if Kong would see one.
pub(crate) fn lua_number(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// The value as a Lua string's bytes (`str` and `bin` both become strings).
pub(crate) fn lua_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::String(s) => Some(s.as_bytes()),
        Value::Binary(b) => Some(b),
        _ => None,
    }
}

/// Whether Kong would see `nil` (msgpack nil, or an ext type Kong cannot decode).
pub(crate) fn lua_is_nil(v: &Value) -> bool {
    matches!(v, Value::Nil | Value::Ext(..))
}

/// `t[key]` for a string key, as Lua would index the decoded table: non-maps have
/// no string keys, a later duplicate key wins, and a nil value means absent.
pub(crate) fn field<'a>(t: &'a Value, key: &str) -> Option<&'a Value> {
    let Value::Map(entries) = t else { return None };
    entries
        .iter()
        .rev()
        .find(|(k, _)| lua_bytes(k) == Some(key.as_bytes()))
        .map(|(_, v)| v)
        .filter(|v| !lua_is_nil(v))
}

/// Integral Lua number as `i64` (`3` and `3.0` are the same number to Kong).
pub(crate) fn lua_integer(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let f = lua_number(v)?;
    (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
}

/// Incremental splitter for a stream of concatenated MessagePack values.
///
/// It scans element headers without decoding, remembering how far it got, so a
/// value arriving in thousands of small reads is scanned once in total; only a
/// complete value is handed to `rmpv`.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of the current value already known to be complete elements.
    scanned: usize,
    /// Remaining element counts of the containers being scanned (outermost first).
    open: Vec<u64>,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// True when no byte of a further value has been received.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes the next complete value off the buffer: its raw bytes and its decoding.
    /// `Ok(None)` means more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<(Vec<u8>, Value)>> {
        let Some(len) = self.scan()? else {
            return Ok(None);
        };
        let raw: Vec<u8> = self.buf.drain(..len).collect();
        self.scanned = 0;
        let value = rmpv::decode::read_value(&mut raw.as_slice())
            .map_err(|e| Error::Protocol(format!("undecodable MessagePack value: {e}")))?;
        Ok(Some((raw, value)))
    }

    /// Reads from `stream` (each read bounded by `timeout`) until a whole value is
    /// buffered. EOF before any byte is [`Error::NoData`], EOF inside a value is
    /// [`Error::MissingBytes`] (Kong's two failure messages).
    pub async fn read_frame(
        &mut self,
        stream: &mut UnixStream,
        timeout: Duration,
    ) -> Result<(Vec<u8>, Value)> {
        loop {
            if let Some(frame) = self.next_frame()? {
                return Ok(frame);
            }
            self.buf.reserve(READ_CHUNK);
            let n = tokio::time::timeout(timeout, stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| Error::Timeout(timeout))??;
            if n == 0 {
                return Err(if self.buf.is_empty() {
                    Error::NoData
                } else {
                    Error::MissingBytes
                });
            }
        }
    }

    /// Length of the first value if it is complete.
    fn scan(&mut self) -> Result<Option<usize>> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        if self.open.is_empty() && self.scanned == 0 {
            self.open.push(1);
        }
        loop {
            while self.open.last() == Some(&0) {
                self.open.pop();
            }
            if self.open.is_empty() {
                return Ok(Some(self.scanned));
            }
            let rest = &self.buf[self.scanned..];
            let Some((size, children)) = element_header(rest)? else {
                return Ok(None);
            };
            if size > rest.len() {
                return Ok(None);
            }
            self.scanned += size;
            if let Some(top) = self.open.last_mut() {
                *top -= 1;
            }
            if children > 0 {
                self.open.push(children);
            }
        }
    }
}

/// For the element starting `b`: its own size in bytes (header plus payload, not
/// counting child elements) and how many child elements follow it. `None` when
/// the header itself is not complete yet.
fn element_header(b: &[u8]) -> Result<Option<(usize, u64)>> {
    let Some(&m) = b.first() else { return Ok(None) };
    let be = |n: usize| -> Option<u64> {
        b.get(1..1 + n)
            .map(|s| s.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    };
    let sized = |len_bytes: usize, extra: usize| {
        be(len_bytes).map(|len| (1 + len_bytes + extra + len as usize, 0))
    };
    Ok(match m {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Some((1, 0)),
        0x80..=0x8f => Some((1, 2 * u64::from(m & 0x0f))),
        0x90..=0x9f => Some((1, u64::from(m & 0x0f))),
        0xa0..=0xbf => Some((1 + usize::from(m & 0x1f), 0)),
        0xc1 => return Err(Error::Protocol("invalid MessagePack marker 0xc1".into())),
        0xc4 | 0xd9 => sized(1, 0),
        0xc5 | 0xda => sized(2, 0),
        0xc6 | 0xdb => sized(4, 0),
        0xc7 => sized(1, 1),
        0xc8 => sized(2, 1),
        0xc9 => sized(4, 1),
        0xca => Some((5, 0)),
        0xcb => Some((9, 0)),
        0xcc | 0xd0 => Some((2, 0)),
        0xcd | 0xd1 => Some((3, 0)),
        0xce | 0xd2 => Some((5, 0)),
        0xcf | 0xd3 => Some((9, 0)),
        0xd4 => Some((3, 0)),
        0xd5 => Some((4, 0)),
        0xd6 => Some((6, 0)),
        0xd7 => Some((10, 0)),
        0xd8 => Some((18, 0)),
        0xdc => be(2).map(|n| (3, n)),
        0xdd => be(4).map(|n| (5, n)),
        0xde => be(2).map(|n| (3, 2 * n)),
        0xdf => be(4).map(|n| (5, 2 * n)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::hex;

    #[test]
    fn decoder_handles_every_split_point() {
        let mut stream = hex(r#"93 02 a9 "serverPid" cd 30 39"#);
        stream.extend(hex(
            r#"94 01 01 c0 83 a2 "Id" 07 a4 "Name" aa "rust-hello" a9 "StartTime" ce 66 66 99 80"#,
        ));
        let big = LuaValue::array([
            LuaValue::str(vec![b'z'; 70_000]),
            LuaValue::map([("k", LuaValue::bin(vec![1; 300]))]),
            LuaValue::num(1.5),
            LuaValue::int(-70_000),
            LuaValue::EmptyMap,
        ]);
        stream.extend(big.to_bytes());
        stream.extend(hex("d4 01 02 c7 02 05 aa bb c3"));
        let expected_lens = [15, 40, big.to_bytes().len(), 3, 5, 1];
        for step in [1, 2, 3, 7, 4096, stream.len()] {
            let mut d = FrameDecoder::new();
            let mut lens = Vec::new();
            for chunk in stream.chunks(step) {
                d.push(chunk);
                while let Some((raw, _)) = d.next_frame().unwrap() {
                    lens.push(raw.len());
                }
            }
            assert_eq!(lens, expected_lens, "chunk size {step}");
            assert!(d.is_empty());
        }
    }

    #[test]
    fn decoder_keeps_invalid_utf8_and_rejects_c1() {
        let mut d = FrameDecoder::new();
        d.push(&hex("a2 ff fe"));
        let (_, v) = d.next_frame().unwrap().unwrap();
        assert_eq!(lua_bytes(&v), Some(&[0xff, 0xfe][..]));
        d.push(&hex("c1"));
        assert!(matches!(d.next_frame(), Err(Error::Protocol(_))));
    }

    #[test]
    fn classifies_messages() {
        let v = rmpv::decode::read_value(&mut hex("94 01 09 c0 c0").as_slice()).unwrap();
        assert!(matches!(
            ServerMessage::parse(v),
            Ok(ServerMessage::Response { .. })
        ));
        let v = rmpv::decode::read_value(&mut hex("93 03 01 02").as_slice()).unwrap();
        assert!(matches!(ServerMessage::parse(v), Err(Error::Protocol(_))));
        let v = rmpv::decode::read_value(&mut hex("01").as_slice()).unwrap();
        assert!(matches!(ServerMessage::parse(v), Err(Error::Protocol(_))));
    }

    #[test]
    fn field_lookup_is_lua_indexing() {
        let m = Value::Map(vec![
            (Value::from("Data"), Value::from("a")),
            (Value::Binary(b"Data".to_vec()), Value::from("b")),
            (Value::from("Gone"), Value::Nil),
        ]);
        assert_eq!(field(&m, "Data"), Some(&Value::from("b")));
        assert_eq!(field(&m, "Gone"), None);
        assert_eq!(field(&Value::Array(vec![]), "Data"), None);
        assert_eq!(lua_integer(&Value::from(3.0)), Some(3));
        assert_eq!(lua_integer(&Value::from(3.5)), None);
    }
}
