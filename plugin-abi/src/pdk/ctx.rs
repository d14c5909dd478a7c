use super::Bridge;
use crate::{Error, ErrorKind, Result};
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
#[derive(Clone, Copy)]
pub struct Shared<'a> {
    bridge: Bridge<'a>,
}

impl Shared<'_> {
    /// The value stored under `key` by any plugin, `None` when there is none.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self
            .bridge
            .call("kong.ctx.shared.get", vec![Value::from(key)])?
        {
            Value::Nil => Ok(None),
            value => rmpv::ext::from_value(value).map(Some).map_err(|error| {
                Error::new(
                    ErrorKind::UnexpectedResult,
                    format!("kong.ctx.shared.get({key:?}): {error}"),
                )
            }),
        }
    }

    /// Stores `value` under `key` for the rest of the request.
    pub fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let value = rmpv::ext::to_value(value).map_err(|error| {
            Error::new(
                ErrorKind::InvalidCall,
                format!("kong.ctx.shared.set({key:?}): {error}"),
            )
        })?;
        self.bridge
            .call_unit("kong.ctx.shared.set", vec![Value::from(key), value])
    }
}
