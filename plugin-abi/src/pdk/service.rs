use super::Bridge;
use crate::Result;
use rmpv::Value;

/// `kong.service`: the upstream service the request is proxied to.
#[derive(Clone, Copy)]
pub struct Service<'a> {
    /// `kong.service.request`: the request as it will be sent upstream.
    pub request: ServiceRequest<'a>,
}

impl<'a> Service<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        Service {
            request: ServiceRequest { bridge },
        }
    }
}

/// `kong.service.request`: changes to the request Kong sends upstream.
#[derive(Clone, Copy)]
pub struct ServiceRequest<'a> {
    bridge: Bridge<'a>,
}

impl ServiceRequest<'_> {
    /// Sets upstream request header `name`, replacing any value it had.
    pub fn set_header(&self, name: &str, value: &str) -> Result<()> {
        self.bridge.call_unit(
            "kong.service.request.set_header",
            vec![Value::from(name), Value::from(value)],
        )
    }
}
