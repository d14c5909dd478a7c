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
    pdk::{run_batched, Kong},
    Error, ErrorKind, Result,
};
use serde_json::{json, Value as Json};
use std::panic::{self, AssertUnwindSafe};

/// A plugin instance, built from a configuration as the host builds it, that runs requests
/// through an in-memory Kong.
pub struct PluginTest<P> {
    plugin: P,
    /// `__plugin_id` of the config: what `kong.plugin.get_id` returns.
    id: String,
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
        let config_json = with_bookkeeping(config_json, P::NAME);
        let config = kong_rust_pdk::__private::decode_config::<P::Config>(&config_json)
            .map_err(config_error)?;
        let mut test = Self::from_config(config)?;
        if let Ok(json) = serde_json::from_str::<Json>(&config_json) {
            if let Some(id) = json["__plugin_id"].as_str() {
                test.id = id.to_string();
            }
        }
        Ok(test)
    }

    /// Builds the plugin from a configuration value (no schema defaults to apply).
    pub fn from_config(config: P::Config) -> Result<Self> {
        Ok(PluginTest {
            plugin: P::new(config)?,
            id: PLUGIN_ID.to_string(),
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
        run_chain(&[self], request)
    }
}

/// Several plugins, each from its own crate, run against one request as Kong runs the plugins
/// configured on a route: phase by phase, and within a phase by priority (highest first; equal
/// priorities by name, descending, as Kong's `sort_by_handler_priority` in
/// `kong/db/dao/plugins.lua`). They share the request, `kong.ctx.shared`, the authenticated
/// consumer and the response; a `kong.response.exit` (or a failed handler's 500) ends the
/// phase's remaining handlers and the phases before the log phase, and every plugin's `log`
/// handler still runs, as in Kong.
///
/// ```
/// use kong_rust_pdk::prelude::*;
/// use kong_rust_pdk_test::{PluginChain, TestRequest};
/// # #[derive(Deserialize, Schema)]
/// # struct Config {}
/// # struct Auth;
/// # #[plugin(name = "auth", priority = 1000)]
/// # impl Plugin for Auth {
/// #     type Config = Config;
/// #     fn new(_: Config) -> Result<Self> { Ok(Auth) }
/// #     fn access(&self, kong: &Kong) -> Result<()> {
/// #         match kong.request.get_header("x-user")? {
/// #             Some(user) => kong.ctx.shared.set("user", &user),
/// #             None => kong.response.exit(401, "", None).into(),
/// #         }
/// #     }
/// # }
/// # struct Tag;
/// # #[plugin(name = "tag", priority = 10)]
/// # impl Plugin for Tag {
/// #     type Config = Config;
/// #     fn new(_: Config) -> Result<Self> { Ok(Tag) }
/// #     fn access(&self, kong: &Kong) -> Result<()> {
/// #         let user: Option<String> = kong.ctx.shared.get("user")?;
/// #         kong.service.request.set_header("x-user-seen", &user.unwrap_or_default())
/// #     }
/// # }
///
/// # fn main() -> kong_rust_pdk::Result<()> {
/// // `auth` (priority 1000) shares the user in `kong.ctx.shared`, `tag` (10) reads it.
/// let chain = PluginChain::new().plugin::<Tag>("{}")?.plugin::<Auth>("{}")?;
/// assert_eq!(chain.order(), ["auth", "tag"]);
///
/// let outcome = chain.run(TestRequest::get("/").header("x-user", "ada"));
/// let upstream = outcome.upstream_request.as_ref().unwrap();
/// assert_eq!(upstream.header("x-user-seen"), Some("ada"));
///
/// // auth's exit: tag's access handler never runs.
/// let outcome = chain.run(TestRequest::get("/"));
/// assert_eq!(outcome.response.status, 401);
/// assert!(!outcome.ran_plugin("tag", kong_rust_pdk_test::Phase::Access));
/// # Ok(())
/// # }
/// ```
///
/// `plugins/key-auth/tests/chain.rs` chains `rust-key-auth` with `rust-request-logger`.
#[derive(Default)]
pub struct PluginChain {
    members: Vec<Box<dyn Member>>,
}

impl PluginChain {
    /// No plugins yet.
    pub fn new() -> Self {
        PluginChain::default()
    }

    /// Adds plugin `P`, built from `config_json` as [`PluginTest::new`] builds it.
    pub fn plugin<P: Exported>(self, config_json: &str) -> Result<Self> {
        Ok(self.with(PluginTest::<P>::new(config_json)?))
    }

    /// Adds an already built plugin.
    pub fn with<P: Exported>(mut self, test: PluginTest<P>) -> Self {
        self.members.push(Box::new(test));
        // Kong's order; a stable sort keeps the order of addition for the rest.
        self.members.sort_by(|a, b| {
            b.priority()
                .cmp(&a.priority())
                .then_with(|| b.name().cmp(a.name()))
        });
        self
    }

    /// The plugins' names, in the order Kong runs them.
    pub fn order(&self) -> Vec<&'static str> {
        self.members.iter().map(|member| member.name()).collect()
    }

    /// Runs the request through every plugin, in Kong's order.
    pub fn run(&self, request: TestRequest) -> Outcome {
        let members: Vec<&dyn Member> = self.members.iter().map(Box::as_ref).collect();
        run_chain(&members, request)
    }
}

