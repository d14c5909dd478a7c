//! Dedicated mode: a plugin crate's own server binary, as Kong's Go, Python and JS servers
//! offer. The plugin is compiled in (no `.so`, no plugins dir) and served on
//! `<socket-dir>/<name>.socket` by the same code as `kong-rust-host serve`.
//!
//! In the plugin crate, behind a feature so the `cdylib` does not depend on the host:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [features]
//! server = ["dep:kong-rust-host"]
//!
//! [dependencies]
//! kong-rust-host = { version = "0.1", optional = true }
//!
//! [[bin]]
//! name = "my-plugin"
//! path = "src/bin/server.rs"
//! required-features = ["server"]
//! ```
//!
//! and `src/bin/server.rs`:
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     kong_rust_host::dedicated::main(kong_rust_pdk::root_module::<my_plugin::MyPlugin>())
//! }
//! ```
//!
//! Installed as `/usr/local/bin/<plugin-name>`, the binary is what Kong 3.9 runs by default for
//! `pluginserver_names = <plugin-name>`: start command `/usr/local/bin/<name>` (serves on
//! `/usr/local/kong/<name>.socket`), query command `/usr/local/bin/<name> -dump`.

use crate::{
    cli::dump,
    cli::{self, Logging, ServeOptions},
    loader::LoadedPlugin,
};
use abi_stable::std_types::RString;
use clap::{CommandFactory, FromArgMatches, Parser};
use kong_rust_abi::PluginModRef;
use std::{ffi::OsString, path::PathBuf, process::ExitCode};

#[derive(Parser)]
#[command(about = "Serve one Rust plugin to Kong Gateway")]
struct DedicatedCli {
    /// Print the query-command JSON Kong reads (`-dump` also works, as Kong 3.9 calls it).
    #[arg(long)]
    dump: bool,
    /// The protocol the dump tells Kong to speak: protobuf (on Kong 3.8+ a request fails with
    /// 500 when the server is gone) or msgpack (the request goes on without the plugin). The
    /// server answers both either way.
    #[arg(long, value_enum, default_value = "msgpack")]
    protocol: dump::Protocol,
    #[command(flatten)]
    logging: Logging,
    #[command(flatten)]
    options: ServeOptions,
}

/// Go-style single-dash long flags, which Kong's defaults and Go plugin servers use.
const SINGLE_DASH: [&str; 4] = ["-dump", "-kong-prefix", "-follow-parent", "-help"];

/// Runs the dedicated server of the plugin whose root module is `module` (the plugin crate
/// passes `kong_rust_pdk::root_module::<ItsPlugin>()`; the host depends on the ABI only):
/// `-dump`, or serve until SIGTERM.
pub fn main(module: PluginModRef) -> ExitCode {
    let info = match module.info()().into_result() {
        Ok(info) => info,
        Err(error) => {
            eprintln!("{}", RString::into_string(error));
            return ExitCode::FAILURE;
        }
    };
    // clap takes `&'static str` names; this runs once per process.
    let (name, version): (&'static str, &'static str) = (
        info.name.to_string().leak(),
        info.version.to_string().leak(),
    );
    let args = std::env::args_os().map(|arg| match arg.to_str() {
        Some(word) if SINGLE_DASH.contains(&word) => OsString::from(format!("-{word}")),
        _ => arg,
    });
    let command = DedicatedCli::command().name(name).version(version);
    let cli = match DedicatedCli::from_arg_matches(&command.get_matches_from(args)) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    cli.logging.init();
    let origin = std::env::current_exe().unwrap_or_else(|_| PathBuf::from(name));
    let load = || LoadedPlugin::from_module(module, &origin).map(|p| vec![p]);
    let result = if cli.dump {
        load().map(|plugin| println!("{}", dump::dump(&plugin, cli.protocol)))
    } else {
        cli::start_serving(&cli.options, name, load).and_then(|started| match started {
            Some((serving, plugin)) => cli::run_host(plugin, None, &cli.options, serving),
            None => Ok(()),
        })
    };
    cli::exit_code(result)
}
