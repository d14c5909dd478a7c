//! The single error type of the driver.

use std::path::PathBuf;
use std::time::Duration;

/// Why a call (or a raw read) failed. Variants mirror the distinct outcomes Kong
/// itself distinguishes (protocol.md §6.3, §12) so tests can assert on them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be connected (Kong logs `trying to connect: <err>`).
    #[error("trying to connect to {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A read waited longer than the read timeout (Kong: 60 s, then `no data`).
    #[error("timeout: nothing received for {0:?}")]
    Timeout(Duration),
    /// The server closed the connection before any byte of a message arrived.
    #[error("no data: the plugin server closed the connection")]
    NoData,
    /// The server closed the connection in the middle of a message.
    #[error("missing bytes: the plugin server closed the connection mid-message")]
    MissingBytes,
    /// The server sent something Kong would reject (wrong message type, wrong
    /// msgid, malformed result...).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// ProtoBuf:1: the server closed the connection (ngx's error, which Kong's `handle_event`
    /// reads as a lost server: it restarts the instance and replays the phase).
    #[error("closed")]
    Closed,
    /// ProtoBuf:1: Kong could not serve a PDK call the server sent (`method "…" not found`, an
    /// undecodable argument): the request fails (500 on Kong 3.8+).
    #[error("Kong: {0}")]
    Kong(String),
    /// The server answered with an error string (the exact string, lossily UTF-8).
    #[error("server error: {0}")]
    Server(String),
}

impl Error {
    /// The server's error string, if this is a server-reported error.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            Error::Server(s) => Some(s),
            _ => None,
        }
    }

    /// Whether Kong would treat this as a lost instance and restart it (protocol.md §9.4):
    /// a server error containing "no plugin instance", case-insensitively.
    pub fn is_no_plugin_instance(&self) -> bool {
        self.server_message()
            .is_some_and(|s| s.to_lowercase().contains("no plugin instance"))
    }
}

impl Error {
    /// Whether ProtoBuf:1's `handle_event` restarts the instance and replays the phase instead
    /// of answering 500: its error says "closed" or "no plugin instance".
    pub fn kong_replays(&self) -> bool {
        let text = self.to_string().to_lowercase();
        matches!(self, Error::Closed) || text.contains("no plugin instance")
    }
}

/// Result alias for the driver.
pub type Result<T> = std::result::Result<T, Error>;
