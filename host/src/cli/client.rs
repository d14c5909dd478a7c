//! A minimal blocking client of the host's own protocol, for the CLI's `status`, `doctor` and
//! `wait-ready` commands.

use crate::wire::frame::Frames;
use rmpv::Value;
use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

/// Sends `[0, 1, method, [param]]` and returns the result, skipping notifications.
pub fn call(socket: &Path, method: &str, param: Value) -> Result<Value, String> {
    call_within(socket, method, param, Duration::from_secs(10))
}

/// [`call`], giving up when a read or write waits longer than `timeout`.
pub fn call_within(
    socket: &Path,
    method: &str,
    param: Value,
    timeout: Duration,
) -> Result<Value, String> {
    let mut stream =
        UnixStream::connect(socket).map_err(|error| format!("cannot connect: {error}"))?;
    let timeout = Some(timeout.max(Duration::from_millis(1)));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
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
        while let Some(reply) = frames.next_value()? {
            match reply.as_array().map(Vec::as_slice) {
                Some([kind, ..]) if kind.as_u64() == Some(2) => continue,
                Some([_, _, Value::Nil, result]) => return Ok(result.clone()),
                Some([_, _, error, _]) => return Err(format!("the host answered: {error}")),
                _ => return Err(format!("not a reply: {reply}")),
            }
        }
        let read = stream
            .read(&mut chunk)
            .map_err(|error| match error.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    "no answer within the timeout".to_string()
                }
                _ => format!("cannot read: {error}"),
            })?;
        if read == 0 {
            return Err("the host closed the connection".into());
        }
        frames.buffer().extend_from_slice(&chunk[..read]);
    }
}
