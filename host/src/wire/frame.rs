//! Finding message boundaries in Kong's stream: ProtoBuf:1 frames carry their length
//! (`protobuf::frame`); MsgPack:1 messages are found by scanning them.
//!
//! MsgPack:1 has no length prefix: the stream is a concatenation of MessagePack values. The
//! scanner walks value headers without decoding or allocating, so it can say "one complete
//! message is the first N bytes" or "not yet", and it resumes where it stopped when more bytes
//! arrive (a multi-megabyte message in 4 KiB reads is scanned once, not once per read). Sizes,
//! nesting and the number of values are checked against limits from the headers alone, before
//! anything is buffered or decoded for them.

use crate::wire::{protobuf, Message, Protocol};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("byte 0xc1 at offset {0} is not valid MessagePack")]
    InvalidMarker(usize),
    #[error("message exceeds the {limit}-byte frame limit")]
    TooLarge { limit: usize },
    #[error("message nests deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("message holds more than {limit} values")]
    TooManyValues { limit: u64 },
}

/// Values one message may hold. Each decodes to a value of some 40 bytes, so without it a frame
/// of one-byte nils under the size limit would decode to gigabytes; Kong's largest messages (a
/// body, a page of headers) hold a few thousand.
pub const MAX_VALUES: u64 = 1 << 20;

/// Scanner state for the message at the front of a connection's buffer.
#[derive(Debug)]
pub struct Scanner {
    max_len: usize,
    max_depth: usize,
    /// Offset of the next value header not yet scanned.
    pos: usize,
    /// For each open container (outermost first), how many values it still holds.
    open: Vec<u64>,
    /// Values scanned so far in this message.
    values: u64,
}

impl Scanner {
    pub fn new(max_len: usize, max_depth: usize) -> Self {
        Scanner {
            max_len,
            max_depth,
            pos: 0,
            open: Vec::new(),
            values: 0,
        }
    }

    /// Length of the complete message at the start of `buf`, or `None` if more bytes are needed.
    /// After `Some`, the caller removes that many bytes and the scanner starts afresh.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        if self.pos == 0 && self.open.is_empty() {
            self.open.push(1);
            self.values = 0;
        }
        while let Some(left) = self.open.last_mut() {
            if *left == 0 {
                self.open.pop();
                continue;
            }
            let too_large = FrameError::TooLarge {
                limit: self.max_len,
            };
            // Another value needs at least one more byte.
            if self.pos >= self.max_len {
                return Err(too_large);
            }
            let Some(header) =
                header(&buf[self.pos..]).map_err(|()| FrameError::InvalidMarker(self.pos))?
            else {
                // Part of a header: if the limit is reached already, the rest cannot fit, and
                // waiting for it would buffer more than the limit.
                if buf.len() >= self.max_len {
                    return Err(too_large);
                }
                return Ok(None);
            };
            let end = self.pos as u64 + header.len as u64 + header.payload;
            if end > self.max_len as u64 {
                return Err(too_large);
            }
            if (buf.len() as u64) < end {
                return Ok(None);
            }
            *left -= 1;
            self.pos = end as usize;
            self.values += 1;
            if self.values > MAX_VALUES {
                return Err(FrameError::TooManyValues { limit: MAX_VALUES });
            }
            if header.container {
                // `open` holds the root's entry and one per enclosing container, so its length
                // is this container's nesting level (1 at the top). Empty ones count too.
                if self.open.len() > self.max_depth {
                    return Err(FrameError::TooDeep {
                        limit: self.max_depth,
                    });
                }
                if header.items > 0 {
                    self.open.push(header.items);
                }
            }
        }
        let len = self.pos;
        self.pos = 0;
        Ok(Some(len))
    }
}

/// A connection's incoming side: the bytes read so far, and the whole messages in them.
pub struct Frames {
    buffer: Vec<u8>,
    scanner: Scanner,
    max_len: usize,
    /// What the connection speaks; `None` until its first bytes tell (Kong's side of a
    /// socket, which answers either protocol).
    protocol: Option<Protocol>,
}

impl Frames {
    /// A stream of MessagePack messages: the replies a client of the host reads.
    pub fn new(max_len: usize, max_depth: usize) -> Self {
        Frames {
            protocol: Some(Protocol::MsgPack),
            ..Frames::from_kong(max_len, max_depth)
        }
    }

    /// What Kong sends on a connection, in whichever protocol its first bytes open.
    pub fn from_kong(max_len: usize, max_depth: usize) -> Self {
        Frames {
            buffer: Vec::new(),
            scanner: Scanner::new(max_len, max_depth),
            max_len,
            protocol: None,
        }
    }

    /// The connection's protocol, once its first bytes have told.
    pub fn protocol(&self) -> Option<Protocol> {
        self.protocol
    }

    /// Frees the buffer's memory when it holds nothing: an idle connection needs none.
    pub fn release(&mut self) {
        if self.buffer.is_empty() {
            self.buffer = Vec::new();
        }
    }

