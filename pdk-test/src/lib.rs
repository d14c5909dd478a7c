//! A test harness for plugins: an in-memory Kong that runs a plugin's phases over a request
//! built in the test, answers every PDK function of Kong's catalogue the way Kong does, and
//! reports what happened. Plain `cargo test`, no Kong, no host.
//!
//! ```
//! use kong_rust_pdk::prelude::*;
//! use kong_rust_pdk_test::{LogLevel, PluginTest, Source, TestRequest};
//!
//! #[derive(Deserialize, Schema)]
//! struct Config {
//!     /// The header a client must send.
//!     #[schema(default = "x-api-key")]
//!     header: String,
//! }
//!
//! struct KeyCheck {
//!     header: String,
//! }
//!
//! #[plugin(name = "key-check", priority = 1000)]
//! impl Plugin for KeyCheck {
//!     type Config = Config;
//!
//!     fn new(config: Config) -> Result<Self> {
//!         Ok(KeyCheck { header: config.header })
//!     }
//!
//!     fn access(&self, kong: &Kong) -> Result<()> {
//!         match kong.request.get_header(&self.header)? {
//!             Some(key) => kong.service.request.set_header("x-key-seen", &key),
//!             None => kong.response.exit(401, "missing key", None).into(),
//!         }
//!     }
//!
//!     fn log(&self, kong: &Kong) -> Result<()> {
//!         let status = kong.response.get_status()?;
//!         kong.log.info(format!("status {status}"))
//!     }
//! }
//!
//! # fn main() {
//! // The config goes through the schema like Kong's: `header` gets its default.
//! let test = PluginTest::<KeyCheck>::new("{}").unwrap();
//!
//! let allowed = test.run(TestRequest::get("/items").header("X-Api-Key", "k1"));
//! let upstream = allowed.upstream_request.as_ref().unwrap();
//! assert_eq!(upstream.header("x-key-seen"), Some("k1"));
//! assert_eq!(allowed.response.source, Source::Service);
//! assert_eq!(allowed.logs_at(LogLevel::Info), ["status 200"]);
//!
//! // The exit answers the client, the service never sees the request, the log phase still runs.
//! let denied = test.run(TestRequest::get("/items"));
//! assert!(denied.upstream_request.is_none());
//! assert_eq!(denied.response.status, 401);
//! assert_eq!(denied.response.text(), "missing key");
//! assert_eq!(denied.response.source, Source::Exit);
//! assert_eq!(denied.logs_at(LogLevel::Info), ["status 401"]);
//! # }
//! ```
//!
//! # What the in-memory Kong does
//!
//! * **Config.** [`PluginTest::new`] takes the config JSON as entered in Kong: a field the
//!   schema lacks is refused in the words of Kong's Admin API (`invalid config: field
//!   `extra`: unknown field`), defaults are filled in, constraints checked.
//! * **Chains.** [`PluginChain`] runs plugins from several crates over one request in Kong's
//!   order (phase by phase, by priority within a phase), sharing the request,
//!   `kong.ctx.shared` and the consumer; [`Outcome::handlers`] says who ran when. Plugin crates
//!   link into one test binary because a build with this harness leaves out their `.so`
//!   export: build the `.so` you install with `cargo build`, where the harness, a
//!   dev-dependency, is not linked.
//! * **Phases.** [`PluginTest::run`] runs the phases the plugin implements in Kong's order:
//!   `certificate` (TLS only), `rewrite`, `access`, the proxying, `response`, `log`; for
//!   [`TestRequest::stream`], `certificate` (tls), `preread`, `log`. A function called in a
//!   phase where Kong does not allow it (the phases Kong's PDK documentation gives it) fails
//!   with Kong's error naming the function and the phase
//!   ([`ErrorKind::Kong`](kong_rust_pdk::ErrorKind::Kong)).
//! * **One request, two views.** `kong.service.request.*` changes the request Kong holds, so
//!   `kong.request.get_header`, `get_method`, `get_query` and `get_raw_body` see the changes, as
//!   in Kong; the path and scheme for the service are separate. The request sent upstream
//!   ([`Outcome::upstream_request`]) carries the `Host` Kong would send (service host,
//!   `preserve_host`, or a `host` header a plugin set) and Kong's `X-Forwarded-*` headers.
//! * **Responses.** Headers `kong.response.set_header` and friends set before proxying go to
//!   the client with the service's: a name both send goes out twice, the plugin's value first
//!   (`Content-Type` and `Content-Length`: the service's only), as nginx sends them; with
//!   buffered proxying (a `response` handler) the service's value replaces the plugin's. In the
//!   `response` phase they change the response the service gave.
//!   `kong.response.exit`/`error` answer the client (JSON bodies, Kong's error templates and
//!   `Accept` negotiation, `Content-Length`), end the phase's event (later calls fail with
//!   [`ErrorKind::EventEnded`](kong_rust_pdk::ErrorKind::EventEnded), as with the host) and skip the
//!   remaining phases but `log`.
//! * **Failures.** A handler that returns an error or panics is recorded in
//!   [`Outcome::failures`]; in `rewrite`, `access`, `response` and `preread` the client gets
//!   the host's 500 (`{"message":"An unexpected error occurred"}`). A PDK call Kong would raise
//!   on (wrong phase, bad arguments) ends the event and, where Kong can still answer, gets
//!   Kong's 500 with source `error`.
//! * **Log phase**: it runs after the response is final and reads a snapshot:
//!   request headers, the response's status, headers and source, `kong.log.serialize()` (with
//!   `set_serialize_value` edits and Kong's redaction of `authorization` headers), ctx values.
//!   Anything needing the live request fails, with a message saying so.
//! * **Wire format.** Results are encoded as Kong's lua-MessagePack encodes them: multi-maps
//!   as maps of arrays, raw bodies as `bin`, nothing as `nil`, integral numbers as integers,
//!   empty Lua tables as empty arrays, values stored by the plugin as they come back from Lua.
//!
//! Every call, its arguments and its result are in [`Outcome::calls`].

#![warn(missing_docs)]

mod http;
mod kong;
mod lua;
mod outcome;
mod request;
mod run;
mod serialize;
mod state;

pub use kong_rust_pdk::abi::Phase;

/// Header names keep the case the plugin (or the test request) gave and compare
/// case-insensitively: the PDK's own type, in the harness's outcome too.
pub use kong_rust_pdk::pdk::Headers;
pub use outcome::{
    ClientResponse, Exit, Failure, FailureKind, Handler, LogLevel, LogLine, Outcome, PdkCall,
    Source, UpstreamRequest,
};
pub use request::{
    TestRequest, UpstreamResponse, NODE_ID, PLUGIN_ID, REQUEST_ID, ROUTE_ID, SERVICE_ID,
    WORKSPACE_ID,
};
pub use rmpv::Value;
pub use run::{PluginChain, PluginTest};

/// The names of the PDK functions the in-memory Kong answers that an external plugin can use:
/// Kong's catalogue of PDK functions less the functions that need the body_filter phase or
/// cdata. The typed PDK's tests check it covers exactly these.
#[doc(hidden)]
pub fn catalogue_names() -> Vec<&'static str> {
    kong::usable_names()
}
