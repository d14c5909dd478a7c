use super::{value, Bridge, Headers};
use crate::Result;
use rmpv::Value;

/// `kong.response`: the response Kong sends to the client.
#[derive(Clone, Copy)]
pub struct Response<'a> {
    bridge: Bridge<'a>,
}

impl<'a> Response<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        Response { bridge }
    }

    /// The status code Kong is sending (or sent, in the log phase).
    pub fn get_status(&self) -> Result<u16> {
        let status = self
            .bridge
            .call_as("kong.response.get_status", vec![], value::integer)?;
        u16::try_from(status).map_err(|_| {
            crate::Error::new(
                crate::ErrorKind::UnexpectedResult,
                format!("kong.response.get_status: {status} is not an HTTP status"),
            )
        })
    }

    /// Sets response header `name`, replacing any value it had.
    pub fn set_header(&self, name: &str, value: &str) -> Result<()> {
        self.bridge.call_unit(
            "kong.response.set_header",
            vec![Value::from(name), Value::from(value)],
        )
    }

    /// Ends the request: Kong answers the client with `status`, `body` and `headers`, and the
    /// plugin's phase is over. Any PDK call after it fails with
    /// [`ErrorKind::EventEnded`](crate::ErrorKind::EventEnded): return from the handler.
    pub fn exit(
        &self,
        status: u16,
        body: impl AsRef<[u8]>,
        headers: Option<&Headers>,
    ) -> Result<()> {
        // Never leave a nil hole in Args (spec §6.3): the body is always sent, even empty.
        let mut args = vec![Value::from(status), value::bytes_value(body.as_ref())];
        if let Some(headers) = headers {
            args.push(value::multi_map_value(headers));
        }
        self.bridge.call_unit("kong.response.exit", args)
    }
}
