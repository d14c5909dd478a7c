//! `protobuf_frames`: the ProtoBuf:1 side of a connection, from the protocol sniff through the
//! frame decoder to the RPC envelope, under every chunking, against a plain reference reading
//! of the frames.

use crate::wire::{
    frame::Frames,
    protobuf::{envelope, frame::LENGTH_BYTES, messages as pb},
    Message, Protocol,
};
use prost::Message as _;

/// Input: `[len_hi, len_lo, n, size_1 … size_n, stream …]`: the frame limit (1–65536 bytes) and
/// up to 16 read sizes after which the rest of the stream arrives in one read.
///
/// Checks: nothing panics; the protocol a stream's opening bytes pick never changes as more of
/// them arrive; a stream read as ProtoBuf:1 yields exactly the frames a plain reading of
/// "4-byte little-endian length, then the payload" finds, and is refused exactly where that
/// reading meets a length over the limit, never after buffering more than one frame; all of it
/// the same whether the stream arrives at once or in those reads; every frame's `RpcCall` is
/// read or refused without a panic, a call that runs plugin code is one the envelope reads as
/// StartInstance or HandleEvent, and a read call's `sequence` comes back in its `RpcReturn`.
pub fn protobuf_frames(data: &[u8]) {
    let Some((&[len_hi, len_lo, n], rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let max_len = 1 + u16::from_be_bytes([len_hi, len_lo]) as usize;
    let (sizes, stream) = rest.split_at((n as usize % 17).min(rest.len()));

    let mut decided = None;
    for end in 0..=stream.len().min(16) {
        match (decided, Protocol::opening(&stream[..end], max_len)) {
            (Some(before), now) => assert_eq!(Some(before), now, "after {end} bytes"),
            (None, now) => decided = now,
        }
    }

    let whole = read(stream, &[], max_len);
    let chunked = read(stream, sizes, max_len);
    assert_eq!(
        whole, chunked,
        "the result depends on how the stream was read"
    );
    if decided != Some(Protocol::ProtoBuf) {
        return;
    }
    let (frames, refused) = reference(stream, max_len);
    assert_eq!(whole.frames, frames, "frames other than the stream's");
    assert_eq!(whole.refused, refused, "refused {:?}", whole.refused);
    for frame in &whole.frames {
        check_call(frame);
    }
}

#[derive(Debug, PartialEq)]
struct Read {
    frames: Vec<Vec<u8>>,
    refused: bool,
}

/// What a connection makes of `stream` arriving in reads of `sizes` bytes, then the rest.
fn read(stream: &[u8], sizes: &[u8], max_len: usize) -> Read {
    let mut incoming = Frames::from_kong(max_len, 32);
    let mut frames = Vec::new();
    let mut at = 0;
    let reads = sizes.iter().map(|&size| size.max(1) as usize);
    for size in reads.chain([stream.len()]) {
        let end = (at + size).min(stream.len());
        incoming.buffer().extend_from_slice(&stream[at..end]);
        at = end;
        loop {
            match incoming.next_message() {
                Ok(Some(Message::ProtoBuf(payload))) => frames.push(payload),
                // MsgPack:1 has its own target (frame_decoder); its frames are not compared.
                Ok(Some(Message::MsgPack(_))) => frames.push(Vec::new()),
                Ok(None) => {
                    if incoming.protocol() == Some(Protocol::ProtoBuf) {
                        let buffered = incoming.buffer().len();
                        assert!(
                            buffered < LENGTH_BYTES + max_len,
                            "{buffered} bytes buffered, more than a frame of the {max_len}-byte limit"
                        );
                    }
                    break;
                }
                Err(_) => {
                    return Read {
                        frames,
                        refused: true,
                    }
                }
            }
        }
    }
    Read {
        frames,
        refused: false,
    }
}

/// The frames of `stream` read plainly, and whether a length over the limit stops it.
fn reference(stream: &[u8], max_len: usize) -> (Vec<Vec<u8>>, bool) {
    let mut frames = Vec::new();
    let mut rest = stream;
    while let Some((length, after)) = rest.split_first_chunk::<LENGTH_BYTES>() {
        let len = u32::from_le_bytes(*length) as usize;
        if len > max_len {
            return (frames, true);
        }
        if after.len() < len {
            break;
        }
        frames.push(after[..len].to_vec());
        rest = &after[len..];
    }
    (frames, false)
}

fn check_call(frame: &[u8]) {
    if let Ok((sequence, _)) = envelope::parse(frame) {
        let reply = envelope::reply(sequence, envelope::Return::Empty);
        let decoded = pb::RpcReturn::decode(&reply[LENGTH_BYTES..]).expect("our own RpcReturn");
        assert_eq!(decoded.sequence, sequence);
    }
}
