//! `kong-rust-host new NAME [DIR]`: writes a plugin crate that builds, passes its own harness
//! test and is served by this host as it stands, the start of docs/plugin-guide.md.

use std::{
    fs,
    path::{Path, PathBuf},
};

/// Arguments of `kong-rust-host new`.
#[derive(clap::Args)]
pub(crate) struct NewArgs {
    /// The plugin's name, as Kong will know it (`plugins = bundled,NAME`): lower-case letters,
    /// digits, `-` and `_`, starting with a letter. It is also the crate's name.
    name: String,
    /// Where to write the crate (default: ./NAME); it must not exist or be empty.
    dir: Option<PathBuf>,
    /// A clone of kong-rust-host whose pdk/ and pdk-test/ the crate depends on by path. Default:
    /// the clone this binary was built from, when it is still there; without one, the crate
    /// depends on the registry's releases.
    #[arg(long, value_name = "DIR")]
    pdk_repo: Option<PathBuf>,
}

/// The PDK and the harness are released together with the host, under the host's version.
const PDK_VERSION: &str = env!("CARGO_PKG_VERSION");

pub(crate) fn run(args: NewArgs) -> Result<(), String> {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    let repo = match args.pdk_repo {
        Some(repo) => Some(pdk_repo(&repo).ok_or_else(|| {
            format!(
                "{} is not a clone of kong-rust-host (no pdk/Cargo.toml and pdk-test/Cargo.toml)",
                repo.display()
            )
        })?),
        None => pdk_repo(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..")),
    };
    let written = scaffold(&args.name, &dir, repo.as_deref())?;
    // Where cargo will put the .so: its target dir, which CARGO_TARGET_DIR moves.
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let so = format!("{target}/release/lib{}.so", crate_ident(&args.name));
    println!(
        "wrote {} ({})\n\nnext:\n  cd {}\n  cargo test                  # the harness test in tests/\n  cargo build --release       # {so}\n  install -m 0644 {so} PLUGINS_DIR/\n  kong-rust-host serve --plugins-dir PLUGINS_DIR --socket-dir SOCKET_DIR",
        dir.display(),
        written.join(", "),
        dir.display(),
    );
    Ok(())
}

/// The clone at `dir`, canonical, if it has the PDK and the harness.
fn pdk_repo(dir: &Path) -> Option<PathBuf> {
    let dir = dir.canonicalize().ok()?;
    ["pdk/Cargo.toml", "pdk-test/Cargo.toml"]
        .iter()
        .all(|manifest| dir.join(manifest).is_file())
        .then_some(dir)
}

/// Writes the crate for plugin `name` into `dir`; returns the files written, relative to it.
pub(crate) fn scaffold(
    name: &str,
    dir: &Path,
    pdk_repo: Option<&Path>,
) -> Result<Vec<String>, String> {
    check_name(name)?;
    if fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(format!("{} exists and is not empty", dir.display()));
    }
    let files = [
        ("Cargo.toml", manifest(name, pdk_repo)),
        ("src/lib.rs", library(name)),
        (
            &*format!("tests/{}.rs", crate_ident(name)),
            harness_test(name),
        ),
        (".gitignore", "/target\n".to_string()),
    ];
    for (path, text) in &files {
        let path = dir.join(path);
        let parent = path.parent().expect("a file in the crate");
        fs::create_dir_all(parent)
            .and_then(|()| fs::write(&path, text))
            .map_err(|error| format!("writing {}: {error}", path.display()))?;
    }
    Ok(files.iter().map(|(path, _)| path.to_string()).collect())
}

/// The rule `#[plugin]` holds names to, and a crate name's (no leading digit).
fn check_name(name: &str) -> Result<(), String> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "plugin name {name:?}: use lower-case ASCII letters, digits, `-` and `_`, starting \
             with a letter (Kong lower-cases plugin names and uses them in file names)"
        ))
    }
}

/// `my-plugin` → `my_plugin`, the crate's name in Rust code and in `lib….so`.
fn crate_ident(name: &str) -> String {
    name.replace('-', "_")
}

