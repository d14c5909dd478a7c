//! `dump`, `kong-conf` and plugin loading, run as Kong runs them: a separate process whose
//! stdout must be exactly one JSON document.

use e2e::{artifacts, plugins_dir, run_host};
use serde_json::Value;

const PHASES: [&str; 6] = [
    "certificate",
    "rewrite",
    "access",
    "response",
    "preread",
    "log",
];

/// Checks a plugin object against what Kong 3.4 and 3.9 enforce (protocol.md §4.3, §4.4).
fn assert_kong_accepts_plugin(plugin: &Value) {
    let name = plugin["Name"].as_str().expect("Name is a string");
    assert!(!name.is_empty());
    assert!(
        plugin["Priority"].is_i64(),
        "Priority must be an integer: {plugin}"
    );
    let version = plugin["Version"].as_str().expect("Version is a string");
    let parts: Vec<&str> = version.split('.').collect();
    assert!(
        parts.len() <= 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        "Version {version:?} is not x.y.z"
    );
    let phases = plugin["Phases"].as_array().expect("Phases is an array");
    for phase in phases {
        assert!(
            PHASES.contains(&phase.as_str().unwrap()),
            "unknown phase {phase}"
        );
    }
    let schema = &plugin["Schema"];
    assert_eq!(schema["name"], name, "Schema.name must be the plugin name");
    let fields = schema["fields"]
        .as_array()
        .expect("Schema.fields is an array");
    let config = fields
        .iter()
        .map(single_key)
        .find(|(key, _)| *key == "config")
        .expect("a config field")
        .1;
    assert_field(config);
    assert_eq!(config["type"], "record");
}

fn single_key(entry: &Value) -> (&str, &Value) {
    let object = entry.as_object().expect("fields entries are objects");
    assert_eq!(
        object.len(),
        1,
        "fields entries have exactly one key: {entry}"
    );
    let (key, value) = object.iter().next().unwrap();
    (key.as_str(), value)
}

fn assert_field(def: &Value) {
    let kind = def["type"].as_str().expect("every field has a type");
    match kind {
        "string" | "number" | "integer" | "boolean" => {}
        "array" | "set" => assert_field(&def["elements"]),
        "map" => {
            assert_field(&def["keys"]);
            assert_field(&def["values"]);
        }
        "record" => {
            for entry in def["fields"].as_array().expect("record has fields") {
                assert_field(single_key(entry).1);
            }
        }
        other => panic!("unexpected field type {other}"),
    }
    if let Some(description) = def.get("description") {
        let len = description.as_str().unwrap().chars().count();
        assert!((10..=500).contains(&len), "description of {len} characters");
    }
    if def.get("between").is_some() {
        assert!(kind == "integer" || kind == "number", "between on a {kind}");
    }
}

