//! `rust-hello`: the example plugin operators and the end-to-end tests rely on.
//!
//! access: sends `x-hello: Hello <message> from rust` and `x-hello-host: <host>` upstream, sets
//! response header `x-hello-from-rust: <host>`, and denies (403 `denied`) any request carrying
//! an `x-deny` header. log: notices `rust-hello log status=<status>`.

use kong_rust_pdk::prelude::*;

#[derive(Deserialize, Schema)]
pub struct Config {
    /// Who to greet in the `x-hello` upstream header.
    #[schema(default = "world")]
    pub message: String,
}

pub struct Hello {
    greeting: String,
}

#[plugin(name = "rust-hello", priority = 1000)]
impl Plugin for Hello {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        Ok(Hello {
            greeting: format!("Hello {} from rust", config.message),
        })
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        let host = kong.request.get_header("host")?.unwrap_or_default();
        kong.service.request.set_header("x-hello", &self.greeting)?;
        kong.service.request.set_header("x-hello-host", &host)?;
        kong.response.set_header("x-hello-from-rust", &host)?;
        if kong.request.get_header("x-deny")?.is_some() {
            return kong.response.exit(403, "denied", None).into();
        }
        Ok(())
    }

    fn log(&self, kong: &Kong) -> Result<()> {
        let status = kong.response.get_status()?;
        kong.log.notice(format!("rust-hello log status={status}"))
    }
}
