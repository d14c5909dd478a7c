//! The typed PDK: `kong.request.get_header("host")` and friends, named and grouped as in Kong's
//! own documentation.
//!
//! Every method encodes its arguments as MessagePack, makes one call through the host, and
//! decodes Kong's answer, absorbing Kong's wire quirks (spec §6.2, §11.1): integral floats that
//! arrive as integers, empty maps that arrive as empty arrays, strings that are not UTF-8.

mod bridge;
mod ctx;
mod log;
mod request;
mod response;
mod service;
pub mod value;

pub use bridge::{Bridge, Call};
pub use ctx::{Ctx, Shared};
pub use log::Log;
pub use request::Request;
pub use response::Response;
pub use service::{Service, ServiceRequest};
pub use value::Headers;

use crate::Result;
use rmpv::Value;

/// The `kong` object of a phase handler.
///
/// Its fields mirror Kong's PDK modules, so Kong's documentation reads straight across:
/// Lua's `kong.service.request.set_header("x", "1")` is Rust's
/// `kong.service.request.set_header("x", "1")?`.
pub struct Kong<'a> {
    pub ctx: Ctx<'a>,
    pub log: Log<'a>,
    pub request: Request<'a>,
    pub response: Response<'a>,
    pub service: Service<'a>,
    bridge: Bridge<'a>,
}

impl<'a> Kong<'a> {
    /// A `kong` object whose calls go to `host`: the real host, or a test double.
    pub fn new(host: &'a dyn Call) -> Self {
        let bridge = Bridge::new(host);
        Kong {
            ctx: Ctx::new(bridge),
            log: Log::new(bridge),
            request: Request::new(bridge),
            response: Response::new(bridge),
            service: Service::new(bridge),
            bridge,
        }
    }

    /// Calls any PDK function by its dotted name, for functions the typed PDK does not cover
    /// (yet). `args` are positional; Kong's answer comes back undecoded.
    pub fn call_raw(&self, method: &str, args: Vec<Value>) -> Result<Value> {
        self.bridge.call(method, args)
    }
}
