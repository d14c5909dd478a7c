//! Kong's two wire protocols, MessagePack-RPC "MsgPack:1" (docs/protocol.md §6, §7; `frame`,
//! `rpc`) and "ProtoBuf:1" (§13; `protobuf`), behind one model of what Kong asks: a
//! [`Request`] from either, answered to a [`Caller`] in the caller's own protocol. A socket
//! serves both: a connection's first bytes say which it speaks ([`Protocol::opening`]).

pub(crate) mod frame;
pub(crate) mod protobuf;
pub(crate) mod rpc;

use rmpv::Value;

/// Which of Kong's protocols a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    MsgPack,
    ProtoBuf,
}

impl Protocol {
    /// The protocol a connection opening with `first` speaks, once its bytes tell; `None`
    /// until enough have arrived (at most 4). `max_frame_bytes` is the longest frame accepted.
    ///
    /// Every MsgPack:1 request opens with `94 00` (an array of 4, type 0), then its msgid: a
    /// fixint (`00`–`7f`) followed by the method name's string marker (`a0`–`bf`, `d9`–`db`),
    /// or a wider integer (`cc`–`d3`). A ProtoBuf:1 frame opens with its length in 4 bytes,
    /// little-endian on every machine Kong runs on, so a frame of 148 bytes opens `94 00 00 00`
    /// too: the length's top byte, 0 below 16 MiB, is never a string marker. Other than that,
    /// a first byte that opens no MessagePack array or map opens a frame, and a length beyond
    /// the limit cannot be one. A frame misread as MessagePack would have to be over 8 MiB.
    pub fn opening(first: &[u8], max_frame_bytes: usize) -> Option<Protocol> {
        use Protocol::{MsgPack, ProtoBuf};
        let opens_container = |byte: u8| matches!(byte, 0x80..=0x9f | 0xdc..=0xdf);
        match *first {
            [] => None,
            [byte, ..] if !opens_container(byte) => Some(ProtoBuf),
            [0x94, 0x00, msgid, ..] if msgid >= 0x80 => Some(MsgPack),
            [0x94, 0x00, _, top, ..] => Some(if top == 0 { ProtoBuf } else { MsgPack }),
            [a, b, c, d, ..] => {
                let len = u32::from_le_bytes([a, b, c, d]) as usize;
                Some(if len <= max_frame_bytes {
                    ProtoBuf
                } else {
                    MsgPack
                })
            }
            _ => None,
        }
    }
}

/// One whole message Kong sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    MsgPack(Value),
    /// A frame's payload: an `RpcCall` between events, a PDK reply inside one.
    ProtoBuf(Vec<u8>),
}

impl Message {
    /// The bytes Kong sent for it, to be read again elsewhere (a connection moving to a
    /// successor with a message it did not answer).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::MsgPack(value) => {
                let mut out = Vec::new();
                rmpv::encode::write_value(&mut out, value).expect("Vec write");
                out
            }
            Message::ProtoBuf(payload) => protobuf::frame::framed(payload),
        }
    }
}

/// A request of Kong's, whichever protocol carried it.
#[derive(Debug)]
pub enum Request {
    StartInstance {
        name: Vec<u8>,
        config: Vec<u8>,
    },
    CloseInstance {
        instance_id: i64,
    },
    HandleEvent {
        instance_id: i64,
        event_name: Vec<u8>,
    },
    /// MsgPack:1's `plugin.Step` and its typed variants, which are identical on the wire
    /// (protocol.md §7.4). ProtoBuf:1 answers PDK calls inside the HandleEvent instead.
    Step {
        event_id: u64,
        data: Value,
    },
    /// `plugin.StepError`: Kong's PDK call failed (never sent since Kong 3.0, protocol.md §7.5).
    StepError {
        event_id: u64,
        message: String,
    },
    /// MsgPack:1's `plugin.GetStatus`: the whole host (what `status` shows).
    GetStatus,
    /// ProtoBuf:1's `cmd_get_instance_status`: one instance.
    GetInstanceStatus {
        instance_id: i64,
    },
}

/// Who a reply goes to: the id it must echo, in the protocol it must be written in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Caller {
    /// The msgid, echoed exactly as received (Kong asserts on it).
    MsgPack(rpc::MsgId),
    /// The `RpcCall`'s `sequence`, which the `RpcReturn` carries back (Kong asserts on it).
    ProtoBuf(i64),
}

impl Caller {
    pub fn protocol(self) -> Protocol {
        match self {
            Caller::MsgPack(_) => Protocol::MsgPack,
            Caller::ProtoBuf(_) => Protocol::ProtoBuf,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Protocol::{self, MsgPack, ProtoBuf};

    const LIMIT: usize = 64 << 20;

    #[test]
    fn a_protobuf_frame_of_148_bytes_opens_like_a_msgpack_request_and_is_told_apart_by_byte_3() {
        assert_eq!(Protocol::opening(&[0x94, 0x00, 0x00], LIMIT), None);
        assert_eq!(
            Protocol::opening(&[0x94, 0x00, 0x00, 0x00], LIMIT),
            Some(ProtoBuf)
        );
        // [0, 0, "plugin.GetStatus", …]: msgid 0, then the method's fixstr.
        assert_eq!(
            Protocol::opening(&[0x94, 0x00, 0x00, 0xb0], LIMIT),
            Some(MsgPack)
        );
    }

    #[test]
    fn msgpack_requests_are_known_by_their_msgid_and_method_marker() {
        // msgid 300 (uint16) and 70000 (uint32, whose high byte is 0).
        assert_eq!(
            Protocol::opening(&[0x94, 0x00, 0xcd, 0x01], LIMIT),
            Some(MsgPack)
        );
        assert_eq!(
            Protocol::opening(&[0x94, 0x00, 0xce, 0x00, 0x01], LIMIT),
            Some(MsgPack)
        );
        // Bytes MessagePack never uses are left to its decoder to name.
        assert_eq!(Protocol::opening(&[0x94, 0x00, 0xc1], LIMIT), Some(MsgPack));
        // A map where the request array belongs: as a frame length it is 1.7 GB.
        assert_eq!(
            Protocol::opening(&[0x81, 0xa6, b'm', b'e'], LIMIT),
            Some(MsgPack)
        );
    }

    #[test]
    fn protobuf_frames_are_known_by_their_length() {
        // Kong's HandleEvent: a short frame, whose first byte opens no MessagePack container.
        assert_eq!(Protocol::opening(&[0x12], LIMIT), Some(ProtoBuf));
        // A length whose low byte is a fixarray marker, within the limit.
        assert_eq!(
            Protocol::opening(&[0x93, 0x01, 0x00, 0x00], LIMIT),
            Some(ProtoBuf)
        );
        assert_eq!(Protocol::opening(&[0x93, 0x01, 0x00], LIMIT), None);
        assert_eq!(
            Protocol::opening(&[0x93, 0x01, 0x00, 0x00], 100),
            Some(MsgPack)
        );
    }
}
