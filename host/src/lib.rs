//! The kong-rust-host library: everything the `kong-rust-host` binary is made of, usable on its
//! own (fuzz targets, a plugin's dedicated server).
//!
//! Data flow: [`loader`] opens plugin `.so` files; [`server`] binds one socket per plugin and
//! reads each connection through [`frame`] (message boundaries) into [`rpc`] (Kong's requests and
//! our replies); [`dispatch`] answers each request, keeping plugin instances in [`instances`] and
//! running phase handlers as [`events`] on [`executor`] threads.

pub mod cli;
pub mod client;
pub mod connection;
pub mod dedicated;
pub mod dispatch;
pub mod doctor;
pub mod dump;
pub mod events;
pub mod executor;
pub mod frame;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod handoff;
pub mod ids;
pub mod instances;
pub mod kong_conf;
pub mod loader;
pub mod lock;
pub mod metrics;
pub mod place;
mod plugin_entry;
pub mod rpc;
pub mod server;
mod sharded;
mod throttle;
