use crate::{
    abi::{Host, HostError, HostErrorKind, HostRef},
    Error, ErrorKind, Result,
};
use abi_stable::std_types::{RResult, RSlice, RStr};
use rmpv::Value;

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
            RResult::RErr(error) => Err(error.into()),
        }
    }
}

impl From<HostError> for Error {
    fn from(error: HostError) -> Self {
        let kind = match error.kind {
            HostErrorKind::EventEnded => ErrorKind::EventEnded,
            HostErrorKind::InvalidCall => ErrorKind::InvalidCall,
            HostErrorKind::Kong => ErrorKind::Kong,
        };
        Error::new(kind, error.message.into_string())
    }
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

    /// A call made for its effect: whatever Kong answers is ignored.
    pub(crate) fn call_unit(&self, method: &str, args: Vec<Value>) -> Result<()> {
        self.call(method, args).map(drop)
    }
}
