//! Zero-config Kong 3.9 entries: `/usr/local/bin/<plugin-name>` as a symlink to this binary.
//!
//! Kong 3.9's defaults for `pluginserver_names = <name>` are start command `/usr/local/bin/<name>`
//! and query command `/usr/local/bin/<name> -dump`, socket `<prefix>/<name>.socket`. Invoked
//! under any name but its own, the binary acts as that plugin's entry: `-dump` prints that
//! plugin; no arguments serve (every entry is started, and the socket dir's lock makes one of
//! them serve every plugin while the others stand by). kong.conf then needs only `plugins` and
//! `pluginserver_names`.
//!
//! Kong starts these commands with nginx's stripped environment, so the directories come from a
//! config file as well as from the environment: `plugins_dir = …` and `socket_dir = …` lines in
//! `$KONG_RUST_HOST_CONFIG`, default `/etc/kong-rust-host.conf`.

use std::{collections::HashMap, ffi::OsString, path::Path};

const OWN_NAME: &str = "kong-rust-host";
const DEFAULT_CONFIG: &str = "/etc/kong-rust-host.conf";

/// The command line to run instead, when invoked through a plugin-name symlink.
pub fn rewrite(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let invoked = args
        .first()
        .and_then(|arg0| Path::new(arg0).file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| OWN_NAME.to_string());
    if invoked == OWN_NAME {
        return Ok(args);
    }
    let rest: Vec<String> = args[1..]
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let config = read_config()?;
    let setting =
        |env: &str, key: &str| std::env::var(env).ok().or_else(|| config.get(key).cloned());
    let plugins_dir = setting("KONG_RUST_PLUGINS_DIR", "plugins_dir").ok_or_else(|| {
        format!(
            "invoked as {invoked}, the Kong entry of plugin {invoked}: set plugins_dir in {} or \
             KONG_RUST_PLUGINS_DIR (Kong strips most environment variables: prefer the file)",
            config_path()
        )
    })?;
    // Unset: `serve`'s own default, Kong's prefix.
    let mut socket_dir = setting("KONG_RUST_SOCKET_DIR", "socket_dir");
    let mut dump = false;
    let mut words = rest.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "-dump" | "--dump" => dump = true,
            "-kong-prefix" | "--kong-prefix" | "-p" => {
                socket_dir = Some(words.next().ok_or_else(|| format!("{word} needs a directory"))?.clone());
            }
            other => return Err(format!("invoked as {invoked}: unexpected argument {other:?} (expected -dump or -kong-prefix DIR)")),
        }
    }
    let command: Vec<String> = if dump {
        vec![
            OWN_NAME.into(),
            "dump".into(),
            invoked,
            "--plugins-dir".into(),
            plugins_dir,
        ]
    } else {
        let mut serve = vec![
            OWN_NAME.into(),
            "serve".into(),
            "--plugins-dir".into(),
            plugins_dir,
            // Kong runs this entry as its start command: follow the worker that started it.
            "--follow-parent".into(),
        ];
        if let Some(dir) = socket_dir {
            serve.extend(["--socket-dir".into(), dir]);
        }
        serve
    };
    Ok(command.into_iter().map(OsString::from).collect())
}

fn config_path() -> String {
    std::env::var("KONG_RUST_HOST_CONFIG").unwrap_or_else(|_| DEFAULT_CONFIG.into())
}

/// `key = value` lines; `#` comments and blank lines ignored. A missing file is no settings.
fn read_config() -> Result<HashMap<String, String>, String> {
    let path = config_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(error) => return Err(format!("cannot read {path}: {error}")),
    };
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            line.split_once('=')
                .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
                .ok_or_else(|| format!("{path}: expected `key = value`, got {line:?}"))
        })
        .collect()
}
