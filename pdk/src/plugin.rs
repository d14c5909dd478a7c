//! The trait a plugin implements.

use crate::{pdk::Kong, schema::Schema, Result};
use serde::de::DeserializeOwned;

/// A Kong plugin: one method per phase.
///
/// Implement only the phases the plugin needs and put `#[kong_rust_pdk::plugin(...)]` on the
/// `impl` block: the attribute sees which phase methods the block defines and advertises exactly
/// those to Kong, so a phase left at its default is never called (Kong does not even route
/// requests through the plugin server for it).
///
/// Phase methods run on host-owned threads, concurrently for many requests, hence `&self`,
/// `Send + Sync`: keep per-request state in locals or `kong.ctx.shared`, not in `self`.
///
/// # Threads, and code that blocks
///
/// The host runs each phase call as a coroutine on one of a few threads (about one per core):
/// a PDK call suspends it until Kong answers, and the thread serves other requests meanwhile.
/// A call stays on one thread from start to end, so thread-locals it uses stay the same; but
/// other requests' calls run on that thread while it waits on a PDK call, so a thread-local is
/// not one request's alone across a PDK call (as in async Rust): keep per-request state in
/// locals or `kong.ctx.shared`. For the same reason, never hold a lock (a `Mutex` or `RwLock`
/// guard, a `RefCell` borrow) across a PDK call: another request on the thread that wants it
/// blocks the thread, and the holder cannot run to release it. The host gives up both events
/// after `--event-timeout`; that thread, and the connection the holder waits on, are lost.
/// Plugin code that blocks (a sleep, blocking I/O, a long computation) holds its thread: after
/// 20 ms the host moves that thread's idle connections and new requests to another, but
/// requests already suspended on it wait until the blocking code returns. Keep blocking short,
/// and give outbound calls tight timeouts.
///
/// # What Kong gives external plugins
///
/// Kong runs an external plugin (any plugin server: Go, JavaScript, Python, this host) in six
/// phases only: `certificate`, `rewrite`, `access`, `response`, `preread` and `log`. There is
/// **no `header_filter` and no `body_filter`**: that is Kong's limit for every plugin server,
/// not this PDK's (Kong calls its plugin servers where nginx forbids the sockets they need).
/// What a Lua plugin does in those phases is done here so:
///
/// * **Add a header to the response** from `access` (or `rewrite`) with
///   `kong.response.set_header`: Kong sends it with the service's response. If the service sends
///   the same header, the client gets both lines, the plugin's first (nginx's doing;
///   `Content-Type` and `Content-Length` are the service's alone). To be sure of one value,
///   set it in `response`, which sees and changes the service's response.
/// * **Read or change the response body or status**: `response`. Implementing it makes Kong
///   *buffer* every response the plugin applies to (read whole before the client gets a byte);
///   there, a header set in `access` that the service also sends is replaced by the service's.
/// * **Answer without the service** (a CORS preflight, a denial): `kong.response.exit` in
///   `rewrite`, `access` or `response`.
///
/// Kong runs the plugins of a request in priority order, highest first, phase by phase (its
/// bundled plugins' priorities are in Kong's plugin development guide, "Plugins execution
/// order"); `kong-rust-pdk-test`'s `PluginChain` runs several plugins in that order.
///
/// ```
/// use kong_rust_pdk::prelude::*;
///
/// #[derive(Deserialize, Schema)]
/// struct Config {
///     /// The origin allowed to call the API.
///     #[schema(default = "*")]
///     origin: String,
/// }
///
/// struct Cors {
///     origin: String,
/// }
///
/// #[plugin(name = "cors-sketch", priority = 2000)]
/// impl Plugin for Cors {
///     type Config = Config;
///
///     fn new(config: Config) -> Result<Self> {
///         Ok(Cors { origin: config.origin })
///     }
///
///     fn access(&self, kong: &Kong) -> Result<()> {
///         if kong.request.get_method()? == "OPTIONS" {
///             // The preflight: answered here, the service never sees it.
///             let headers = Headers::from([
///                 ("Access-Control-Allow-Origin", self.origin.as_str()),
///                 ("Access-Control-Allow-Methods", "GET, POST"),
///             ]);
///             return kong.response.exit(204, "", Some(&headers)).into();
///         }
///         // Sent to the client with the service's response (no header_filter needed).
///         kong.response.set_header("Access-Control-Allow-Origin", &self.origin)
///     }
/// }
/// # fn main() {}
/// ```
///
/// # Errors, panics and `exit`, phase by phase
///
/// A handler that returns `Err` or panics fails its event: the host logs it (one line naming
/// the plugin, the phase and the error or the panic's message and place), counts it, and then:
///
/// | Phase | `Err` or panic | `kong.response.exit` |
/// |---|---|---|
/// | `rewrite`, `access` | the request ends with 500 `{"message":"An unexpected error occurred"}`; with `--fail-open NAME` it goes on without the plugin | the client gets the exit; later plugins' handlers of the phase and later phases do not run, `log` does |
/// | `response` | the client gets the 500 instead of the service's response (`--fail-open`: the service's response) | the exit replaces the service's response |
/// | `preread` (stream) | the connection is closed as Kong's `exit(500)` closes it (`--fail-open`: it goes on) | status 200, 400, 403, 500, 502 or 503 only |
/// | `certificate` | logged; the handshake goes on (nothing can answer yet) | not available |
/// | `log` | logged; the client already has its response | not available |
///
/// After `exit` the event is over: any further PDK call in the handler fails with
/// [`ErrorKind::EventEnded`](crate::ErrorKind::EventEnded), so return its result
/// (`return kong.response.exit(…).into();`). A PDK call Kong raises a Lua error for (a
/// function used in a phase that does not allow it, bad arguments) ends the request inside Kong,
/// with Kong's own 500 where the phase can still answer; Kong then never answers the call, and
/// the host reclaims the event after `--kong-step-timeout` (the harness returns the call's
/// error as [`ErrorKind::Kong`](crate::ErrorKind::Kong) instead, so a test sees it). A panic
/// never takes the host down: it is caught at the plugin's boundary.
pub trait Plugin: Send + Sync + Sized + 'static {
    /// The plugin's configuration, deserialized from what Kong sends; its [`Schema`] is the
    /// schema Kong validates admin input against.
    type Config: DeserializeOwned + Schema;

    /// Creates the instance for one configuration. Called once per distinct configuration,
    /// however many nginx workers ask for it.
    fn new(config: Self::Config) -> Result<Self>;

    /// TLS handshake (`ssl_certificate_by_lua`); global plugins only.
    fn certificate(&self, _kong: &Kong<'_>) -> Result<()> {
        Ok(())
    }

    /// Before routing; global plugins only.
    fn rewrite(&self, _kong: &Kong<'_>) -> Result<()> {
        Ok(())
    }

    /// After routing, before the request is proxied.
    fn access(&self, _kong: &Kong<'_>) -> Result<()> {
        Ok(())
    }

    /// After the whole upstream response is buffered. Implementing it turns on buffered
    /// proxying for every request the plugin applies to.
    fn response(&self, _kong: &Kong<'_>) -> Result<()> {
        Ok(())
    }

    /// Stream (TCP/TLS/UDP) routes.
    fn preread(&self, _kong: &Kong<'_>) -> Result<()> {
        Ok(())
    }

    /// After the response was sent, from a snapshot of the request (protocol.md §10.3).
    fn log(&self, _kong: &Kong<'_>) -> Result<()> {
        Ok(())
    }
}
