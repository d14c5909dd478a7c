//! A bare connection for protocol-level tests: send arbitrary bytes (whole, in
//! chunks, or byte by byte), read back whole MessagePack values with their exact
//! bytes, and detect that the server closed the connection.

use std::path::Path;
use std::time::Duration;

use rmpv::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::client::Request;
use crate::error::{Error, Result};
use crate::wire::FrameDecoder;

/// Default wait for [`RawConn::read_value`].
pub const RAW_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One raw connection to a server socket.
#[derive(Debug)]
pub struct RawConn {
    stream: UnixStream,
    decoder: FrameDecoder,
    timeout: Duration,
}

impl RawConn {
    /// Connects to the socket at `path`.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| Error::Connect {
                path: path.to_owned(),
                source,
            })?;
        Ok(RawConn {
            stream,
            decoder: FrameDecoder::new(),
            timeout: RAW_READ_TIMEOUT,
        })
    }

    /// Sets how long each read may wait.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Writes `bytes` in one write.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Writes `bytes` as separate writes of `chunk` bytes, pausing between them
    /// so the server really sees them split.
    pub async fn send_chunked(
        &mut self,
        bytes: &[u8],
        chunk: usize,
        pause: Duration,
    ) -> Result<()> {
        for (i, part) in bytes.chunks(chunk.max(1)).enumerate() {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            self.stream.write_all(part).await?;
        }
        Ok(())
    }

    /// Writes `bytes` one byte per write, 1 ms apart.
    pub async fn send_byte_by_byte(&mut self, bytes: &[u8]) -> Result<()> {
        self.send_chunked(bytes, 1, Duration::from_millis(1)).await
    }

    /// Writes `req` exactly as Kong would with message id `msgid`.
    pub async fn send_request(&mut self, msgid: u64, req: &Request) -> Result<()> {
        self.send(&req.encode(msgid)).await
    }

    /// Reads the next complete value: its exact bytes and its decoding. Fails with
    /// [`Error::NoData`] on EOF, [`Error::MissingBytes`] on EOF mid-value and
    /// [`Error::Timeout`] when nothing completes in time.
    pub async fn read_value(&mut self) -> Result<(Vec<u8>, Value)> {
        self.decoder
            .read_frame(&mut self.stream, self.timeout)
            .await
    }

    /// Reads exactly `len` bytes (a ProtoBuf:1 frame's length, then its payload), without the
    /// MessagePack decoder; [`Error::Closed`] if the server closes first.
    pub async fn read_exact(&mut self, len: usize) -> Result<Vec<u8>> {
        assert!(self.decoder.is_empty(), "MessagePack bytes are buffered");
        let mut buf = vec![0u8; len];
        match tokio::time::timeout(self.timeout, self.stream.read_exact(&mut buf)).await {
            Err(_) => Err(Error::Timeout(self.timeout)),
            Ok(Ok(_)) => Ok(buf),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Error::Closed),
            Ok(Err(e)) => Err(Error::Io(e)),
        }
    }

    /// Waits up to `wait` and reports whether the server closed (or reset) the
    /// connection. Bytes that arrive instead are kept for [`RawConn::read_value`]
    /// and the answer is `false`.
    pub async fn is_closed(&mut self, wait: Duration) -> bool {
        if !self.decoder.is_empty() {
            return false;
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(wait, self.stream.read(&mut buf)).await {
            Err(_) => false,
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(n)) => {
                self.decoder.push(&buf[..n]);
                false
            }
        }
    }

    /// Half-closes the connection (the server reads EOF), keeping it readable.
    pub async fn shutdown_write(&mut self) -> Result<()> {
        self.stream.shutdown().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{hex, socket_path};
    use crate::value::LuaValue;
    use tokio::net::UnixListener;

    /// Echo-like server: answers each request with `[1, msgid, nil, "ok"]`, closes
    /// the connection on undecodable input.
    fn serve(path: &Path) {
        let listener = UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut d = FrameDecoder::new();
                    while let Ok((_, v)) = d.read_frame(&mut s, Duration::from_secs(10)).await {
                        let msgid = v[1].as_u64().unwrap_or(0);
                        let reply = LuaValue::array([
                            LuaValue::int(1),
                            LuaValue::Num(msgid as f64),
                            LuaValue::Nil,
                            LuaValue::str("ok"),
                        ]);
                        if s.write_all(&reply.to_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }

    #[tokio::test]
    async fn byte_by_byte_request_then_garbage_closes() {
        let path = socket_path("raw");
        serve(&path);
        let mut c = RawConn::connect(&path).await.unwrap();
        c.send_byte_by_byte(&Request::close_instance(7).encode(300))
            .await
            .unwrap();
        let (raw, v) = c.read_value().await.unwrap();
        assert_eq!(raw, hex(r#"94 01 cd 01 2c c0 a2 "ok""#));
        assert_eq!(v[1].as_u64(), Some(300));
        assert!(!c.is_closed(Duration::from_millis(50)).await);
        c.send(&hex("c1")).await.unwrap();
        assert!(c.is_closed(Duration::from_secs(5)).await);
        assert!(matches!(c.read_value().await, Err(Error::NoData)));
    }

    #[tokio::test]
    async fn read_value_times_out() {
        let path = socket_path("rawto");
        serve(&path);
        let mut c = RawConn::connect(&path).await.unwrap();
        c.set_timeout(Duration::from_millis(50));
        assert!(matches!(c.read_value().await, Err(Error::Timeout(_))));
        c.send_chunked(
            &Request::close_instance(1).encode(1),
            3,
            Duration::from_millis(2),
        )
        .await
        .unwrap();
        c.set_timeout(Duration::from_secs(5));
        assert_eq!(
            c.read_value().await.unwrap().0,
            hex(r#"94 01 01 c0 a2 "ok""#)
        );
        c.shutdown_write().await.unwrap();
        assert!(c.is_closed(Duration::from_secs(5)).await);
    }
}
