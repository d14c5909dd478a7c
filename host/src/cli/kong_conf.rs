//! kong.conf lines (or `KONG_*` environment variables) for the plugins this host serves.
//!
//! Every command printed here is a plain list of words: Kong's distroless images run
//! `query_cmd`/`start_cmd` without a shell (only `$KONG_PREFIX` is expanded), so nothing may
//! need quoting, and a path that would is refused rather than printed broken.

use super::{dump::Protocol, plugins_dir::load_plugins, KongConfArgs};
use std::path::Path;

/// Kong's prefix, where 3.9+ looks for `<name>.socket` and where 3.0–3.8 always do.
pub const DEFAULT_SOCKET_DIR: &str = "/usr/local/kong";

/// Why a 3.9 configuration has no `start_cmd` unless `--kong-start` is given.
pub const KONG_39_START_BUG: &str = "Kong 3.9.0-3.9.3 keeps the process it starts in its configuration, so the Admin API's \
     GET / fails with 500 \"Cannot serialise cdata\" (Kong #14260; fixed on Kong's master by #14111, in no 3.9.x release)";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KongVersion {
    /// Kong 3.9 and later: one `pluginserver_names` entry per plugin, one process for all,
    /// started outside Kong (systemd, a sidecar) unless `--kong-start`.
    #[value(name = "3.9")]
    V3_9,
    /// Kong 3.8: entries as for 3.4, and ProtoBuf:1, which Kong speaks from 3.8 on.
    #[value(name = "3.8")]
    V3_8,
    /// Kong 3.1–3.7 (3.4 LTS): Kong marks an entry ready only if it starts the process itself,
    /// so every entry gets the same start command: the first process to lock the socket dir
    /// serves every plugin, the others stand by to take over. MsgPack:1 by default: these
    /// fail open over either protocol, and MsgPack:1 is what Kong's other servers exercise.
    #[value(name = "3.4", alias = "3.5", alias = "3.6", alias = "3.7")]
    V3_4,
}

impl KongVersion {
    fn as_str(self) -> &'static str {
        match self {
            KongVersion::V3_9 => "3.9",
            KongVersion::V3_8 => "3.8",
            KongVersion::V3_4 => "3.4",
        }
    }

    /// What Kong is told to speak unless `--protocol` says otherwise: ProtoBuf:1 from 3.8 on,
    /// where its client answers 500 when the host cannot be reached and MsgPack:1's lets the
    /// request through without the plugin; before 3.8 both let it through.
    fn default_protocol(self) -> Protocol {
        match self {
            KongVersion::V3_9 | KongVersion::V3_8 => Protocol::ProtoBuf,
            KongVersion::V3_4 => Protocol::MsgPack,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `key = value` lines for kong.conf.
    Conf,
    /// `KONG_KEY=value` lines (values unquoted): Kubernetes env entries, `docker --env-file`,
    /// systemd `EnvironmentFile=`.
    Env,
}

/// What to print.
pub struct Request<'a> {
    pub version: KongVersion,
    pub format: Format,
    /// Kong 3.0–3.8 single entry of this name.
    pub single_socket: Option<&'a str>,
    /// 3.9: give the first entry a start command (Kong starts the host).
    pub kong_start: bool,
    pub names: &'a [String],
    /// `--protocol NAME=…` overrides of the version's protocol, by plugin (or single entry).
    pub protocols: &'a [(String, Protocol)],
    /// The paths as Kong's commands must name them.
    pub binary: &'a Path,
    pub plugins_dir: &'a Path,
    pub socket_dir: &'a Path,
}

enum Line {
    Comment(String),
    Setting(String, String),
}

/// The lines to paste into kong.conf (or the environment), or why they cannot be written.
pub fn render(request: &Request) -> Result<String, String> {
    let lines = lines(request)?;
    let mut out = String::new();
    for line in lines {
        match line {
            Line::Comment(text) => out.push_str(&format!("# {text}\n")),
            Line::Setting(key, value) => match request.format {
                Format::Conf => out.push_str(&format!("{key} = {value}\n")),
                Format::Env => {
                    out.push_str(&format!("KONG_{}={value}\n", key.to_ascii_uppercase()))
                }
            },
        }
    }
    Ok(out)
}

