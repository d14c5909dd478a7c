//! The one error type of the PDK: every PDK call and every handler returns it, so `?` works
//! throughout a plugin.
//!
//! [`Error`] follows `anyhow::Error`'s design. Rust's coherence rules allow a type either a
//! blanket `impl<E: std::error::Error> From<E>` (what makes `?` work on any error) or an
//! `impl std::error::Error` (the two would overlap on `From<Error> for Error`), not both. The
//! PDK keeps `?` on any error, and gives everything `std::error::Error` is used for otherwise:
//!
//! * the source chain: [`Error::chain`], [`Error::root_cause`], and `Deref` to
//!   `dyn std::error::Error`, so `error.source()` works as on any error;
//! * conversion into `Box<dyn std::error::Error + Send + Sync>`, so `?` also works from a
//!   PDK error in a function that returns a boxed error, and `AsRef<dyn std::error::Error>`;
//! * [`Context`]: `.context("loading keys")?` on any `Result` (or `Option`) adds what the code
//!   was doing, keeping the error it wraps as its source.
//!
//! `{}` prints the error's own message; `{:#}` prints the chain, `loading keys: no such file`,
//! which is what the host logs for a failed handler.

use std::{error::Error as StdError, fmt, ops::Deref, sync::Arc};

/// What went wrong, for code that wants to react differently to each case.
///
/// Non-exhaustive: later releases may add kinds, so a `match` needs a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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

/// A PDK or plugin error: a kind, a message saying what happened, and the error that caused
/// it, if any.
///
/// Like `anyhow::Error`, it converts from any `std::error::Error`, so plugin code can use `?` on
/// its own fallible calls too; the converted error stays reachable as the source chain.
///
/// ```
/// use kong_rust_pdk::prelude::*;
///
/// fn port(text: &str) -> Result<u16> {
///     let port: u16 = text.parse().context("reading the port")?;
///     Ok(port)
/// }
///
/// let error = port("http").unwrap_err();
/// assert_eq!(error.to_string(), "reading the port");
/// assert_eq!(format!("{error:#}"), "reading the port: invalid digit found in string");
/// assert_eq!(error.chain().count(), 2);
/// assert_eq!(error.kind(), ErrorKind::Plugin);
/// ```
#[derive(Clone)]
pub struct Error(Arc<Inner>);

/// `Result` with the PDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error behind an [`Error`]: what `Deref` exposes as a `std::error::Error`.
struct Inner {
    kind: ErrorKind,
    message: String,
    cause: Cause,
}

enum Cause {
    None,
    /// A converted error: its message is this error's, its source this error's source.
    Converted(Box<dyn StdError + Send + Sync + 'static>),
    /// The error `context` was added to: this error's source.
    Context(Error),
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::build(kind, message.into(), Cause::None)
    }

    /// A plugin-raised error with this message.
    pub fn msg(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Plugin, message)
    }

    fn build(kind: ErrorKind, message: String, cause: Cause) -> Self {
        Error(Arc::new(Inner {
            kind,
            message,
            cause,
        }))
    }

    /// This error with `context` (what the code was doing) on top: the result prints
    /// `context`, keeps this error's kind, and has this error as its source.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Error::build(self.kind(), context.to_string(), Cause::Context(self))
    }

    /// What went wrong, to react to it.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The message, as `Display` prints it (without the causes).
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// This error, then its source, then the source's source, and so on.
    pub fn chain(&self) -> impl Iterator<Item = &(dyn StdError + 'static)> {
        let mut next: Option<&(dyn StdError + 'static)> = Some(&*self.0);
        std::iter::from_fn(move || {
            let current = next?;
            next = current.source();
            Some(current)
        })
    }

    /// The last error of [`Error::chain`]: the one that started it.
    pub fn root_cause(&self) -> &(dyn StdError + 'static) {
        self.chain()
            .last()
            .expect("the chain starts with this error")
    }
}

impl fmt::Display for Error {
    /// `{}`: the message; `{:#}`: the message and every cause, separated by `: `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)?;
        if f.alternate() {
            for cause in self.chain().skip(1) {
                write!(f, ": {cause}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Error");
        debug
            .field("kind", &self.0.kind)
            .field("message", &self.0.message);
        let causes: Vec<String> = self.chain().skip(1).map(ToString::to_string).collect();
        if !causes.is_empty() {
            debug.field("causes", &causes);
        }
        debug.finish()
    }
}

impl fmt::Display for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}

impl StdError for Inner {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.cause {
            Cause::None => None,
            Cause::Converted(error) => error.source(),
            Cause::Context(error) => Some(&*error.0),
        }
    }
}

impl Deref for Error {
    type Target = dyn StdError + Send + Sync + 'static;