#[test]
fn dump_prints_one_plugin_as_kong_3_9_and_3_4_read_it() {
    let a = artifacts();
    // A broken file in the dir must not leak anything onto stdout.
    let dir = plugins_dir(&[
        (&a.hello, "librust_hello.so"),
        (&a.bench, "librust_bench.so"),
        (&a.not_a_plugin, "junk.so"),
    ]);
    let (status, stdout, _) = run_host(&[
        "dump",
        "rust-hello",
        "--plugins-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(status.success());
    assert!(
        stdout.ends_with("}\n"),
        "one JSON document and a newline: {stdout:?}"
    );
    let dump: Value = serde_json::from_str(&stdout).expect("stdout is only JSON");
    assert_eq!(dump["Protocol"], "MsgPack:1");
    let plugins = dump["Plugins"].as_array().unwrap();
    // Kong 3.9+ registers only the first plugin: it must be the one asked for, alone.
    assert_eq!(plugins.len(), 1);
    let hello = &plugins[0];
    assert_kong_accepts_plugin(hello);
    assert_eq!(hello["Name"], "rust-hello");
    assert_eq!(hello["Version"], "0.1.0");
    assert_eq!(hello["Priority"], 1000);
    assert_eq!(hello["Phases"], serde_json::json!(["access", "log"]));
    let message = &hello["Schema"]["fields"][0]["config"]["fields"][0]["message"];
    assert_eq!(message["type"], "string");
    assert_eq!(message["default"], "world");
}

#[test]
fn dump_finds_a_plugin_whatever_its_file_is_called() {
    let a = artifacts();
    let dir = plugins_dir(&[(&a.bench, "zzz.so"), (&a.hello, "aaa.so")]);
    let (status, stdout, _) = run_host(&[
        "dump",
        "rust-bench",
        "--plugins-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(status.success());
    let dump: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(dump["Plugins"][0]["Name"], "rust-bench");
    assert_eq!(dump["Plugins"][0]["Phases"], serde_json::json!(["access"]));
}

#[test]
fn dump_all_lists_every_plugin_for_kong_3_4() {
    let a = artifacts();
    let dir = plugins_dir(&[
        (&a.hello, "librust_hello.so"),
        (&a.bench, "librust_bench.so"),
    ]);
    let (status, stdout, _) = run_host(&[
        "dump",
        "--all",
        "--plugins-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(status.success());
    let dump: Value = serde_json::from_str(&stdout).unwrap();
    let names: Vec<&str> = dump["Plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["rust-bench", "rust-hello"]);
    for plugin in dump["Plugins"].as_array().unwrap() {
        assert_kong_accepts_plugin(plugin);
    }
}

#[test]
fn dump_of_a_missing_plugin_fails_with_nothing_on_stdout() {
    let a = artifacts();
    let dir = plugins_dir(&[
        (&a.hello, "librust_hello.so"),
        (&a.changed_abi, "changed.so"),
    ]);
    let (status, stdout, stderr) = run_host(&[
        "dump",
        "rust-nope",
        "--plugins-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!status.success());
    assert_eq!(stdout, "");
    assert!(stderr.contains("plugin rust-nope not found"), "{stderr}");
    assert!(
        stderr.contains("changed.so"),
        "the files that failed are named: {stderr}"
    );
}

#[test]
fn bad_files_are_refused_one_line_each_naming_file_and_reason() {
    let a = artifacts();
    let dir = plugins_dir(&[
        (&a.hello, "librust_hello.so"),
        (&a.not_a_plugin, "not-a-plugin.so"),
        (&a.changed_abi, "changed-abi.so"),
        (&a.hello, "second-hello.so"),
        (&a.old_abi_stable, "old-abi-stable.so"),
        (&a.bad_metadata, "bad-metadata.so"),
    ]);
    std::fs::write(dir.path().join("text.so"), "this is not ELF").unwrap();
    let (status, stdout, stderr) = run_host(&[
        "dump",
        "--all",
        "--plugins-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(status.success());
    let dump: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        dump["Plugins"].as_array().unwrap().len(),
        1,
        "the good plugin is still there"
    );
    let line = |file: &str| {
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(file)).collect();
        assert_eq!(lines.len(), 1, "exactly one line about {file}:\n{stderr}");
        lines[0].to_string()
    };
    assert!(line("not-a-plugin.so").contains("no abi_stable root module"));
    let changed = line("changed-abi.so");
    assert!(changed.contains("ABI does not match"), "{changed}");
    assert!(
        changed.contains("rebuild the plugin against a kong-rust-pdk that uses kong-rust-abi 0."),
        "{changed}"
    );
    assert!(line("text.so").contains("not a loadable shared library"));
    assert!(line("second-hello.so").contains("duplicate plugin name \"rust-hello\""));
    let old = line("old-abi-stable.so");
    assert!(
        old.contains("built with abi_stable 0.10, incompatible with this host's abi_stable 0.11"),
        "{old}"
    );
    let metadata = line("bad-metadata.so");
    assert!(
        metadata.contains("reading the plugin's metadata panicked"),
        "{metadata}"
    );
    assert!(
        metadata.contains("schema panicked on purpose"),
        "{metadata}"
    );
}

#[test]
fn kong_conf_gives_every_plugin_its_own_entry() {
    let a = artifacts();
    let dir = plugins_dir(&[
        (&a.hello, "librust_hello.so"),
        (&a.bench, "librust_bench.so"),
    ]);
    let args = [
        "kong-conf",
        "--plugins-dir",
        dir.path().to_str().unwrap(),
        "--socket-dir",
        "/run/kong",
        "--binary",
        "/usr/local/bin/kong-rust-host",
    ];
    let (status, stdout, _) = run_host(&args);
    assert!(status.success());
    assert!(stdout.contains("pluginserver_names = rust-bench,rust-hello\n"));
    assert!(stdout.contains("pluginserver_rust_hello_socket = /run/kong/rust-hello.socket\n"));
    assert!(stdout.contains(&format!(
        "pluginserver_rust_hello_query_cmd = /usr/local/bin/kong-rust-host dump rust-hello --plugins-dir {} --protocol protobuf\n",
        dir.path().display()
    )));
    // 3.9: started outside Kong by default (Kong 3.9.0-3.9.3's Admin API breaks on a process
    // it started); with --kong-start one process serves every socket, so one entry starts it.
    assert_eq!(stdout.matches("_start_cmd = ").count(), 0);
    let (_, started, _) = run_host(&[&args[..], &["--kong-start"]].concat());
    assert_eq!(started.matches("_start_cmd = ").count(), 1);

    let (_, stdout_34, _) = run_host(&[&args[..], &["--kong-version", "3.4"]].concat());
    // 3.4 marks only Kong-started entries ready: every entry gets the same start command (one
    // process serves, the others stand by).
    let serve = format!(
        "/usr/local/bin/kong-rust-host serve --plugins-dir {} --socket-dir /run/kong --follow-parent\n",
        dir.path().display()
    );
    assert!(stdout_34.contains(&format!("pluginserver_rust_hello_start_cmd = {serve}")));
    assert!(stdout_34.contains(&format!("pluginserver_rust_bench_start_cmd = {serve}")));
}
