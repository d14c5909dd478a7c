use super::{value, Bridge};
use crate::Result;
use rmpv::Value;
use serde::Serialize;

/// `kong.telemetry`: structured log records for the OpenTelemetry plugin to export.
#[derive(Clone, Copy)]
pub struct Telemetry<'a> {
    bridge: Bridge<'a>,
}

impl<'a> Telemetry<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        Telemetry { bridge }
    }

    /// Records `message` of type `message_type` on behalf of `plugin_name` (with its
    /// configuration `plugin_config`), with `attributes` (a map). Every phase.
    pub fn log<C: Serialize + ?Sized, A: Serialize + ?Sized>(
        &self,
        plugin_name: &str,
        plugin_config: &C,
        message_type: &str,
        message: &str,
        attributes: &A,
    ) -> Result<()> {
        const METHOD: &str = "kong.telemetry.log";
        let args = vec![
            Value::from(plugin_name),
            value::encode(METHOD, plugin_config)?,
            Value::from(message_type),
            Value::from(message),
            value::encode(METHOD, attributes)?,
        ];
        self.bridge.call_unit(METHOD, args)
    }
}
