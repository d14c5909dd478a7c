use super::{entity, value, Bridge};
use crate::Result;

/// `kong.router`: the route the request matched and its service.
#[derive(Clone, Copy)]
pub struct Router<'a> {
    bridge: Bridge<'a>,
}

impl<'a> Router<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        Router { bridge }
    }

    /// The matched route, `None` when no route matched (a global plugin's log phase after a
    /// 404). Phases: access, response, log.
    pub fn get_route(&self) -> Result<Option<entity::Route>> {
        self.bridge
            .call_as("kong.router.get_route", vec![], value::optional)
    }

    /// The matched route's service, `None` for a route without one. Phases: access, response,
    /// log.
    pub fn get_service(&self) -> Result<Option<entity::Service>> {
        self.bridge
            .call_as("kong.router.get_service", vec![], value::optional)
    }
}
