//! ProtoBuf:1 framing: each message is a 4-byte length, then that many bytes. Kong packs the
//! length with lua_pack's `"I"`, a native-endian unsigned int (pb_rpc.lua, `write_frame`), so
//! it is little-endian on every machine Kong runs on, and so is this host's.

use crate::wire::frame::FrameError;

/// Bytes of the length before each frame.
pub const LENGTH_BYTES: usize = 4;

/// `payload` with its length before it.
pub fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(LENGTH_BYTES + payload.len());
    push_frame(&mut out, payload);
    out
}

/// Appends `payload` as a frame.
pub fn push_frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("a frame under 4 GiB");
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(payload);
}

/// The length of the payload of the frame at the start of `buf` once all of it is there,
/// `None` until then. A length over `max_len` is refused as soon as it is read, before any of
/// its bytes are waited for.
pub fn complete(buf: &[u8], max_len: usize) -> Result<Option<usize>, FrameError> {
    let Some(&length) = buf.first_chunk::<LENGTH_BYTES>() else {
        return Ok(None);
    };
    let len = u32::from_ne_bytes(length) as usize;
    if len > max_len {
        return Err(FrameError::TooLarge { limit: max_len });
    }
    Ok((buf.len() - LENGTH_BYTES >= len).then_some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_complete_only_once_every_byte_of_it_is_there() {
        let frame = framed(b"hello");
        assert_eq!(frame, [5, 0, 0, 0, b'h', b'e', b'l', b'l', b'o']);
        for end in 0..frame.len() {
            assert_eq!(complete(&frame[..end], 64), Ok(None), "{end} bytes");
        }
        assert_eq!(complete(&frame, 64), Ok(Some(5)));
        assert_eq!(complete(&[0, 0, 0, 0], 64), Ok(Some(0)));
    }

    #[test]
    fn a_length_over_the_limit_is_refused_from_its_four_bytes() {
        assert_eq!(
            complete(&[0xff, 0xff, 0xff, 0x7f], 1 << 20),
            Err(FrameError::TooLarge { limit: 1 << 20 })
        );
        assert_eq!(complete(&[4, 0, 0, 0, 1, 2, 3, 4], 4), Ok(Some(4)));
        assert_eq!(
            complete(&[5, 0, 0, 0], 4),
            Err(FrameError::TooLarge { limit: 4 })
        );
    }
}
