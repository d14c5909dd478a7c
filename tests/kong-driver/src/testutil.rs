//! Helpers shared by the unit tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;

use crate::wire::FrameDecoder;

/// Parses the byte notation of docs/protocol.md §15: hex bytes separated by whitespace, and
/// `"quoted text"` standing for its ASCII bytes.
pub fn hex(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').expect("closing quote");
            out.extend_from_slice(&quoted.as_bytes()[..end]);
            rest = &quoted[end + 1..];
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            out.push(u8::from_str_radix(&rest[..end], 16).expect("hex byte"));
            rest = &rest[end..];
        }
        rest = rest.trim_start();
    }
    out
}

/// A socket path under the system temp dir, unique per test and process; the
/// file is removed when this guard is dropped at the end of the test.
pub struct SocketPath(PathBuf);

impl std::ops::Deref for SocketPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for SocketPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A fresh [`SocketPath`] named after the test.
pub fn socket_path(name: &str) -> SocketPath {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "kong-driver-{}-{n}-{name}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    SocketPath(path)
}

/// A fake plugin server: on any connection, records each request's raw bytes
/// and answers the n-th request overall with a `serverPid` notification followed
/// by `answers[n]` (requests beyond the script get no answer).
pub fn scripted_server(path: &Path, answers: Vec<Vec<u8>>) -> Arc<Mutex<Vec<Vec<u8>>>> {
    let listener = UnixListener::bind(path).expect("bind");
    let received = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(answers);
    let log = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (log, answers) = (Arc::clone(&log), Arc::clone(&answers));
            tokio::spawn(async move {
                let mut d = FrameDecoder::new();
                while let Ok((raw, _)) = d.read_frame(&mut s, Duration::from_secs(10)).await {
                    let n = {
                        let mut log = log.lock().unwrap();
                        log.push(raw);
                        log.len() - 1
                    };
                    let Some(answer) = answers.get(n) else {
                        continue;
                    };
                    let mut out = hex(r#"93 02 a9 "serverPid" cd 30 39"#);
                    out.extend_from_slice(answer);
                    if s.write_all(&out).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    received
}
