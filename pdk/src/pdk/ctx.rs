use super::{value, Bridge};
use crate::Result;
use rmpv::Value;
use serde::{de::DeserializeOwned, Serialize};

/// `kong.ctx`: per-request context.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// `kong.ctx.shared`: values shared with every other plugin for this request.
    pub shared: Shared<'a>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        Ctx {
            shared: Shared { bridge },
        }
    }
}

/// `kong.ctx.shared`, with values (de)serialized by serde.
///
/// Values go through Lua: `2.0` comes back as `2`, an empty map as an empty list, `None` fields
/// vanish; decoding into the type that was stored absorbs all of that.
#[derive(Clone, Copy)]
pub struct Shared<'a> {
    bridge: Bridge<'a>,
}

impl Shared<'_> {
    /// The value stored under `key` by any plugin (Lua or external), `None` when there is none.
    /// Phases: rewrite, access, response, preread, log.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        get(self.bridge, "kong.ctx.shared.get", key)
    }

    /// Stores `value` under `key` for the rest of the request; a value that serializes to
    /// nothing (`None`, `()`) removes the key. Phases: rewrite, access, response, preread, log.
    pub fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        set(self.bridge, "kong.ctx.shared.set", key, value)
    }
}

/// `table[key]` through a bridge getter such as `kong.ctx.shared.get`.
pub(super) fn get<T: DeserializeOwned>(
    bridge: Bridge<'_>,
    method: &str,
    key: &str,
) -> Result<Option<T>> {
    bridge.call_as(method, vec![Value::from(key)], value::optional)
}

/// `table[key] = value` through a bridge setter such as `kong.ctx.shared.set`.
pub(super) fn set<T: Serialize + ?Sized>(
    bridge: Bridge<'_>,
    method: &str,
    key: &str,
    value: &T,
) -> Result<()> {
    let value = value::encode(method, value)?;
    bridge.call_unit(method, vec![Value::from(key), value])
}
