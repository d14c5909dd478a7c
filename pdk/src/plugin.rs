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
