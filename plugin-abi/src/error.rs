//! The one error type of the PDK: every PDK call and every handler returns it, so `?` works
//! throughout a plugin.

use std::fmt;

/// What went wrong, for code that wants to react differently to each case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The event is over (`kong.response.exit` was called, Kong abandoned it, or the host is
    /// shutting down): no further PDK call can succeed.
    EventEnded,
    /// Kong reported an error for a PDK call.
    Kong,
    /// The host rejected the call as malformed.
    InvalidCall,
    /// Kong's answer did not have the shape the typed PDK method expects.
    UnexpectedResult,
    /// The plugin's configuration could not be used.
    Config,
    /// Raised by plugin code.
    Plugin,
}

/// A PDK or plugin error: a kind plus a message saying what happened, with context.
///
/// Like `anyhow::Error`, it converts from any `std::error::Error`, so plugin code can use `?` on
/// its own fallible calls too.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// `Result` with the PDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// A plugin-raised error with this message.
    pub fn msg(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Plugin, message)
    }

    /// What went wrong, to react to it.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, as `Display` prints it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(error: E) -> Self {
        Error::msg(error.to_string())
    }
}
