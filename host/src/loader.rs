//! Loading plugin `.so` files.
//!
//! Each file is opened with `lib_header_from_path` + `init_root_module`, never
//! `RootModule::load_from*`: those cache one library per root-module type, so every plugin after
//! the first would silently get the first one's module. Libraries are never unloaded (abi_stable
//! does not support it): reloading means restarting the host.

use abi_stable::{
    library::{lib_header_from_path, LibraryError},
    std_types::RString,
};
use kong_rust_abi::{Phase, PluginInstanceBox, PluginModRef};
use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
};

/// A plugin whose `.so` loaded and passed every check.
pub struct LoadedPlugin {
    pub name: String,
    pub version: String,
    pub priority: i64,
    pub phases: Vec<Phase>,
    /// The Kong schema, already validated as JSON.
    pub schema: serde_json::Value,
    /// Where it came from, for log lines.
    pub path: PathBuf,
    module: PluginModRef,
}

impl LoadedPlugin {
    /// A plugin from its root module: one read from a `.so`, or one compiled into this
    /// binary (a dedicated server). `origin` names it in log lines.
    pub fn from_module(module: PluginModRef, origin: &Path) -> Result<Self, String> {
        let info = module.info()()
            .into_result()
            .map_err(RString::into_string)?;
        let name = info.name.into_string();
        if name.is_empty() {
            return Err("the plugin's name is empty".into());
        }
        let schema = serde_json::from_str(&info.schema_json).map_err(|error| {
            format!("plugin {name:?} returned a schema that is not JSON: {error}")
        })?;
        kong_rust_schema::check_plugin_schema(&schema)
            .map_err(|error| format!("plugin {name:?} has a schema Kong would refuse: {error}"))?;
        Ok(LoadedPlugin {
            name,
            version: info.version.into_string(),
            priority: info.priority,
            // A phase from a later ABI release that this host cannot run is not advertised.
            phases: info.phases.into_iter().filter(|p| p.is_known()).collect(),
            schema,
            path: origin.to_path_buf(),
            module,
        })
    }

    /// Creates an instance; runs plugin code, so call it in a loop's coroutine.
    pub fn new_instance(&self, config_json: &str) -> Result<PluginInstanceBox, String> {
        self.module.new_instance()(config_json.into())
            .into_result()
            .map_err(|e| e.into_string())
    }

    pub fn implements(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A file that could not be loaded, and why, in words an operator can act on.
#[derive(Debug)]
pub struct LoadError {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// Every `*.so` in `dir`, in file-name order.
pub fn plugin_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "so") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads every plugin in `dir`. A file that fails does not stop the others.
pub fn load_dir(dir: &Path) -> std::io::Result<(Vec<LoadedPlugin>, Vec<LoadError>)> {
    if let Some(mode) = writable_by_others(dir)? {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "the directory is writable by other users (mode {mode:04o}) and loading a plugin runs its code; \
                 run `chmod o-w {}`",
                dir.display()
            ),
        ));
    }
    let mut loaded: Vec<LoadedPlugin> = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for path in plugin_files(dir)? {
        match load_file(&path) {
            Ok(plugin) => {
                if let Some(first) = seen.get(&plugin.name) {
                    errors.push(LoadError {
                        reason: format!(
                            "duplicate plugin name {:?}, already loaded from {}; remove one of the two files",
                            plugin.name,
                            first.display()
                        ),
                        path,
                    });
                } else {
                    seen.insert(plugin.name.clone(), path);
                    loaded.push(plugin);
                }
            }
            Err(error) => errors.push(error),
        }
    }
    Ok((loaded, errors))
}

/// Loads one `.so` and reads its metadata.
pub fn load_file(path: &Path) -> Result<LoadedPlugin, LoadError> {
    let fail = |reason: String| LoadError {
        path: path.to_path_buf(),
        reason,
    };
    match writable_by_others(path) {
        Ok(None) => {}
        Ok(Some(mode)) => {
            return Err(fail(format!(
                "writable by other users (mode {mode:04o}), and loading a plugin runs its code; \
                 refusing it: run `chmod o-w {}`",
                path.display()
            )))
        }
        Err(error) => return Err(fail(format!("cannot read its permissions: {error}"))),
    }
    let module = lib_header_from_path(path)
        .and_then(|header| header.init_root_module::<PluginModRef>())
        .map_err(|error| fail(explain(error)))?;
    LoadedPlugin::from_module(module, path).map_err(fail)
}

/// The permission bits of `path` when users other than its owner and group may write it
/// (following symlinks: the target is what gets loaded).
fn writable_by_others(path: &Path) -> std::io::Result<Option<u32>> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    Ok((mode & 0o002 != 0).then_some(mode))
}

