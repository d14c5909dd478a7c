//! Running a plugin's phases over a request, in Kong's order.

use super::{
    kong::MockKong,
    outcome::Outcome,
    request::{TestRequest, PLUGIN_ID, WORKSPACE_ID},
    state::State,
};
use kong_rust_pdk::{
    abi::Phase,
    export::{panic_message, run_phase, Exported},
    pdk::Kong,
    Error, ErrorKind, Result,
};
use serde_json::{json, Value as Json};
use std::panic::{self, AssertUnwindSafe};

/// A plugin instance, built from a configuration as the host builds it, that runs requests
/// through an in-memory Kong.
pub struct PluginTest<P> {
    plugin: P,
}

impl<P: Exported> PluginTest<P> {
    /// Builds the plugin from the configuration JSON as entered in Kong: a top-level field the
    /// schema does not have is refused as Kong's Admin API refuses it (`invalid config: field
    /// `extra`: unknown field`); Kong's bookkeeping keys (`__key__`, `__plugin_id`, `__seq__`,
    /// `__ws_id`) are added when missing, schema defaults are applied, and a bad field is named
    /// in the [`ErrorKind::Config`] error, all as with the real host; then `P::new` runs and its
    /// error is returned as is.
    pub fn new(config_json: &str) -> Result<Self> {
        let config_error = |message| Error::new(ErrorKind::Config, message);
        kong_rust_pdk::__private::check_entered_fields::<P::Config>(config_json, &BOOKKEEPING)
            .map_err(config_error)?;
        let config = kong_rust_pdk::__private::decode_config::<P::Config>(&with_bookkeeping(
            config_json,
            P::NAME,
        ))
        .map_err(config_error)?;
        Self::from_config(config)
    }

    /// Builds the plugin from a configuration value (no schema defaults to apply).
    pub fn from_config(config: P::Config) -> Result<Self> {
        Ok(PluginTest {
            plugin: P::new(config)?,
        })
    }

    /// The plugin instance.
    pub fn plugin(&self) -> &P {
        &self.plugin
    }

    /// Runs the phases the plugin implements over `request`, as Kong would for a global
    /// plugin: `certificate` (TLS connections only), `rewrite`, `access` (`preread` for a
    /// stream), then the request goes to the service unless it was answered, `response` (with
    /// the service's response; buffered proxying), and `log` whatever happened before.
    pub fn run(&self, request: TestRequest) -> Outcome {
        let kong = MockKong::new(State::new(request));
        let (stream, tls) = kong.with(|s| (s.is_stream(), s.req.is_tls()));
        let before_proxy: &[Phase] = if stream {
            &[Phase::Certificate, Phase::Preread]
        } else {
            &[Phase::Certificate, Phase::Rewrite, Phase::Access]
        };
        for &phase in before_proxy {
            if kong.with(|s| s.answered) {
                break;
            }
            if self.implements(phase) && (phase != Phase::Certificate || tls) {
                self.run_phase(&kong, phase);
            }
        }
        if !kong.with(|s| s.answered) {
            let buffered = !stream && self.implements(Phase::Response);
            kong.with(|s| {
                if buffered {
                    s.buffer();
                }
                s.proxy();
            });
            if buffered && kong.with(|s| s.proxied()) {
                self.run_phase(&kong, Phase::Response);
            }
        }
        kong.with(State::snapshot);
        if self.implements(Phase::Log) {
            self.run_phase(&kong, Phase::Log);
        }
        kong.into_state().into_outcome()
    }

    fn implements(&self, phase: Phase) -> bool {
        P::PHASES.contains(&phase)
    }

    fn run_phase(&self, kong: &MockKong, phase: Phase) {
        kong.with(|s| s.begin(phase));
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            run_phase(&self.plugin, phase, &Kong::new(kong))
        }))
        .map_err(|payload| panic_message(payload.as_ref()));
        kong.with(|s| s.finish(result));
    }
}

/// The keys Kong adds to every plugin config (protocol.md §7.1).
const BOOKKEEPING: [&str; 4] = ["__key__", "__plugin_id", "__seq__", "__ws_id"];

/// The config with the keys Kong adds to every plugin config.
fn with_bookkeeping(config_json: &str, name: &str) -> String {
    let Ok(Json::Object(mut config)) = serde_json::from_str::<Json>(config_json) else {
        return config_json.to_string();
    };
    let values = [
        json!(format!("plugins:{name}:::::{WORKSPACE_ID}")),
        json!(PLUGIN_ID),
        json!(1),
        json!(WORKSPACE_ID),
    ];
    for (key, value) in BOOKKEEPING.into_iter().zip(values) {
        config.entry(key).or_insert(value);
    }
    Json::Object(config).to_string()
}
