//! deploy/kubernetes: what can be checked without a cluster. The YAML parses, Kong's plugin
//! settings in it are exactly what `kong-conf --format env` prints for the same plugins, the
//! sidecar comes up before Kong and answers where Kong looks, and the entrypoint script passes
//! `sh -n` and shellcheck (when installed) and installs a copy `dump` runs from.

use e2e::{artifacts, plugins_dir, run_host, workspace_root, TempDir};
use serde_yaml::Value;
use std::{os::unix::fs::PermissionsExt, path::PathBuf, process::Command};

const BINARY: &str = "/kong-rust/bin/kong-rust-host";
const INSTALL_DIR: &str = "/kong-rust";
const PREFIX: &str = "/kong_prefix";

fn deploy(file: &str) -> PathBuf {
    workspace_root().join("deploy/kubernetes").join(file)
}

fn yaml(file: &str) -> Value {
    let text = std::fs::read_to_string(deploy(file)).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// What `kong-conf --format env` prints for the example plugins the Containerfile builds, as
/// Kong's container sees them: KEY=VALUE lines, comments left out.
fn kong_conf_env() -> Vec<String> {
    let a = artifacts();
    let dir = plugins_dir(&[
        (&a.hello, "librust_hello.so"),
        (&a.examples[0], "librust_phases.so"),
        (&a.examples[1], "librust_key_auth.so"),
        (&a.examples[2], "librust_response_transformer.so"),
        (&a.examples[3], "librust_request_logger.so"),
    ]);
    let (status, stdout, stderr) = run_host(&[
        "kong-conf",
        "--format",
        "env",
        "--plugins-dir",
        dir.path().to_str().unwrap(),
        "--socket-dir",
        PREFIX,
        "--binary",
        BINARY,
        "--kong-plugins-dir",
        &format!("{INSTALL_DIR}/plugins"),
    ]);
    assert!(status.success(), "{stderr}");
    let lines: Vec<String> = stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 2 + 2 * 5, "{stdout}");
    lines
}

fn str_of(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value:?}"))
}

fn strings(value: &Value) -> Vec<&str> {
    value.as_sequence().unwrap().iter().map(str_of).collect()
}

fn uid_gid(security_context: &Value) -> (u64, u64) {
    (
        security_context["runAsUser"].as_u64().unwrap(),
        security_context["runAsGroup"].as_u64().unwrap(),
    )
}

fn mount<'a>(container: &'a Value, volume: &str) -> &'a Value {
    container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"].as_str() == Some(volume))
        .unwrap_or_else(|| panic!("{} does not mount {volume}", str_of(&container["name"])))
}

/// The pod's init containers against Kong's settings: the installer copies to where the query
/// commands look, the host is a native sidecar serving on Kong's prefix volume as Kong's user,
/// and its probes wait for exactly the plugins Kong is configured for.
fn check_init_containers(
    init: &Value,
    kong_env: &[String],
    kong_user: (u64, u64),
    prefix_volume: &str,
) {
    let init = init.as_sequence().unwrap();
    let index = |name: &str| {
        init.iter()
            .position(|c| c["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no init container {name}"))
    };
    let (install, host) = (index("kong-rust-install"), index("kong-rust-host"));
    assert!(install < host, "the copy is made before the host starts");
    let install = &init[install];
    let host = &init[host];

    assert_eq!(strings(&install["args"]), ["install", INSTALL_DIR]);
    assert_eq!(
        str_of(&mount(install, "kong-rust")["mountPath"]),
        INSTALL_DIR
    );

    assert_eq!(str_of(&host["restartPolicy"]), "Always", "a native sidecar");
    let args = strings(&host["args"]);
    assert_eq!(args[0], "serve");
    let socket_dir = args[args.iter().position(|a| *a == "--socket-dir").unwrap() + 1];
    assert_eq!(socket_dir, PREFIX);
    assert_eq!(
        str_of(&mount(host, prefix_volume)["mountPath"]).trim_end_matches('/'),
        PREFIX
    );
    assert_eq!(uid_gid(&host["securityContext"]), kong_user);
    assert_eq!(uid_gid(&install["securityContext"]), kong_user);

    let names = kong_env
        .iter()
        .find_map(|l| l.strip_prefix("KONG_PLUGINSERVER_NAMES="))
        .unwrap();
    let wait_ready = [
        "/opt/kong-rust/bin/kong-rust-host",
        "wait-ready",
        "--socket-dir",
        PREFIX,
        "--timeout",
        "1s",
        "--only",
        names,
    ];
    for probe in ["startupProbe", "readinessProbe"] {
        assert_eq!(
            strings(&host[probe]["exec"]["command"]),
            wait_ready,
            "{probe}"
        );
    }
    // Every socket Kong is told about is in the dir the host serves.
    for line in kong_env.iter().filter(|l| l.contains("_SOCKET=")) {
        assert!(line.contains(&format!("={PREFIX}/")), "{line}");
    }
}