    /// Where reads append their bytes.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buffer
    }

    /// The next MessagePack message of a stream [`Frames::new`] reads (a client's replies).
    pub fn next_value(&mut self) -> Result<Option<rmpv::Value>, String> {
        match self.next_message()? {
            Some(Message::MsgPack(value)) => Ok(Some(value)),
            Some(Message::ProtoBuf(_)) => unreachable!("Frames::new reads MessagePack only"),
            None => Ok(None),
        }
    }

    /// The next complete message, decoded and removed from the buffer; `Ok(None)` until more
    /// bytes arrive. After an error the stream cannot be followed any further: close it.
    pub fn next_message(&mut self) -> Result<Option<Message>, String> {
        let protocol = match self.protocol {
            Some(protocol) => protocol,
            None => match Protocol::opening(&self.buffer, self.max_len) {
                Some(protocol) => *self.protocol.insert(protocol),
                None => return Ok(None),
            },
        };
        match protocol {
            Protocol::MsgPack => {
                let Some(len) = self.scanner.scan(&self.buffer).map_err(|e| e.to_string())? else {
                    return Ok(None);
                };
                let message = rmpv::decode::read_value(&mut &self.buffer[..len])
                    .map_err(|error| format!("undecodable MessagePack: {error}"))?;
                self.buffer.drain(..len);
                Ok(Some(Message::MsgPack(message)))
            }
            Protocol::ProtoBuf => {
                let Some(len) = protobuf::frame::complete(&self.buffer, self.max_len)
                    .map_err(|error| format!("ProtoBuf:1 {error}"))?
                else {
                    return Ok(None);
                };
                let end = protobuf::frame::LENGTH_BYTES + len;
                let payload = self.buffer[protobuf::frame::LENGTH_BYTES..end].to_vec();
                self.buffer.drain(..end);
                Ok(Some(Message::ProtoBuf(payload)))
            }
        }
    }
}

struct Header {
    /// Bytes of the header itself.
    len: usize,
    /// Bytes that follow the header and belong to this value (str/bin/ext bodies, scalars).
    payload: u64,
    /// Nested values that follow (array elements, map keys and values).
    items: u64,
    /// An array or a map, empty or not: a level of nesting.
    container: bool,
}

