//! `rust-phases`: one small effect in each HTTP phase, so a test (or an operator) can see every
//! phase run in order and hand data to the next.
//!
//! * rewrite: `kong.ctx.shared.from_rewrite = "r-ok"`, upstream header `x-rewrite: 1`;
//! * access: upstream header `x-shared: <from_rewrite>`;
//! * response: response headers `x-upstream-status` and `x-upstream-body-len` (bytes) from the
//!   service's response;
//! * log: `rust-phases log: status=<status> uri=<request.uri>` at notice, the uri from
//!   `kong.log.serialize()`.

use kong_rust_pdk::prelude::*;

#[derive(Deserialize, Schema)]
pub struct Config {}

pub struct Phases;

/// The part of Kong's log serializer this plugin reads.
#[derive(Deserialize)]
struct Serialized {
    request: SerializedRequest,
}

#[derive(Deserialize)]
struct SerializedRequest {
    uri: String,
}

#[plugin(name = "rust-phases", priority = 900)]
impl Plugin for Phases {
    type Config = Config;

    fn new(_: Config) -> Result<Self> {
        Ok(Phases)
    }

    fn rewrite(&self, kong: &Kong) -> Result<()> {
        kong.ctx.shared.set("from_rewrite", "r-ok")?;
        kong.service.request.set_header("x-rewrite", "1")
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        let from_rewrite: Option<String> = kong.ctx.shared.get("from_rewrite")?;
        kong.service
            .request
            .set_header("x-shared", from_rewrite.as_deref().unwrap_or(""))
    }

    fn response(&self, kong: &Kong) -> Result<()> {
        let status = kong.service.response.get_status()?;
        let body = kong.service.response.get_raw_body()?;
        kong.response
            .set_header("x-upstream-status", &status.to_string())?;
        kong.response
            .set_header("x-upstream-body-len", &body.len().to_string())
    }

    fn log(&self, kong: &Kong) -> Result<()> {
        let status = kong.response.get_status()?;
        let entry: Serialized = kong.log.serialize()?;
        kong.log.notice(format!(
            "rust-phases log: status={status} uri={}",
            entry.request.uri
        ))
    }
}
