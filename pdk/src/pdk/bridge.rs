use super::{value, Headers};
use crate::{
    abi::{Host, HostError, HostErrorKind, HostRef},
    Error, ErrorKind, Result,
};
use abi_stable::std_types::{RResult, RSlice, RStr};
use rmpv::Value;
use serde::de::DeserializeOwned;

/// Something that executes PDK calls: the host across the ABI, or an in-memory Kong in tests.
pub trait Call {
    /// `args` is a MessagePack array; the answer is one MessagePack value (`nil` for nothing).
    fn call(&self, method: &str, args: &[u8]) -> Result<Vec<u8>>;
}

impl Call for HostRef<'_> {
    fn call(&self, method: &str, args: &[u8]) -> Result<Vec<u8>> {
        // Fully qualified: the trait object also has a `call`, the ABI one.
        match Host::call(self, RStr::from_str(method), RSlice::from_slice(args)) {
            RResult::ROk(bytes) => Ok(bytes.into_vec()),
            RResult::RErr(error) => Err(host_error(error)),
        }
    }
}

/// The PDK error for a failed host call. (A function, not `From`: `HostError` is another crate's
/// type, which could implement `std::error::Error` and so overlap `Error`'s blanket `From`.)
fn host_error(error: HostError) -> Error {
    let kind = match error.kind {
        HostErrorKind::EventEnded => ErrorKind::EventEnded,
        HostErrorKind::InvalidCall => ErrorKind::InvalidCall,
        // Kong, and any kind a later ABI release adds.
        _ => ErrorKind::Kong,
    };
    Error::new(kind, error.message.into_string())
}

/// A copyable handle every PDK module holds; encodes arguments and decodes results.
#[derive(Clone, Copy)]
pub struct Bridge<'a> {
    host: &'a dyn Call,
}

impl<'a> Bridge<'a> {
    pub(crate) fn new(host: &'a dyn Call) -> Self {
        Bridge { host }
    }

    /// One PDK call; Kong's result undecoded (`Value::Nil` when Kong returned nothing).
    pub fn call(&self, method: &str, args: Vec<Value>) -> Result<Value> {
        let mut encoded = Vec::with_capacity(64);
        rmpv::encode::write_value(&mut encoded, &Value::Array(args))
            .expect("writing to a Vec cannot fail");
        let answer = self.host.call(method, &encoded)?;
        rmpv::decode::read_value(&mut answer.as_slice()).map_err(|error| {
            Error::new(
                ErrorKind::UnexpectedResult,
                format!("{method}: the host returned undecodable MessagePack: {error}"),
            )
        })
    }

    /// A call whose result is decoded by `decode`, with the method named in any decoding error.
    pub(crate) fn call_as<T>(
        &self,
        method: &str,
        args: Vec<Value>,
        decode: impl FnOnce(Value) -> Result<T, String>,
    ) -> Result<T> {
        let value = self.call(method, args)?;
        decode(value).map_err(|expected| {
            Error::new(
                ErrorKind::UnexpectedResult,
                format!("{method}: Kong returned {expected}"),
            )
        })
    }

    /// A call without arguments whose result is text.
    pub(crate) fn text(&self, method: &str) -> Result<String> {
        self.call_as(method, vec![], value::string)
    }

    /// A `get_header(name)` call: the header's first value, `None` when absent.
    pub(crate) fn header(&self, method: &str, name: &str) -> Result<Option<String>> {
        self.call_as(method, vec![Value::from(name)], value::optional_string)
    }

    /// A `get_headers(max_headers)` call: Kong's multi-map.
    pub(crate) fn headers(&self, method: &str, max_headers: Option<u32>) -> Result<Headers> {
        let args = max_headers.map(Value::from).into_iter().collect();
        self.call_as(method, args, value::headers)
    }

    /// A `get_body(mimetype, …)` call (`method`) on a message whose headers `get_header` reads.
    /// Kong's default `mimetype` is the message's `Content-Type`: when `later` arguments follow,
    /// it is read here, since a nil would lose them (protocol.md §6.3); without one Kong could not
    /// decode the body, hence `None`.
    pub(crate) fn body<T: DeserializeOwned>(
        &self,
        (method, get_header): (&str, &str),
        mimetype: Option<&str>,
        later: Vec<(Option<Value>, Value)>,
    ) -> Result<Option<T>> {
        let mimetype = match mimetype {
            Some(mimetype) => Some(mimetype.to_string()),
            None if later.iter().any(|(arg, _)| arg.is_some()) => {
                match self.header(get_header, "content-type")? {
                    Some(content_type) => Some(content_type),
                    None => return Ok(None),
                }
            }
            None => None,
        };
        let mut optional = vec![(mimetype.map(Value::from), Value::Nil)];
        optional.extend(later);
        self.call_as(
            method,
            value::with_optional(vec![], optional),
            value::optional,
        )
    }

    /// A call made for its effect: whatever Kong answers is ignored.
    pub(crate) fn call_unit(&self, method: &str, args: Vec<Value>) -> Result<()> {
        self.call(method, args).map(drop)
    }
}
