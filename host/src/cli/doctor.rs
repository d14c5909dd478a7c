//! `kong-rust-host doctor`: what an operator checks before (or after) pointing Kong at the host,
//! in one report. Each line starts with `ok`, `warn` or `FAIL`.

use crate::{cli::client, loader};
use std::{fmt::Write, os::unix::fs::PermissionsExt, path::Path};

/// The report, and whether anything failed.
pub fn check(plugins_dir: &Path, socket_dir: &Path) -> (String, bool) {
    let mut report = Report::default();
    report.plugins(plugins_dir);
    report.sockets(socket_dir, plugins_dir);
    report.warn(
        "Kong logs a plugin server's output at INFO and its default log_level is notice: set \
         log_level = info in kong.conf to see this host's lines (load errors, panics, reclaimed events)",
    );
    report.warn(format!(
        "Kong fails open: a request whose plugin server Kong cannot reach (not started yet, \
         restarting, socket missing) is logged and goes on without the plugin, so an auth plugin \
         lets it through: start this host before Kong and hold Kong back with `kong-rust-host \
         wait-ready --socket-dir {}`",
        socket_dir.display()
    ));
    (report.text, report.failed)
}

#[derive(Default)]
struct Report {
    text: String,
    failed: bool,
    /// Plugins that loaded, to look for their sockets.
    names: Vec<String>,
}

impl Report {
    fn ok(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.text, "ok    {}", line.as_ref());
    }

    fn warn(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.text, "warn  {}", line.as_ref());
    }

    fn fail(&mut self, line: impl AsRef<str>) {
        self.failed = true;
        let _ = writeln!(self.text, "FAIL  {}", line.as_ref());
    }

    fn plugins(&mut self, dir: &Path) {
        match loader::load_dir(dir) {
            Err(error) => self.fail(format!("plugins dir {}: {error}", dir.display())),
            Ok((plugins, errors)) => {
                self.ok(format!(
                    "plugins dir {}: {} loadable, {} refused",
                    dir.display(),
                    plugins.len(),
                    errors.len()
                ));
                for plugin in &plugins {
                    let phases: Vec<&str> = plugin.phases.iter().map(|p| p.as_str()).collect();
                    self.ok(format!(
                        "plugin {} {} from {} (priority {}, phases {})",
                        plugin.name,
                        plugin.version,
                        plugin.path.display(),
                        plugin.priority,
                        phases.join(", ")
                    ));
                }
                for error in &errors {
                    self.fail(format!("plugin file {error}"));
                }
                if plugins.is_empty() {
                    self.fail("no plugin can be served");
                }
                self.names = plugins.into_iter().map(|p| p.name).collect();
            }
        }
    }

    fn sockets(&mut self, dir: &Path, plugins_dir: &Path) {
        let meta = match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => meta,
            Ok(_) => return self.fail(format!("socket dir {} is not a directory", dir.display())),
            Err(error) => return self.fail(format!("socket dir {}: {error}", dir.display())),
        };
        let probe = dir.join(format!(".kong-rust-host-doctor-{}", std::process::id()));
        match std::fs::write(&probe, b"") {
            Ok(()) => {
                let _ = std::fs::remove_file(&probe);
                self.ok(format!(
                    "socket dir {} is writable (mode {:04o})",
                    dir.display(),
                    meta.permissions().mode() & 0o7777
                ));
            }
            Err(error) => self.fail(format!(
                "socket dir {} is not writable by this user: {error}",
                dir.display()
            )),
        }
        for name in self.names.clone() {
            let socket = dir.join(format!("{name}.socket"));
            if !socket.exists() {
                self.warn(format!(
                    "{name}: no socket {} (the host is not serving this dir; start it with `kong-rust-host serve --plugins-dir {} --socket-dir {}`)",
                    socket.display(),
                    plugins_dir.display(),
                    dir.display()
                ));
                continue;
            }
            let mode = std::fs::metadata(&socket)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            match client::call(&socket, "plugin.GetStatus", rmpv::Value::Nil) {
                Ok(status) => {
                    let pid = status["Pid"].as_u64().unwrap_or(0);
                    let live = status["Plugins"][name.as_str()]["LiveInstances"]
                        .as_u64()
                        .unwrap_or(0);
                    self.ok(format!("{name}: served by pid {pid} on {} (mode {mode:04o}), {live} live instances", socket.display()));
                    self.reclaimed(&name, &status["Plugins"][name.as_str()]["Reclaimed"]);
                }
                Err(error) => self.fail(format!(
                    "{name}: {} exists but does not answer: {error}",
                    socket.display()
                )),
            }
        }
    }
}

impl Report {
    /// Warns about a running plugin's events that Kong stopped answering, by phase and the
    /// PDK call Kong never answered (`Reclaimed` of `plugin.GetStatus`).
    fn reclaimed(&mut self, name: &str, reclaimed: &rmpv::Value) {
        for (phase, methods) in reclaimed.as_map().into_iter().flatten() {
            for (method, count) in methods.as_map().into_iter().flatten() {
                let (phase, method) = (
                    phase.as_str().unwrap_or("?"),
                    method.as_str().unwrap_or("?"),
                );
                self.warn(format!(
                    "{name} ({phase}): {count} events reclaimed: Kong never answered {method}; \
                     it most likely raised inside Kong (see Kong's error log)"
                ));
            }
        }
    }
}
