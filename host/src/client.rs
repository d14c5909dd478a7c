//! A minimal blocking client of the host's own protocol, for the CLI's `status` command.

use crate::frame::Frames;
use rmpv::Value;
use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

/// Sends `[0, 1, method, [param]]` and returns the result, skipping notifications.
pub fn call(socket: &Path, method: &str, param: Value) -> Result<Value, String> {
    let mut stream =
        UnixStream::connect(socket).map_err(|error| format!("cannot connect: {error}"))?;
    let timeout = Some(Duration::from_secs(10));
    stream
        .set_read_timeout(timeout)
        .map_err(|e| e.to_string())?;
    let mut request = Vec::new();
    let message = Value::Array(vec![
        Value::from(0),
        Value::from(1),
        Value::from(method),
        Value::Array(vec![param]),
    ]);
    rmpv::encode::write_value(&mut request, &message).expect("Vec write");
    stream
        .write_all(&request)
        .map_err(|error| format!("cannot send: {error}"))?;

    let mut frames = Frames::new(64 << 20, 128);
    let mut chunk = [0u8; 8192];
    loop {
        while let Some(reply) = frames.next_message()? {
            match reply.as_array().map(Vec::as_slice) {
                Some([kind, ..]) if kind.as_u64() == Some(2) => continue,
                Some([_, _, Value::Nil, result]) => return Ok(result.clone()),
                Some([_, _, error, _]) => return Err(format!("the host answered: {error}")),
                _ => return Err(format!("not a reply: {reply}")),
            }
        }
        let read = stream
            .read(&mut chunk)
            .map_err(|error| format!("cannot read: {error}"))?;
        if read == 0 {
            return Err("the host closed the connection".into());
        }
        frames.buffer().extend_from_slice(&chunk[..read]);
    }
}