    /// The error as a `std::error::Error`: `error.source()`, `error.is::<T>()` on the chain.
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl AsRef<dyn StdError + Send + Sync + 'static> for Error {
    fn as_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.0
    }
}

impl AsRef<dyn StdError + 'static> for Error {
    fn as_ref(&self) -> &(dyn StdError + 'static) {
        &*self.0
    }
}

impl From<Error> for Box<dyn StdError + Send + Sync + 'static> {
    fn from(error: Error) -> Self {
        Box::new(ErrorAsStd(error))
    }
}

impl From<Error> for Box<dyn StdError + 'static> {
    fn from(error: Error) -> Self {
        Box::new(ErrorAsStd(error))
    }
}

/// An [`Error`] boxed as a `std::error::Error`.
struct ErrorAsStd(Error);

impl fmt::Display for ErrorAsStd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for ErrorAsStd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl StdError for ErrorAsStd {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0 .0.source()
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for Error {
    fn from(error: E) -> Self {
        Error::build(
            ErrorKind::Plugin,
            error.to_string(),
            Cause::Converted(Box::new(error)),
        )
    }
}

/// `.context(…)` and `.with_context(|| …)` on a `Result` with any error, or an `Option`: what the
/// code was doing, on top of the error (or instead of `None`), as a PDK [`Error`].
///
/// ```
/// use kong_rust_pdk::prelude::*;
///
/// fn key(kong: &Kong) -> Result<String> {
///     kong.request
///         .get_header("x-api-key")
///         .context("reading the key")?
///         .with_context(|| "no x-api-key header".to_string())
/// }
/// # fn main() {}
/// ```
pub trait Context<T>: private::Sealed {
    /// Adds `context` to the error (or makes an error of it, for `None`).
    fn context(self, context: impl fmt::Display) -> Result<T>;

    /// Adds the context `f` returns, computed only on error.
    fn with_context<C: fmt::Display>(self, f: impl FnOnce() -> C) -> Result<T>;
}

mod private {
    pub trait Sealed {}
    impl<T, E> Sealed for std::result::Result<T, E> where E: super::IntoError {}
    impl<T> Sealed for Option<T> {}
}

/// Errors `Context` accepts: every `std::error::Error`, and [`Error`] itself.
#[doc(hidden)]
pub trait IntoError {
    /// The error as a PDK [`Error`].
    fn into_error(self) -> Error;
}

impl<E: StdError + Send + Sync + 'static> IntoError for E {
    fn into_error(self) -> Error {
        Error::from(self)
    }
}

impl IntoError for Error {
    fn into_error(self) -> Error {
        self
    }
}

impl<T, E: IntoError> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|error| error.into_error().context(context))
    }

    fn with_context<C: fmt::Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|error| error.into_error().context(f()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.ok_or_else(|| Error::msg(context.to_string()))
    }

    fn with_context<C: fmt::Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| Error::msg(f().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer")
        }
    }

    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    fn failing() -> std::result::Result<(), Outer> {
        Err(Outer(std::io::Error::other("inner")))
    }

    #[test]
    fn a_converted_error_keeps_its_source_chain() {
        let error: Error = failing().unwrap_err().into();
        let chain: Vec<String> = error.chain().map(ToString::to_string).collect();
        assert_eq!(chain, ["outer", "inner"]);
        assert_eq!(error.to_string(), "outer");
        assert_eq!(error.root_cause().to_string(), "inner");
        assert_eq!(error.source().unwrap().to_string(), "inner");
    }

    #[test]
    fn context_adds_a_link_and_keeps_the_kind() {
        let ended = Error::new(ErrorKind::EventEnded, "the event is over");
        let error = Err::<(), _>(ended).context("loading keys").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::EventEnded);
        assert_eq!(error.to_string(), "loading keys");
        assert_eq!(format!("{error:#}"), "loading keys: the event is over");
        let error = failing().context("reading").unwrap_err();
        assert_eq!(format!("{error:#}"), "reading: outer: inner");
        assert_eq!(error.kind(), ErrorKind::Plugin);
    }

    #[test]
    fn question_mark_works_both_ways() {
        fn pdk() -> Result<()> {
            failing()?;
            Ok(())
        }
        fn boxed() -> std::result::Result<(), Box<dyn StdError + Send + Sync>> {
            pdk()?;
            Ok(())
        }
        let boxed = boxed().unwrap_err();
        assert_eq!(boxed.to_string(), "outer");
        assert_eq!(boxed.source().unwrap().to_string(), "inner");
        assert_eq!(
            None::<u8>.context("no value").unwrap_err().to_string(),
            "no value"
        );
    }
}
