//! The harness: `kong.ctx.shared` persists across phases (and comes from plugins that ran
//! before), with values as they come back from Lua.

use kong_rust_pdk::prelude::*;
use kong_rust_pdk_test::{LogLevel, PluginTest, TestRequest, Value};
use serde::Serialize;

#[derive(Deserialize, Schema)]
struct Config {}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Visit {
    path: String,
    hops: u32,
}

struct Counter;

fn bump(kong: &Kong) -> Result<u32> {
    let count = kong.ctx.shared.get::<u32>("count")?.unwrap_or(0) + 1;
    kong.ctx.shared.set("count", &count)?;
    Ok(count)
}

#[plugin(name = "harness-ctx", priority = 10)]
impl Plugin for Counter {
    type Config = Config;

    fn new(_: Config) -> Result<Self> {
        Ok(Counter)
    }

    fn rewrite(&self, kong: &Kong) -> Result<()> {
        let from = kong.ctx.shared.get::<String>("set_by_other_plugin")?;
        kong.ctx.shared.set("seen_in_rewrite", &from)?;
        bump(kong).map(drop)
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        let path = kong.request.get_path()?;
        kong.ctx.shared.set("visit", &Visit { path, hops: 1 })?;
        kong.ctx.shared.set("ratio", &2.0_f64)?;
        kong.ctx
            .shared
            .set("empty", &std::collections::BTreeMap::<String, u8>::new())?;
        kong.ctx.shared.set("removed", "soon")?;
        kong.ctx.shared.set("removed", &None::<&str>)?;
        bump(kong).map(drop)
    }

    fn response(&self, kong: &Kong) -> Result<()> {
        let count = bump(kong)?;
        kong.response.set_header("x-count", &count.to_string())
    }

    fn log(&self, kong: &Kong) -> Result<()> {
        let count = bump(kong)?;
        let visit = kong.ctx.shared.get::<Visit>("visit")?;
        kong.log.info(format!("count={count} visit={visit:?}"))
    }
}

#[test]
fn shared_values_persist_across_phases() {
    let outcome = PluginTest::<Counter>::new("{}").unwrap().run(
        TestRequest::get("/a/./b").ctx_shared("set_by_other_plugin", serde_json::json!("auth")),
    );
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert_eq!(outcome.response.header("x-count"), Some("3"));
    assert_eq!(
        outcome.logs_at(LogLevel::Info),
        [r#"count=4 visit=Some(Visit { path: "/a/b", hops: 1 })"#]
    );
    assert_eq!(outcome.shared::<u32>("count"), Some(4));
    assert_eq!(
        outcome.shared::<String>("seen_in_rewrite").as_deref(),
        Some("auth")
    );
    assert_eq!(
        outcome.shared::<Visit>("visit"),
        Some(Visit {
            path: "/a/b".into(),
            hops: 1
        })
    );
    assert!(!outcome.ctx_shared.contains_key("removed"));
}

#[test]
fn shared_values_come_back_as_lua_stores_them() {
    let outcome = PluginTest::<Counter>::new("{}")
        .unwrap()
        .run(TestRequest::get("/"));
    // A Lua number: 2.0 is packed as the integer 2; an empty table as an empty array.
    assert_eq!(outcome.ctx_shared["ratio"], Value::from(2));
    assert_eq!(outcome.ctx_shared["empty"], Value::Array(vec![]));
    assert_eq!(outcome.shared::<f64>("ratio"), Some(2.0));
}