#[test]
fn helm_values_set_exactly_what_kong_conf_prints() {
    let expected = kong_conf_env();
    let values = yaml("values.yaml");
    let env = values["env"].as_mapping().unwrap();
    // The chart turns env.<key> into KONG_<KEY>.
    let plugin_env: Vec<String> = env
        .iter()
        .map(|(k, v)| (str_of(k), str_of(v)))
        .filter(|(k, _)| *k == "plugins" || k.starts_with("pluginserver_"))
        .map(|(k, v)| format!("KONG_{}={v}", k.to_ascii_uppercase()))
        .collect();
    assert_eq!(plugin_env, expected);
    assert_eq!(
        str_of(&values["env"]["prefix"]).trim_end_matches('/'),
        PREFIX
    );

    // The chart names the prefix volume <fullname>-prefix-dir.
    let prefix_volume = format!("{}-prefix-dir", str_of(&values["fullnameOverride"]));
    check_init_containers(
        &values["deployment"]["initContainers"],
        &expected,
        uid_gid(&values["containerSecurityContext"]),
        &prefix_volume,
    );
    let kong_mounts = values["deployment"]["userDefinedVolumeMounts"]
        .as_sequence()
        .unwrap();
    let copy = kong_mounts
        .iter()
        .find(|m| m["name"].as_str() == Some("kong-rust"))
        .unwrap();
    assert_eq!(str_of(&copy["mountPath"]), INSTALL_DIR);
    assert_eq!(copy["readOnly"].as_bool(), Some(true));
}

#[test]
fn plain_manifest_sets_exactly_what_kong_conf_prints() {
    let expected = kong_conf_env();
    let deployment = yaml("kong-rust-host.yaml");
    assert_eq!(str_of(&deployment["kind"]), "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let kong = &pod["containers"][0];
    let env: Vec<(&str, &str)> = kong["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (str_of(&e["name"]), str_of(&e["value"])))
        .collect();
    let plugin_env: Vec<String> = env
        .iter()
        .filter(|(name, _)| name.starts_with("KONG_PLUGIN"))
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    assert_eq!(plugin_env, expected);
    let prefix = env.iter().find(|(n, _)| *n == "KONG_PREFIX").unwrap().1;
    assert_eq!(prefix.trim_end_matches('/'), PREFIX);
    assert_eq!(
        str_of(&mount(kong, "kong-prefix-dir")["mountPath"]).trim_end_matches('/'),
        PREFIX
    );
    let copy = mount(kong, "kong-rust");
    assert_eq!(str_of(&copy["mountPath"]), INSTALL_DIR);
    assert_eq!(copy["readOnly"].as_bool(), Some(true));
    check_init_containers(
        &pod["initContainers"],
        &expected,
        uid_gid(&kong["securityContext"]),
        "kong-prefix-dir",
    );
}

#[test]
fn the_containerfile_builds_every_plugin_kong_is_told_about() {
    let containerfile = std::fs::read_to_string(deploy("Containerfile")).unwrap();
    let expected = kong_conf_env();
    let names = expected
        .iter()
        .find_map(|l| l.strip_prefix("KONG_PLUGINSERVER_NAMES="))
        .unwrap();
    for name in names.split(',') {
        let file = format!("target/release/lib{}.so", name.replace('-', "_"));
        assert!(containerfile.contains(&file), "Containerfile lacks {file}");
    }
    assert!(containerfile
        .contains("COPY deploy/kubernetes/entrypoint.sh /usr/local/bin/kong-rust-entrypoint"));
    assert!(containerfile.contains("COPY --from=build /out/ /opt/kong-rust/"));
}

#[test]
fn entrypoint_passes_sh_n_and_shellcheck_and_installs_a_working_copy() {
    let script = deploy("entrypoint.sh");
    let status = Command::new("sh").arg("-n").arg(&script).status().unwrap();
    assert!(status.success(), "sh -n {}", script.display());
    match Command::new("shellcheck").arg(&script).output() {
        Ok(output) => assert!(
            output.status.success(),
            "shellcheck:\n{}",
            String::from_utf8_lossy(&output.stdout)
        ),
        Err(_) => println!("note: shellcheck is not installed; skipped (sh -n passed)"),
    }

    // The image's layout (KONG_RUST_HOME/bin, KONG_RUST_HOME/plugins), copied into a volume
    // whose own mode is what an emptyDir's is.
    let a = artifacts();
    let home = TempDir::new("image");
    std::fs::create_dir_all(home.path().join("bin")).unwrap();
    std::fs::copy(&a.host, home.path().join("bin/kong-rust-host")).unwrap();
    let plugins = plugins_dir(&[(&a.hello, "librust_hello.so")]);
    std::fs::rename(plugins.path(), home.path().join("plugins")).unwrap();
    let volume = TempDir::new("volume");
    std::fs::set_permissions(volume.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = Command::new("sh")
        .arg(&script)
        .arg("install")
        .arg(volume.path())
        .env("KONG_RUST_HOME", home.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("ok    plugin rust-hello 0.1.0 from"),
        "{stdout}"
    );
    let mode = |p: &str| {
        std::fs::metadata(volume.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("plugins"), 0o755);
    assert_eq!(mode("plugins/librust_hello.so"), 0o644);
    assert_eq!(mode("bin/kong-rust-host"), 0o755);
    // Kong's query command, run from the copy.
    let dump = Command::new(volume.path().join("bin/kong-rust-host"))
        .args(["dump", "rust-hello", "--plugins-dir"])
        .arg(volume.path().join("plugins"))
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&dump.stdout).unwrap();
    assert_eq!(json["Plugins"][0]["Name"], "rust-hello");

    // A plugin that does not load fails the install (the pod), naming the file.
    std::fs::copy(&a.not_a_plugin, home.path().join("plugins/junk.so")).unwrap();
    let output = Command::new("sh")
        .arg(&script)
        .arg("install")
        .arg(volume.path())
        .env("KONG_RUST_HOME", home.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("FAIL  plugin file ") && stderr.contains("junk.so"),
        "{stderr}"
    );
}