/// Parses the value header at the start of `b`; `Ok(None)` when `b` is too short to tell.
fn header(b: &[u8]) -> Result<Option<Header>, ()> {
    let Some(&marker) = b.first() else {
        return Ok(None);
    };
    let fixed = |len, payload| {
        Ok(Some(Header {
            len,
            payload,
            items: 0,
            container: false,
        }))
    };
    // A big-endian length of `n` bytes after the marker.
    let sized = |n: usize| -> Option<u64> {
        b.get(1..1 + n)
            .map(|bytes| bytes.iter().fold(0u64, |acc, &byte| acc << 8 | byte as u64))
    };
    let with_len = |n: usize, per_item: u64, body: bool| -> Result<Option<Header>, ()> {
        Ok(sized(n).map(|count| Header {
            len: 1 + n,
            payload: if body { count * per_item } else { 0 },
            items: if body { 0 } else { count * per_item },
            container: !body,
        }))
    };
    match marker {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => fixed(1, 0),
        0x80..=0x8f => Ok(Some(Header {
            len: 1,
            payload: 0,
            items: 2 * (marker & 0x0f) as u64,
            container: true,
        })),
        0x90..=0x9f => Ok(Some(Header {
            len: 1,
            payload: 0,
            items: (marker & 0x0f) as u64,
            container: true,
        })),
        0xa0..=0xbf => fixed(1, (marker & 0x1f) as u64),
        0xc1 => Err(()),
        0xc4 | 0xd9 => with_len(1, 1, true),
        0xc5 | 0xda => with_len(2, 1, true),
        0xc6 | 0xdb => with_len(4, 1, true),
        // ext 8/16/32: length, then a type byte, then the data.
        0xc7..=0xc9 => {
            let n = 1 << (marker - 0xc7);
            Ok(sized(n).map(|count| Header {
                len: 1 + n,
                payload: 1 + count,
                items: 0,
                container: false,
            }))
        }
        0xca | 0xce | 0xd2 => fixed(1, 4),
        0xcb | 0xcf | 0xd3 => fixed(1, 8),
        0xcc | 0xd0 => fixed(1, 1),
        0xcd | 0xd1 => fixed(1, 2),
        // fixext 1/2/4/8/16: a type byte plus 2^k data bytes.
        0xd4..=0xd8 => fixed(1, 1 + (1u64 << (marker - 0xd4))),
        0xdc => with_len(2, 1, false),
        0xdd => with_len(4, 1, false),
        0xde => with_len(2, 2, false),
        0xdf => with_len(4, 2, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_of_more_values_than_the_limit_is_refused_before_it_is_decoded() {
        let count = MAX_VALUES as u32 + 1;
        let mut message = vec![0xdd];
        message.extend_from_slice(&count.to_be_bytes());
        message.resize(5 + count as usize, 0xc0);
        let mut scanner = Scanner::new(64 << 20, 128);
        assert_eq!(
            scanner.scan(&message),
            Err(FrameError::TooManyValues { limit: MAX_VALUES })
        );
        // One value fewer (the array itself counts) is a message.
        let mut fits = vec![0xdd];
        fits.extend_from_slice(&(count - 2).to_be_bytes());
        fits.resize(5 + (count - 2) as usize, 0xc0);
        assert_eq!(
            Scanner::new(64 << 20, 128).scan(&fits),
            Ok(Some(fits.len()))
        );
    }

    fn encode(value: &rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, value).unwrap();
        out
    }

    fn sample() -> Vec<u8> {
        use rmpv::Value as V;
        encode(&V::Array(vec![
            V::from(0),
            V::from(70000),
            V::from("plugin.Step"),
            V::Array(vec![V::Map(vec![
                (V::from("EventId"), V::from(u64::MAX)),
                (V::from("Data"), V::Binary(vec![7; 300])),
                (V::from("x"), V::F64(1.5)),
                (V::from("y"), V::Ext(5, vec![1, 2, 3])),
                (V::from("s"), V::from("é".repeat(40))),
            ])]),
        ]))
    }

    #[test]
    fn whole_message_is_one_frame() {
        let bytes = sample();
        assert_eq!(
            Scanner::new(1 << 20, 64).scan(&bytes),
            Ok(Some(bytes.len()))
        );
    }

    #[test]
    fn every_split_point_resumes_to_the_same_frame() {
        let bytes = sample();
        for split in 0..bytes.len() {
            let mut scanner = Scanner::new(1 << 20, 64);
            assert_eq!(scanner.scan(&bytes[..split]), Ok(None), "split at {split}");
            assert_eq!(
                scanner.scan(&bytes),
                Ok(Some(bytes.len())),
                "split at {split}"
            );
        }
    }

    #[test]
    fn byte_by_byte_and_two_messages_in_one_buffer() {
        let mut bytes = sample();
        let first = bytes.len();
        bytes.extend(sample());
        let mut scanner = Scanner::new(1 << 20, 64);
        for end in 0..first {
            assert_eq!(scanner.scan(&bytes[..end]), Ok(None));
        }
        assert_eq!(scanner.scan(&bytes), Ok(Some(first)));
        assert_eq!(scanner.scan(&bytes[first..]), Ok(Some(first)));
    }

    #[test]
    fn declared_length_over_the_limit_fails_before_the_bytes_arrive() {
        // str32 announcing 4 GiB: refused from the 5-byte header alone.
        let header = [0xdb, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            Scanner::new(1 << 20, 64).scan(&header),
            Err(FrameError::TooLarge { limit: 1 << 20 })
        );
    }

    #[test]
    fn no_more_than_the_limit_is_buffered_for_a_partial_header() {
        // Found by the frame_decoder fuzz target: with a 1-byte limit, the first 4 bytes of a
        // map32 header were buffered while the scanner waited for the 5th.
        assert_eq!(
            Scanner::new(1, 32).scan(&[0xdf, 0x00, 0xa1, 0x6b]),
            Err(FrameError::TooLarge { limit: 1 })
        );
        // A complete message of exactly the limit is fine; one byte more is not.
        assert_eq!(Scanner::new(3, 32).scan(&[0x92, 1, 2]), Ok(Some(3)));
        assert_eq!(
            Scanner::new(3, 32).scan(&[0x93, 1, 2]),
            Err(FrameError::TooLarge { limit: 3 })
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = vec![0x91; 100];
        assert_eq!(
            Scanner::new(1 << 20, 32).scan(&deep),
            Err(FrameError::TooDeep { limit: 32 })
        );
    }

    #[test]
    fn the_depth_limit_itself_is_allowed_and_empty_containers_count() {
        // Found by the frame_decoder fuzz target's oracle on its first run: 32 levels were
        // refused as "deeper than 32", and empty arrays and maps were not counted at all.
        let mut at_limit = vec![0x91; 31];
        at_limit.push(0x90);
        let limit = Scanner::new(1 << 20, 32).scan(&at_limit);
        assert_eq!(limit, Ok(Some(32)));
        let mut over = vec![0x91; 32];
        over.push(0x80);
        assert_eq!(
            Scanner::new(1 << 20, 32).scan(&over),
            Err(FrameError::TooDeep { limit: 32 })
        );
    }

    #[test]
    fn the_never_used_byte_is_an_error() {
        assert_eq!(
            Scanner::new(1 << 20, 32).scan(&[0x94, 0x00, 0xc1]),
            Err(FrameError::InvalidMarker(2))
        );
    }
}
