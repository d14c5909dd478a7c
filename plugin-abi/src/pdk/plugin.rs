use super::{value, Bridge};
use crate::Result;

/// `kong.plugin`: the plugin entity being run.
#[derive(Clone, Copy)]
pub struct PluginInfo<'a> {
    bridge: Bridge<'a>,
}

impl<'a> PluginInfo<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        PluginInfo { bridge }
    }

    /// The id (a UUID) of the plugin entity (this configuration of the plugin).
    /// Phases: rewrite, access, response, log.
    pub fn get_id(&self) -> Result<String> {
        self.bridge
            .call_as("kong.plugin.get_id", vec![], value::string)
    }
}
