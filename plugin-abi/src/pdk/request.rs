use super::{value, Bridge, Headers};
use crate::Result;
use rmpv::Value;

/// `kong.request`: the client's request as Kong received it.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    bridge: Bridge<'a>,
}

impl<'a> Request<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        Request { bridge }
    }

    /// First value of header `name` (case-insensitive), `None` when the request lacks it.
    pub fn get_header(&self, name: &str) -> Result<Option<String>> {
        self.bridge.call_as(
            "kong.request.get_header",
            vec![Value::from(name)],
            value::optional_string,
        )
    }

    /// Every header, lower-case names; at most `max_headers` (Kong's default: 100).
    pub fn get_headers(&self, max_headers: Option<u32>) -> Result<Headers> {
        let args = max_headers.map(Value::from).into_iter().collect();
        self.bridge
            .call_as("kong.request.get_headers", args, value::multi_map)
    }

    /// `GET`, `POST`, …
    pub fn get_method(&self) -> Result<String> {
        self.bridge
            .call_as("kong.request.get_method", vec![], value::string)
    }

    /// The normalized path, without the query string.
    pub fn get_path(&self) -> Result<String> {
        self.bridge
            .call_as("kong.request.get_path", vec![], value::string)
    }
}
