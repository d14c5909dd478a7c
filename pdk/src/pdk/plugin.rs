use super::{value, Bridge};
use crate::Result;

/// `kong.plugin`: the plugin entity being run. (Not the plugin's metadata, which is
/// `kong_rust_abi::PluginInfo`, the one `PluginInfo`.)
#[derive(Clone, Copy)]
pub struct PluginEntity<'a> {
    bridge: Bridge<'a>,
}

impl<'a> PluginEntity<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        PluginEntity { bridge }
    }

    /// The id (a UUID) of the plugin entity (this configuration of the plugin).
    /// Phases: rewrite, access, response, log.
    pub fn get_id(&self) -> Result<String> {
        self.bridge
            .call_as("kong.plugin.get_id", vec![], value::string)
    }
}
