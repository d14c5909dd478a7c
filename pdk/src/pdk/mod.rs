//! The typed PDK: `kong.request.get_header("host")` and friends, named and grouped as in Kong's
//! own documentation, covering every PDK function an external plugin can call.
//!
//! | Field of [`Kong`] | Kong module |
//! |---|---|
//! | [`client`](Client) (+ [`client.tls`](ClientTls)) | `kong.client`, `kong.client.tls` |
//! | [`cluster`](Cluster) | `kong.cluster` |
//! | [`ctx.shared`](Shared) | `kong.ctx.shared` |
//! | [`ip`](Ip) | `kong.ip` |
//! | [`log`](Log) | `kong.log` |
//! | [`nginx`](Nginx) | `kong.nginx` |
//! | [`node`](Node) | `kong.node` |
//! | [`plugin`](PluginEntity) | `kong.plugin` |
//! | [`request`](Request) | `kong.request` |
//! | [`response`](Response) | `kong.response` |
//! | [`router`](Router) | `kong.router` |
//! | [`service`](Service) (+ [`service.request`](ServiceRequest), [`service.response`](ServiceResponse)) | `kong.service`, `kong.service.request`, `kong.service.response` |
//! | [`telemetry`](Telemetry) | `kong.telemetry` |
//! | [`vault`](Vault) | `kong.vault` |
//!
//! Every method encodes its arguments as MessagePack, makes one call through the host, and
//! decodes Kong's answer (header writes excepted: consecutive ones go as one `set_headers`, see
//! [`ServiceRequest::set_header`] and [`Response::set_header`]), absorbing Kong's wire quirks: integral floats that arrive as integers,
//! empty maps that arrive as empty arrays, strings that are not UTF-8. It never leaves a `nil`
//! before another argument (a Lua argument list ends at its first `nil`, so Kong would drop the
//! rest): an omitted optional argument followed by a given one is sent as Kong's default.
//!
//! Left out, because they cannot work for an external plugin: `kong.response.get_raw_body` and
//! `set_raw_body` (body_filter only), `kong.service.set_tls_cert_key`, `set_tls_verify_store`
//! and `set_target_retry_callback` (cdata or Lua function arguments). [`Kong::call_raw`] reaches
//! any other function.

mod batch;
mod bridge;
mod client;
mod cluster;
mod ctx;
mod de;
pub mod entity;
mod headers;
mod ip;
mod log;
mod nginx;
mod node;
mod plugin;
mod request;
mod response;
mod router;
mod service;
mod telemetry;
pub mod value;
mod vault;

pub use batch::run_batched;
pub(crate) use bridge::Bridge;
pub use bridge::Call;
pub use client::{Client, ClientTls, ClientVerify};
pub use cluster::Cluster;
pub use ctx::{Ctx, Shared};
pub use headers::Headers;
pub use ip::Ip;
pub use log::{Log, SerializeMode};
pub use nginx::{Nginx, Statistics, Subsystem};
pub use node::{Memory, MemoryStats, MemoryUnit, Node, SharedDictMemory, WorkerMemory};
pub use plugin::PluginEntity;
pub use request::{QueryArg, Request, UriCaptures};
#[doc(hidden)]
pub use response::default_error_message;
pub use response::{Exit, Response, Source};
pub use router::Router;
pub use service::{Scheme, Service, ServiceRequest, ServiceResponse};
pub use telemetry::Telemetry;
pub use value::MultiMap;
pub use vault::{Vault, VaultReference};

use crate::Result;
use rmpv::Value;

/// The `kong` object of a phase handler.
///
/// Its fields mirror Kong's PDK modules, so Kong's documentation reads straight across:
/// Lua's `kong.service.request.set_header("x", "1")` is Rust's
/// `kong.service.request.set_header("x", "1")?`.
pub struct Kong<'a> {
    /// `kong.client`.
    pub client: Client<'a>,
    /// `kong.cluster`.
    pub cluster: Cluster<'a>,
    /// `kong.ctx`.
    pub ctx: Ctx<'a>,
    /// `kong.ip`.
    pub ip: Ip<'a>,
    /// `kong.log`.
    pub log: Log<'a>,
    /// `kong.nginx`.
    pub nginx: Nginx<'a>,
    /// `kong.node`.
    pub node: Node<'a>,
    /// `kong.plugin`.
    pub plugin: PluginEntity<'a>,
    /// `kong.request`.
    pub request: Request<'a>,
    /// `kong.response`.
    pub response: Response<'a>,
    /// `kong.router`.
    pub router: Router<'a>,
    /// `kong.service`.
    pub service: Service<'a>,
    /// `kong.telemetry`.
    pub telemetry: Telemetry<'a>,
    /// `kong.vault`.
    pub vault: Vault<'a>,
    bridge: Bridge<'a>,
}

impl<'a> Kong<'a> {
    /// A `kong` object whose calls go to `host`: the real host, or a test double.
    pub fn new(host: &'a dyn Call) -> Self {
        let bridge = Bridge::new(host);
        Kong {
            client: Client::new(bridge),
            cluster: Cluster::new(bridge),
            ctx: Ctx::new(bridge),
            ip: Ip::new(bridge),
            log: Log::new(bridge),
            nginx: Nginx::new(bridge),
            node: Node::new(bridge),
            plugin: PluginEntity::new(bridge),
            request: Request::new(bridge),
            response: Response::new(bridge),
            router: Router::new(bridge),
            service: Service::new(bridge),
            telemetry: Telemetry::new(bridge),
            vault: Vault::new(bridge),
            bridge,
        }
    }

    /// Calls any PDK function by its dotted name, for functions the typed PDK does not cover.
    /// `args` are positional; Kong's answer comes back undecoded.
    pub fn call_raw(&self, method: &str, args: Vec<Value>) -> Result<Value> {
        self.bridge.call(method, args)
    }
}