fn lines(request: &Request) -> Result<Vec<Line>, String> {
    let binary = word("--binary", request.binary)?;
    let plugins_dir = word("the plugins dir", request.plugins_dir)?;
    let socket_dir = word("--socket-dir", request.socket_dir)?;
    for name in request.names {
        shell_free("plugin name", name)?;
    }
    let setting = |key: String, value: String| Line::Setting(key, value);
    let socket = |name: &str| {
        request
            .socket_dir
            .join(format!("{name}.socket"))
            .display()
            .to_string()
    };
    // Kong starts this command: the host follows the nginx worker that started it.
    let serve = format!(
        "{binary} serve --plugins-dir {plugins_dir} --socket-dir {socket_dir} --follow-parent"
    );
    let protocol = |name: &str| {
        let chosen = request.protocols.iter().rev().find(|(n, _)| n == name);
        chosen.map_or(request.version.default_protocol(), |(_, p)| *p)
    };
    // The query command's flag: none for MsgPack:1, which the dump says by default.
    let flag = |name: &str| match protocol(name) {
        Protocol::MsgPack => String::new(),
        other => format!(" --protocol {}", other.flag()),
    };
    let fails_closed = request.version != KongVersion::V3_4;
    let said = |names: &[&str]| {
        let (pb, mp): (Vec<&str>, Vec<&str>) = names
            .iter()
            .partition(|name| protocol(name) == Protocol::ProtoBuf);
        let mut comments = Vec::new();
        if !pb.is_empty() {
            let meets = match fails_closed {
                true => "Kong answers 500 when the host cannot be reached",
                false => {
                    "Kong before 3.8 still runs the request WITHOUT the plugin when the \
                          host cannot be reached (fails open)"
                }
            };
            comments.push(Line::Comment(format!(
                "ProtoBuf:1 ({}): {meets}",
                pb.join(", ")
            )));
        }
        if !mp.is_empty() {
            let instead = match fails_closed {
                true => "; over ProtoBuf:1 it would answer 500",
                false => "; so does Kong 3.4-3.7's ProtoBuf:1",
            };
            comments.push(Line::Comment(format!(
                "MsgPack:1 ({}): Kong runs the request WITHOUT the plugin when the host cannot \
                 be reached (fails open){instead}",
                mp.join(", ")
            )));
        }
        comments
    };

    if let Some(entry) = request.single_socket {
        shell_free("--single-socket", entry)?;
        let key = entry.replace('-', "_");
        let mut lines = vec![Line::Comment(format!(
            "generated by `kong-rust-host kong-conf --kong-version {} --single-socket {entry}`",
            request.version.as_str()
        ))];
        lines.extend(said(&[entry]));
        lines.extend([
            setting(
                "plugins".into(),
                format!("bundled,{}", request.names.join(",")),
            ),
            setting("pluginserver_names".into(), entry.into()),
            setting(format!("pluginserver_{key}_socket"), socket(entry)),
            setting(
                format!("pluginserver_{key}_start_cmd"),
                format!("{serve} --single-socket {entry}"),
            ),
            setting(
                format!("pluginserver_{key}_query_cmd"),
                format!(
                    "{binary} dump --all --plugins-dir {plugins_dir}{}",
                    flag(entry)
                ),
            ),
        ]);
        return Ok(lines);
    }

    let mut lines = vec![
        Line::Comment(format!(
            "generated by `kong-rust-host kong-conf --kong-version {}`",
            request.version.as_str()
        )),
        setting(
            "plugins".into(),
            format!("bundled,{}", request.names.join(",")),
        ),
        setting("pluginserver_names".into(), request.names.join(",")),
    ];
    let names: Vec<&str> = request.names.iter().map(String::as_str).collect();
    lines.extend(said(&names));
    let kong_starts_first = match request.version {
        KongVersion::V3_9 if request.kong_start => {
            lines.push(Line::Comment(format!(
                "start_cmd (--kong-start): only on a Kong without the 3.9.x bug: {KONG_39_START_BUG}"
            )));
            true
        }
        KongVersion::V3_9 => {
            lines.push(Line::Comment(format!(
                "no start_cmd: {KONG_39_START_BUG}. Run the host under systemd or as a sidecar, \
                 started before Kong (`kong-rust-host wait-ready`); --kong-start to let Kong start it"
            )));
            false
        }
        KongVersion::V3_8 | KongVersion::V3_4 => true,
    };
    for (index, name) in request.names.iter().enumerate() {
        let key = name.replace('-', "_");
        lines.push(setting(format!("pluginserver_{key}_socket"), socket(name)));
        // 3.9: one process binds every plugin's socket, so at most the first entry starts it.
        // 3.4: every entry must be started by Kong to become ready; the others stand by.
        let starts = match request.version {
            KongVersion::V3_9 => kong_starts_first && index == 0,
            KongVersion::V3_8 | KongVersion::V3_4 => true,
        };
        if starts {
            lines.push(setting(
                format!("pluginserver_{key}_start_cmd"),
                serve.clone(),
            ));
        }
        lines.push(setting(
            format!("pluginserver_{key}_query_cmd"),
            format!(
                "{binary} dump {name} --plugins-dir {plugins_dir}{}",
                flag(name)
            ),
        ));
    }
    Ok(lines)
}

