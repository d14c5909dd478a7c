use super::{entity::Fields, value, Bridge};
use crate::Result;
use rmpv::Value;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// `kong.vault`: secrets referenced as `{vault://<vault>/<resource>[/<key>][/<version>]}`.
#[derive(Clone, Copy)]
pub struct Vault<'a> {
    bridge: Bridge<'a>,
}

/// A parsed vault reference (`kong.vault.parse_reference`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VaultReference {
    /// The vault (prefix) name.
    pub name: String,
    /// The reference's `resource`.
    pub resource: String,
    /// The reference's `key`.
    pub key: Option<String>,
    /// The reference's `version`.
    pub version: Option<i64>,
    /// Query-string configuration (`?region=…`).
    pub config: Option<Fields>,
}

impl<'a> Vault<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        Vault { bridge }
    }

    /// The secret `reference` points to, `None` when it cannot be resolved. Every phase.
    pub fn get(&self, reference: &str) -> Result<Option<String>> {
        self.bridge.call_as(
            "kong.vault.get",
            vec![Value::from(reference)],
            value::optional_string,
        )
    }

    /// Whether `text` is a vault reference. Every phase.
    pub fn is_reference(&self, text: &str) -> Result<bool> {
        self.bridge.call_as(
            "kong.vault.is_reference",
            vec![Value::from(text)],
            value::boolean,
        )
    }

    /// `reference`'s parts, `None` when it is not a valid reference. Every phase.
    pub fn parse_reference(&self, reference: &str) -> Result<Option<VaultReference>> {
        self.bridge.call_as(
            "kong.vault.parse_reference",
            vec![Value::from(reference)],
            value::optional,
        )
    }

    /// `options` with every string that is a vault reference replaced by its secret (a
    /// configuration, typically). Every phase.
    pub fn update<T: Serialize + DeserializeOwned>(&self, options: &T) -> Result<T> {
        const METHOD: &str = "kong.vault.update";
        let options = value::encode(METHOD, options)?;
        self.bridge.call_as(METHOD, vec![options], value::decode)
    }

    /// Drops the node's cached secrets. Every phase.
    pub fn flush(&self) -> Result<()> {
        self.bridge.call_unit("kong.vault.flush", vec![])
    }
}
