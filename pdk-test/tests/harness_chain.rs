//! Plugin chains: several plugins over one request in Kong's order, sharing `kong.ctx.shared`,
//! an exit or a failure by one ending the phases before `log` for all.

use kong_rust_pdk::prelude::*;
use kong_rust_pdk_test::{FailureKind, Handler, LogLevel, Phase, PluginChain, TestRequest};

#[derive(Deserialize, Schema)]
struct Config {}

/// Authenticates from `x-user`, sharing the user; no user ends the request with 401, and
/// `x-user: crash` panics.
struct Auth;

#[plugin(name = "chain-auth", priority = 1000)]
impl Plugin for Auth {
    type Config = Config;

    fn new(_: Config) -> Result<Self> {
        Ok(Auth)
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        match kong.request.get_header("x-user")?.as_deref() {
            None => kong.response.exit(401, "who are you?", None).into(),
            Some("crash") => panic!("auth bug"),
            Some(user) => kong.ctx.shared.set("user", user),
        }
    }
}

/// Reads the user Auth shared, limits by it, and logs it.
struct Limit;

#[plugin(name = "chain-limit", priority = 900)]
impl Plugin for Limit {
    type Config = Config;

    fn new(_: Config) -> Result<Self> {
        Ok(Limit)
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        let user: Option<String> = kong.ctx.shared.get("user")?;
        let user = user.unwrap_or_else(|| "anonymous".into());
        kong.service.request.set_header("x-limited-by", &user)
    }

    fn log(&self, kong: &Kong) -> Result<()> {
        let user: Option<String> = kong.ctx.shared.get("user")?;
        let status = kong.response.get_status()?;
        kong.log
            .info(format!("{} {status}", user.as_deref().unwrap_or("-")))
    }
}

/// The same priority as Limit: Kong orders equal priorities by name, descending.
struct Audit;

#[plugin(name = "chain-audit", priority = 900)]
impl Plugin for Audit {
    type Config = Config;

    fn new(_: Config) -> Result<Self> {
        Ok(Audit)
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        kong.service.request.add_header("x-audit", "seen")
    }
}

fn chain() -> PluginChain {
    PluginChain::new()
        .plugin::<Audit>("{}")
        .and_then(|chain| chain.plugin::<Limit>("{}"))
        .and_then(|chain| chain.plugin::<Auth>("{}"))
        .unwrap()
}

fn handler(plugin: &'static str, phase: Phase) -> Handler {
    Handler { plugin, phase }
}

#[test]
fn plugins_run_by_priority_then_by_name_descending() {
    assert_eq!(
        chain().order(),
        ["chain-auth", "chain-limit", "chain-audit"]
    );
}

#[test]
fn a_later_plugin_reads_what_an_earlier_one_put_in_ctx_shared() {
    let outcome = chain().run(TestRequest::get("/").header("x-user", "ada"));

    assert_eq!(
        outcome.handlers,
        [
            handler("chain-auth", Phase::Access),
            handler("chain-limit", Phase::Access),
            handler("chain-audit", Phase::Access),
            handler("chain-limit", Phase::Log),
        ]
    );
    assert_eq!(outcome.phases, [Phase::Access, Phase::Log]);
    let upstream = outcome.upstream_request.as_ref().unwrap();
    assert_eq!(upstream.header("x-limited-by"), Some("ada"));
    assert_eq!(upstream.header("x-audit"), Some("seen"));
    assert_eq!(outcome.shared::<String>("user").as_deref(), Some("ada"));
    assert_eq!(outcome.logs_at(LogLevel::Info), ["ada 200"]);
}

#[test]
fn an_exit_skips_the_remaining_handlers_but_not_the_log_phase() {
    let outcome = chain().run(TestRequest::get("/"));

    assert_eq!(
        outcome.handlers,
        [
            handler("chain-auth", Phase::Access),
            handler("chain-limit", Phase::Log),
        ]
    );
    assert!(outcome.upstream_request.is_none());
    assert_eq!(outcome.response.status, 401);
    assert_eq!(outcome.exit.as_ref().unwrap().plugin, "chain-auth");
    assert_eq!(outcome.logs_at(LogLevel::Info), ["- 401"]);
    assert!(outcome.ran_plugin("chain-limit", Phase::Log));
    assert!(!outcome.ran_plugin("chain-limit", Phase::Access));
}

#[test]
fn a_panicking_plugin_ends_the_request_with_500_and_the_rest_do_not_run() {
    let outcome = chain().run(TestRequest::get("/").header("x-user", "crash"));

    assert_eq!(outcome.response.status, 500);
    assert_eq!(outcome.failures.len(), 1);
    let failure = &outcome.failures[0];
    assert_eq!(
        (failure.plugin, failure.phase, failure.kind),
        ("chain-auth", Phase::Access, FailureKind::Panicked)
    );
    assert!(!outcome.ran_plugin("chain-audit", Phase::Access));
    assert_eq!(outcome.logs_at(LogLevel::Info), ["- 500"]);
}