/// A path as one word of a command Kong may run without a shell.
fn word(what: &str, path: &Path) -> Result<String, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("{what} {} is not UTF-8", path.display()))?;
    shell_free(what, text)?;
    Ok(text.to_string())
}

/// Refuses what a command could only carry quoted: whitespace, quotes, `$`, globs, `;`, `|`…
fn shell_free(what: &str, text: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c);
    match text.chars().find(|&c| !plain(c)) {
        None if !text.is_empty() => Ok(()),
        None => Err(format!("{what} is empty")),
        Some(c) => Err(format!(
            "{what} {text:?} contains {c:?}: Kong runs query_cmd/start_cmd without a shell in \
             its distroless images, where it cannot be quoted; use a path without it (a symlink)"
        )),
    }
}

/// `kong-rust-host kong-conf`: loads the plugins dir and prints what Kong needs to reach it.
pub(super) fn run(args: KongConfArgs) -> Result<(), String> {
    let version = args.kong_version;
    if args.single_socket.is_some() && version == KongVersion::V3_9 {
        return Err(
            "--single-socket is for Kong 3.0–3.8: Kong 3.9+ registers only the first plugin of an entry"
                .into(),
        );
    }
    let plugins = load_plugins(&args.plugins_dir)?;
    let binary = match args.binary {
        Some(binary) => binary,
        None => std::env::current_exe()
            .map_err(|error| format!("cannot locate this executable: {error}"))?,
    };
    let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let names: Vec<String> = plugins.iter().map(|p| p.name.clone()).collect();
    for (name, _) in &args.protocols {
        let entry = args.single_socket.as_deref() == Some(name.as_str());
        if !entry && !names.contains(name) {
            return Err(format!(
                "--protocol {name}=…: {name} is not a plugin in {}{}",
                args.plugins_dir.display(),
                args.single_socket
                    .as_deref()
                    .map(|entry| format!(" (nor the --single-socket entry {entry})"))
                    .unwrap_or_default()
            ));
        }
    }
    let plugins_dir = args.kong_plugins_dir.unwrap_or(args.plugins_dir);
    let text = render(&Request {
        version,
        format: args.format,
        single_socket: args.single_socket.as_deref(),
        kong_start: args.kong_start,
        names: &names,
        protocols: &args.protocols,
        binary: &absolute(&binary),
        plugins_dir: &absolute(&plugins_dir),
        socket_dir: &absolute(&args.socket_dir),
    })?;
    if args.kong_start && version == KongVersion::V3_9 {
        tracing::warn!(
            "--kong-start: {}; the ingress controller and anything else reading GET / break. \
             Run the host under systemd or as a sidecar instead (docs/operators.md, docs/kubernetes.md)",
            KONG_39_START_BUG
        );
    }
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(names: &'a [String], binary: &'a Path) -> Request<'a> {
        Request {
            version: KongVersion::V3_9,
            format: Format::Conf,
            single_socket: None,
            kong_start: false,
            names,
            protocols: &[],
            binary,
            plugins_dir: Path::new("/etc/kong/rust-plugins"),
            socket_dir: Path::new(DEFAULT_SOCKET_DIR),
        }
    }

    #[test]
    fn env_form_is_kong_prefixed_upper_case_keys_with_unquoted_values() {
        let names = vec!["rust-hello".to_string()];
        let mut request = request(&names, Path::new("/usr/local/bin/kong-rust-host"));
        request.format = Format::Env;
        let out = render(&request).unwrap();
        let settings: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            settings,
            [
                "KONG_PLUGINS=bundled,rust-hello",
                "KONG_PLUGINSERVER_NAMES=rust-hello",
                "KONG_PLUGINSERVER_RUST_HELLO_SOCKET=/usr/local/kong/rust-hello.socket",
                "KONG_PLUGINSERVER_RUST_HELLO_QUERY_CMD=/usr/local/bin/kong-rust-host dump rust-hello --plugins-dir /etc/kong/rust-plugins --protocol protobuf",
            ]
        );
    }

    fn query_cmds(out: &str) -> Vec<&str> {
        out.lines()
            .filter(|line| line.contains("_query_cmd = "))
            .map(|line| line.split(" = ").nth(1).unwrap())
            .collect()
    }

    #[test]
    fn kong_3_8_and_later_are_told_protobuf_and_3_4_to_3_7_msgpack_and_either_can_be_overridden() {
        let names = vec!["rust-hello".to_string(), "rust-auth".to_string()];
        let binary = Path::new("/bin/h");
        let dump = "/bin/h dump rust-hello --plugins-dir /etc/kong/rust-plugins";
        for version in [KongVersion::V3_9, KongVersion::V3_8] {
            let out = render(&Request {
                version,
                ..request(&names, binary)
            })
            .unwrap();
            assert_eq!(query_cmds(&out)[0], format!("{dump} --protocol protobuf"));
            assert!(out.contains("# ProtoBuf:1 (rust-hello, rust-auth): Kong answers 500"));
        }
        let old = render(&Request {
            version: KongVersion::V3_4,
            ..request(&names, binary)
        })
        .unwrap();
        assert_eq!(query_cmds(&old)[0], dump);
        assert!(
            old.contains("Kong runs the request WITHOUT the plugin"),
            "{old}"
        );

        let overrides = [("rust-hello".to_string(), Protocol::MsgPack)];
        let mixed = render(&Request {
            protocols: &overrides,
            ..request(&names, binary)
        })
        .unwrap();
        assert_eq!(
            query_cmds(&mixed),
            [
                dump.to_string(),
                "/bin/h dump rust-auth --plugins-dir /etc/kong/rust-plugins --protocol protobuf"
                    .to_string()
            ]
        );
        let on_3_4 = [("rust-auth".to_string(), Protocol::ProtoBuf)];
        let old_pb = render(&Request {
            version: KongVersion::V3_4,
            protocols: &on_3_4,
            ..request(&names, binary)
        })
        .unwrap();
        assert!(query_cmds(&old_pb)[1].ends_with(" --protocol protobuf"));
        assert!(
            old_pb.contains("# ProtoBuf:1 (rust-auth): Kong before 3.8 still runs the request"),
            "{old_pb}"
        );
    }

    #[test]
    fn a_path_that_needs_quoting_is_refused() {
        let names = vec!["rust-hello".to_string()];
        for bad in [
            "/opt/my plugins/host",
            "/opt/$HOME/host",
            "/opt/a'b",
            "/opt/a;b",
        ] {
            let error = render(&request(&names, Path::new(bad))).unwrap_err();
            assert!(error.contains("without a shell"), "{error}");
        }
    }
}