/// One plugin of a chain, whatever its type.
trait Member {
    fn name(&self) -> &'static str;
    fn priority(&self) -> i64;
    fn id(&self) -> &str;
    fn implements(&self, phase: Phase) -> bool;
    fn handle(&self, phase: Phase, kong: &Kong) -> Result<()>;
}

impl<P: Exported> Member for PluginTest<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn priority(&self) -> i64 {
        P::PRIORITY
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn implements(&self, phase: Phase) -> bool {
        P::PHASES.contains(&phase)
    }

    fn handle(&self, phase: Phase, kong: &Kong) -> Result<()> {
        run_phase(&self.plugin, phase, kong)
    }
}

/// Kong's request cycle over `members`, already in Kong's order.
fn run_chain(members: &[&dyn Member], request: TestRequest) -> Outcome {
    let kong = MockKong::new(State::new(request));
    let (stream, tls) = kong.with(|s| (s.is_stream(), s.req.is_tls()));
    let before_proxy: &[Phase] = if stream {
        &[Phase::Certificate, Phase::Preread]
    } else {
        &[Phase::Certificate, Phase::Rewrite, Phase::Access]
    };
    for &phase in before_proxy {
        if phase != Phase::Certificate || tls {
            run_handlers(members, &kong, phase);
        }
    }
    if !kong.with(|s| s.answered) {
        // One plugin with a `response` handler makes Kong buffer the whole response.
        let buffered = !stream && members.iter().any(|m| m.implements(Phase::Response));
        kong.with(|s| {
            if buffered {
                s.buffer();
            }
            s.proxy();
        });
        if buffered && kong.with(|s| s.proxied()) {
            run_handlers(members, &kong, Phase::Response);
        }
    }
    kong.with(State::snapshot);
    // The log phase runs for every plugin whatever happened before.
    for member in members.iter().filter(|m| m.implements(Phase::Log)) {
        run_handler(*member, &kong, Phase::Log);
    }
    kong.into_state().into_outcome()
}

/// The handlers for `phase`, until one of them answers the client: Kong skips the rest
/// (`ctx.delayed_response` in `access`, `ngx.exit` elsewhere).
fn run_handlers(members: &[&dyn Member], kong: &MockKong, phase: Phase) {
    for member in members.iter().filter(|m| m.implements(phase)) {
        if kong.with(|s| s.answered) {
            return;
        }
        run_handler(*member, kong, phase);
    }
}

fn run_handler(member: &dyn Member, kong: &MockKong, phase: Phase) {
    kong.with(|s| s.begin(member.name(), member.id(), phase));
    let handled = || run_batched(kong, phase, |kong| member.handle(phase, kong));
    let result = panic::catch_unwind(AssertUnwindSafe(handled))
        .map_err(|payload| panic_message(payload.as_ref()));
    kong.with(|s| s.finish(result));
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
