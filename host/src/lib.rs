//! The kong-rust-host library: everything the `kong-rust-host` binary is made of. Outside this
//! crate only a plugin's dedicated server ([`dedicated`]) and the fuzz targets (`fuzzing`) use
//! it; everything else is private to the crate.
//!
//! Layout, each folder using only those below it:
//!
//! - [`cli`]: the command lines (`serve`, `dump`, `kong-conf`, `doctor`, `status`,
//!   `wait-ready`, a module each), dedicated mode, the plugin-named entry point, and the server
//!   assembly `serve` and dedicated mode both run (`cli/serving.rs`).
//! - `upgrade`: `serve --upgrade`, a new process taking over the sockets, instance ids and
//!   connections of the running one; the serving lock.
//! - `serve`: the sockets: binding them, accepting Kong's connections and handing them to the
//!   loops.
//! - `runtime`: answering Kong's requests: the dispatcher, plugin instances, events and the
//!   connections they answer on, the loops that watch those and run handlers as coroutines,
//!   statistics.
//! - `wire`: Kong's MessagePack-RPC: message boundaries and requests and replies.
//! - `loader`: opening plugin `.so` files.

pub mod cli;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod loader;
mod runtime;
mod serve;
mod upgrade;
mod wire;

pub use cli::dedicated;
