//! `rust-bench`: the benchmark plugin. access makes exactly `calls` calls of
//! `kong.request.get_header("host")` and nothing else, so a benchmark measures the host's cost
//! per PDK call.

use kong_rust_pdk::prelude::*;

#[derive(Deserialize, Schema)]
pub struct Config {
    /// How many PDK calls the access phase makes per request.
    #[schema(default = 1)]
    pub calls: u32,
}

pub struct Bench {
    calls: u32,
}

#[plugin(name = "rust-bench", priority = 1000)]
impl Plugin for Bench {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        Ok(Bench {
            calls: config.calls,
        })
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        for _ in 0..self.calls {
            kong.request.get_header("host")?;
        }
        Ok(())
    }
}