/// `my-plugin` → `MyPlugin`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// A dependency on the crate in `folder` of the clone, or on its registry release.
fn dependency(crate_name: &str, folder: &str, pdk_repo: Option<&Path>) -> String {
    match pdk_repo {
        Some(repo) => format!(
            "{crate_name} = {{ version = \"{PDK_VERSION}\", path = \"{}\" }}",
            repo.join(folder).display()
        ),
        None => format!("{crate_name} = \"{PDK_VERSION}\""),
    }
}

fn manifest(name: &str, pdk_repo: Option<&Path>) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
# What `#[plugin]`'s generated code needs (`#[unsafe(no_mangle)]`).
rust-version = "1.82"

[lib]
# cdylib: the .so the host loads; rlib: what the tests in tests/ link against.
crate-type = ["cdylib", "rlib"]

[dependencies]
{pdk}
serde = {{ version = "1", features = ["derive"] }}

# The test harness: a dev-dependency only, so `cargo build` never links it into the .so.
[dev-dependencies]
{harness}
"#,
        pdk = dependency("kong-rust-pdk", "pdk", pdk_repo),
        harness = dependency("kong-rust-pdk-test", "pdk-test", pdk_repo),
    )
}

fn library(name: &str) -> String {
    let ty = type_name(name);
    format!(
        r#"//! `{name}`: a Kong plugin served by kong-rust-host. It sets a header on the request Kong
//! sends to the service.

use kong_rust_pdk::prelude::*;

/// The configuration, as entered in Kong (Admin API, decK, Konnect): Kong validates it against
/// the schema derived from this type, defaults included, before the plugin sees it.
#[derive(Deserialize, Schema)]
pub struct Config {{
    /// The header set on the request to the service.
    #[schema(default = "x-{name}", match = "^[%w-]+$")]
    pub header: String,
    /// Its value.
    #[schema(default = "hello", len_min = 1)]
    pub value: String,
}}

pub struct {ty} {{
    config: Config,
}}

/// `priority`: where Kong runs the plugin among the others on a request, highest first (Kong's
/// bundled plugins' priorities are in Kong's plugin development guide, "Plugins execution
/// order").
#[plugin(name = "{name}", priority = 1000)]
impl Plugin for {ty} {{
    type Config = Config;

    fn new(config: Config) -> Result<Self> {{
        Ok({ty} {{ config }})
    }}

    /// After routing, before the request is proxied. An `Err` (or a panic) ends the request
    /// with 500; `kong.response.exit` answers the client instead of the service.
    fn access(&self, kong: &Kong) -> Result<()> {{
        kong.service
            .request
            .set_header(&self.config.header, &self.config.value)
    }}
}}
"#
    )
}

fn harness_test(name: &str) -> String {
    let ty = type_name(name);
    let krate = crate_ident(name);
    format!(
        r##"//! `{name}` against the harness's in-memory Kong: plain `cargo test`, no Kong, no host.

use kong_rust_pdk_test::{{PluginTest, TestRequest}};
use {krate}::{ty};

#[test]
fn the_configured_header_reaches_the_service() {{
    let test = PluginTest::<{ty}>::new(r#"{{"value": "from the test"}}"#).unwrap();
    let outcome = test.run(TestRequest::get("/"));
    let upstream = outcome.upstream_request.as_ref().expect("proxied");
    assert_eq!(upstream.header("x-{name}"), Some("from the test"));
}}

#[test]
fn a_misspelled_field_is_refused_as_kong_refuses_it() {{
    let Err(error) = PluginTest::<{ty}>::new(r#"{{"valeu": "x"}}"#) else {{
        panic!("accepted");
    }};
    assert_eq!(error.to_string(), "invalid config: field `valeu`: unknown field");
}}
"##
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_rust_identifiers() {
        assert_eq!(type_name("my-plugin_v2"), "MyPluginV2");
        assert_eq!(crate_ident("my-plugin"), "my_plugin");
        assert!(check_name("rate-limit2").is_ok());
        for bad in ["", "2fa", "My-Plugin", "a.b", "-x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_pdk_and_the_harness_are_at_the_version_the_scaffold_asks_for() {
        for manifest in [
            include_str!("../../../pdk/Cargo.toml"),
            include_str!("../../../pdk-test/Cargo.toml"),
        ] {
            let version = format!("\nversion = \"{PDK_VERSION}\"\n");
            assert!(manifest.contains(&version), "{manifest}");
        }
    }
}