/// What the host needs: a plugin built with any `kong-rust-pdk` release that depends on this
/// host's `kong-rust-abi` (the ABI is versioned by that crate alone, not by the PDK).
fn rebuild() -> String {
    format!(
        "rebuild the plugin against a kong-rust-pdk that uses kong-rust-abi {} (this host's ABI)",
        abi_requirement()
    )
}

/// `0.y` (or `x`) of this host's `kong-rust-abi`: the versions abi_stable accepts.
fn abi_requirement() -> &'static str {
    let version = kong_rust_abi::ABI_VERSION;
    let mut parts = version.splitn(3, '.');
    let major = parts.next().unwrap_or(version);
    match (major, parts.next()) {
        ("0", Some(minor)) => &version[..2 + minor.len()],
        _ => major,
    }
}

fn explain(error: LibraryError) -> String {
    match error {
        LibraryError::OpenError { err, .. } => {
            format!("not a loadable shared library ({err})")
        }
        LibraryError::GetSymbolError { .. } => {
            "not a kong-rust-host plugin: the file has no abi_stable root module \
             (a plugin crate must be a cdylib with #[kong_rust_pdk::plugin] on its `impl Plugin`, \
             built without kong-rust-pdk-test, which leaves the export out: keep the harness a \
             dev-dependency and build with `cargo build`, not from a test build)"
                .to_string()
        }
        LibraryError::InvalidAbiHeader(header) => format!(
            "built with abi_stable {}.{}, incompatible with this host's abi_stable 0.11; {}",
            header.abi_major,
            header.abi_minor,
            rebuild()
        ),
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => format!(
            "built against kong-rust-abi {actual_version}, this host needs kong-rust-abi {} \
             (it has {expected_version}); {}",
            abi_requirement(),
            rebuild()
        ),
        LibraryError::AbiInstability(details) => format!(
            "its ABI does not match this host's: the plugin interface types differ ({}); {}",
            layout_mismatch(&details.to_string()),
            rebuild()
        ),
        LibraryError::RootModule { err, .. } => {
            format!("initialising the plugin's root module failed: {err}")
        }
        LibraryError::InvalidCAbi { .. } => {
            format!(
                "built by a compiler with a different C ABI; {} with this host's toolchain",
                rebuild()
            )
        }
        other => format!("{other}; {}", rebuild()),
    }
}

/// Condenses abi_stable's multi-page layout report to its verdicts: each ends in an
/// `Error:<what>` line followed by `Expected:` and `Found:` blocks.
fn layout_mismatch(report: &str) -> String {
    let lines: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let value_after = |label: &str, from: usize| {
        lines[from..]
            .iter()
            .position(|l| *l == label)
            .and_then(|i| lines.get(from + i + 1))
            .copied()
            .unwrap_or("?")
    };
    let mut verdicts: Vec<String> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, line)| {
            let what = line.strip_prefix("Error:")?;
            Some(format!(
                "{what}: expected {}, found {}",
                value_after("Expected:", i),
                value_after("Found:", i)
            ))
        })
        .collect();
    // One verdict per type that differs: a package version repeats for every type.
    let mut seen = std::collections::HashSet::new();
    verdicts.retain(|verdict| seen.insert(verdict.clone()));
    if verdicts.is_empty() {
        "abi_stable reported a layout mismatch".to_string()
    } else {
        verdicts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::{explain, layout_mismatch};
    use abi_stable::{
        library::LibraryError,
        sabi_types::{VersionNumber, VersionStrings},
    };

    #[test]
    fn a_version_refusal_names_the_abi_version_this_host_needs() {
        let host = kong_rust_abi::ABI_VERSION;
        let plugin = VersionNumber {
            major: 0,
            minor: 0,
            patch: 7,
        };
        let message = explain(LibraryError::IncompatibleVersionNumber {
            library_name: "kong_rust_plugin",
            expected_version: VersionStrings::new(host).parsed().unwrap(),
            actual_version: plugin,
        });
        let needed = &host[..host.rfind('.').unwrap()];
        assert_eq!(
            message,
            format!(
                "built against kong-rust-abi 0.0.7, this host needs kong-rust-abi {needed} (it has {host}); \
                 rebuild the plugin against a kong-rust-pdk that uses kong-rust-abi {needed} (this host's ABI)"
            )
        );
    }

    #[test]
    fn layout_report_is_condensed_to_its_verdict() {
        let report = "Compared <this>:\n  --- Type Layout ---\n  lots\nError:mismatched package\nExpected:\n    kong-rust-pdk\nFound:\n    other\n";
        assert_eq!(
            layout_mismatch(report),
            "mismatched package: expected kong-rust-pdk, found other"
        );
    }
}
