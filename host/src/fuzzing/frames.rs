//! `frame_decoder`: the frame scanner under every chunking, against rmpv as the reference
//! decoder.

use crate::wire::frame::{FrameError, Scanner};
use rmpv::Value;

/// Input: `[depth, len_hi, len_lo, n, size_1 … size_n, stream …]`: the nesting limit (1–48),
/// the frame limit (1–65536 bytes), and up to 16 read sizes after which the rest of the stream
/// arrives in one read.
///
/// Checks: nothing panics; whenever the scanner asks for more bytes, the buffer holds no more
/// than the frame limit; every frame is exactly one MessagePack value within both limits, and
/// the frames are the stream's bytes in order; a refusal is right about the message; bytes left
/// over at the end hold no complete message; and all of it is the same whether the stream
/// arrives at once or in those reads.
pub fn frame_decoder(data: &[u8]) {
    let Some((&[depth, len_hi, len_lo, n], rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let limits = Limits {
        max_len: 1 + u16::from_be_bytes([len_hi, len_lo]) as usize,
        max_depth: 1 + depth as usize % 48,
    };
    let (sizes, stream) = rest.split_at((n as usize % 17).min(rest.len()));
    let whole = limits.scan_stream(stream, &[]);
    let chunked = limits.scan_stream(stream, sizes);
    assert_eq!(
        whole, chunked,
        "the result depends on how the stream was read"
    );
}

#[derive(Clone, Copy)]
struct Limits {
    max_len: usize,
    max_depth: usize,
}

/// What a connection made of a stream: the frame lengths, then how it stopped.
#[derive(Debug, PartialEq)]
struct Scanned {
    frames: Vec<usize>,
    end: End,
}

#[derive(Debug, PartialEq)]
enum End {
    /// The stream ran out with this many bytes of an incomplete message buffered.
    Waiting(usize),
    Refused(FrameError),
}

impl Limits {
    /// Feeds `stream` the way a connection reads it: a read of each of `sizes` bytes, then the
    /// rest; after each read, takes every complete frame off the front of the buffer.
    fn scan_stream(self, stream: &[u8], sizes: &[u8]) -> Scanned {
        let mut scanner = Scanner::new(self.max_len, self.max_depth);
        let mut buffer = Vec::new();
        let mut frames = Vec::new();
        let (mut read, mut consumed) = (0, 0);
        let reads = sizes.iter().map(|&size| size.max(1) as usize);
        for size in reads.chain([stream.len()]) {
            let end = (read + size).min(stream.len());
            buffer.extend_from_slice(&stream[read..end]);
            read = end;
            loop {
                match scanner.scan(&buffer) {
                    Ok(Some(len)) => {
                        self.check_frame(&buffer[..len]);
                        assert_eq!(buffer[..len], stream[consumed..consumed + len]);
                        consumed += len;
                        frames.push(len);
                        buffer.drain(..len);
                    }
                    Ok(None) => {
                        assert!(
                            buffer.len() <= self.max_len,
                            "{} bytes buffered for one message, over the {}-byte limit",
                            buffer.len(),
                            self.max_len
                        );
                        break;
                    }
                    Err(error) => {
                        self.check_refusal(&buffer, &error);
                        return Scanned {
                            frames,
                            end: End::Refused(error),
                        };
                    }
                }
            }
        }
        assert!(
            buffer.is_empty() || rmpv::decode::read_value(&mut &buffer[..]).is_err(),
            "the scanner waits for more bytes, but the buffer holds a complete message"
        );
        Scanned {
            frames,
            end: End::Waiting(buffer.len()),
        }
    }

    fn check_frame(self, frame: &[u8]) {
        assert!(!frame.is_empty() && frame.len() <= self.max_len);
        let mut rest = frame;
        let value = rmpv::decode::read_value(&mut rest)
            .unwrap_or_else(|error| panic!("a frame rmpv cannot decode: {error}"));
        assert!(rest.is_empty(), "a frame holds more than one value");
        assert!(
            depth(&value) <= self.max_depth,
            "a frame nests {} levels, over the limit of {}",
            depth(&value),
            self.max_depth
        );
    }

    /// A refusal must be right: what rmpv makes of the buffered message breaks the named limit.
    fn check_refusal(self, buffer: &[u8], error: &FrameError) {
        let mut rest = buffer;
        let decoded = rmpv::decode::read_value(&mut rest);
        let len = buffer.len() - rest.len();
        match (error, decoded) {
            // rmpv reads 0xc1 as nil, so it is no judge here; but the byte must be 0xc1 and
            // stand where a value starts: as nil, it no longer stops the scan there.
            (FrameError::InvalidMarker(at), _) => {
                assert_eq!(buffer.get(*at), Some(&0xc1));
                let mut as_nil = buffer.to_vec();
                as_nil[*at] = 0xc0;
                let rescanned = Scanner::new(self.max_len, self.max_depth).scan(&as_nil);
                assert_ne!(rescanned, Err(FrameError::InvalidMarker(*at)));
            }
            (FrameError::TooLarge { .. }, Ok(_)) => assert!(len > self.max_len),
            (FrameError::TooDeep { .. }, Ok(value)) => assert!(depth(&value) > self.max_depth),
            (FrameError::TooManyValues { limit }, Ok(value)) => assert!(values(&value) > *limit),
            // Not all there yet: the header that gave it away is all the scanner had.
            (_, Err(_)) => {}
        }
    }
}

/// Values in a message, containers and their contents alike: 3 for `[1, 2]`.
fn values(value: &Value) -> u64 {
    1 + match value {
        Value::Array(items) => items.iter().map(values).sum(),
        Value::Map(entries) => entries.iter().map(|(k, v)| values(k) + values(v)).sum(),
        _ => 0,
    }
}

/// Containers within containers, counting the outermost: 0 for a scalar, 1 for `[1, 2]`.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| depth(k).max(depth(v)))
                .max()
                .unwrap_or(0)
        }
        _ => 0,
    }
}
