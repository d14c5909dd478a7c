use super::{value, Bridge};
use crate::Result;

/// `kong.cluster`: the Kong cluster the node belongs to.
#[derive(Clone, Copy)]
pub struct Cluster<'a> {
    bridge: Bridge<'a>,
}

impl<'a> Cluster<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        Cluster { bridge }
    }

    /// The cluster's id, `None` where there is none (DB-less nodes). Every phase.
    pub fn get_id(&self) -> Result<Option<String>> {
        self.bridge
            .call_as("kong.cluster.get_id", vec![], value::optional_string)
    }
}
