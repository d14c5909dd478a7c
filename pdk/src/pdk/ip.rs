use super::{value, Bridge};
use crate::Result;
use rmpv::Value;

/// `kong.ip`: Kong's view of addresses.
#[derive(Clone, Copy)]
pub struct Ip<'a> {
    bridge: Bridge<'a>,
}

impl<'a> Ip<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        Ip { bridge }
    }

    /// Whether `address` is in Kong's `trusted_ips` (whose `X-Forwarded-*` headers Kong
    /// believes). Every phase.
    pub fn is_trusted(&self, address: &str) -> Result<bool> {
        self.bridge.call_as(
            "kong.ip.is_trusted",
            vec![Value::from(address)],
            value::boolean,
        )
    }
}
