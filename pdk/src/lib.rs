//! # kong-rust-pdk
//!
//! Write Kong Gateway plugins in Rust. A plugin is a `cdylib` crate that implements [`Plugin`]
//! and marks the impl with [`#[plugin]`](macro@plugin); `kong-rust-host` loads the `.so` and
//! serves it to Kong over Kong's external plugin protocol.
//!
//! ```
//! use kong_rust_pdk::prelude::*;
//!
//! /// Configuration, validated by Kong against the schema derived from it.
//! #[derive(Deserialize, Schema)]
//! struct Config {
//!     /// Greeting sent upstream in `x-greeting`.
//!     #[schema(default = "hello")]
//!     greeting: String,
//! }
//!
//! struct Greeter {
//!     greeting: String,
//! }
//!
//! #[plugin(name = "greeter", priority = 1000)]
//! impl Plugin for Greeter {
//!     type Config = Config;
//!
//!     fn new(config: Config) -> Result<Self> {
//!         Ok(Greeter { greeting: config.greeting })
//!     }
//!
//!     fn access(&self, kong: &Kong) -> Result<()> {
//!         kong.service.request.set_header("x-greeting", &self.greeting)?;
//!         Ok(())
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! What Kong gives external plugins (six phases: no `header_filter` or `body_filter`), how to add
//! a response header from `access` (a CORS plugin's need), and what an `Err`, a panic or
//! `kong.response.exit` does in each phase: the [`Plugin`] trait's documentation. This
//! documentation is `cargo doc --open` in a plugin crate (`cargo doc --open -p kong-rust-pdk -p
//! kong-rust-pdk-test` in a clone of kong-rust-host); `kong-rust-host new NAME` writes a plugin
//! crate to start from.
//!
//! Layout: [`pdk`] is the typed PDK, [`schema`] the config-to-Kong-schema mapping. Two crates
//! sit beside this one: `kong-rust-abi` ([`abi`], re-exported), the stable ABI shared with the
//! host, whose version alone decides which hosts load a plugin (authors never touch it), and
//! `kong-rust-pdk-test`, the test harness, which plugin crates add as a dev-dependency.

#![warn(missing_docs)]

pub use kong_rust_abi as abi;
mod error;
#[doc(hidden)]
pub mod export;
pub mod pdk;
mod plugin;
pub mod schema;

pub use error::{Context, Error, ErrorKind, Result};
pub use export::root_module;
pub use kong_rust_pdk_macros::{plugin, Schema};
pub use pdk::Kong;
pub use plugin::Plugin;
pub use schema::Schema;

/// `use kong_rust_pdk::prelude::*;` brings in what a plugin needs: the trait, the attribute and
/// the derive, the error types with [`Context`], the `kong` object, [`Headers`](pdk::Headers),
/// query arguments ([`QueryArg`](pdk::QueryArg), [`MultiMap`](pdk::MultiMap)) and the entities
/// authentication plugins handle ([`Consumer`](pdk::entity::Consumer),
/// [`Credential`](pdk::entity::Credential), [`EntityRef`](pdk::entity::EntityRef)).
pub mod prelude {
    pub use crate::pdk::entity::{Consumer, Credential, EntityRef};
    pub use crate::pdk::{Headers, MultiMap, QueryArg};
    pub use crate::{plugin, Context, Error, ErrorKind, Kong, Plugin, Result, Schema};
    pub use serde::Deserialize;
}

/// Used by macro expansions only.
#[doc(hidden)]
pub mod __private {
    pub use crate::export::{root_module, Exported};
    pub use abi_stable;
    pub use kong_rust_abi as abi;
    pub use kong_rust_schema::check_entered_fields;
    pub use kong_rust_schema::decode as decode_config;
    pub use kong_rust_schema::{field, record};
    pub use serde_json;
}
