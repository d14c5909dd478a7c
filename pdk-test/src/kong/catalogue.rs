//! Every PDK function of protocol.md §11: its name, the phases Kong allows it in, what it does.

use super::{client, request, response, service, support, Answer, Args};
use crate::{outcome::LogLevel, state::State};
use kong_rust_pdk::abi::Phase;

/// A set of phases.
#[derive(Clone, Copy)]
pub(super) struct Phases(u8);

const fn bit(phase: Phase) -> u8 {
    1 << phase.to_u8()
}

const C: u8 = bit(Phase::Certificate);
const R: u8 = bit(Phase::Rewrite);
const A: u8 = bit(Phase::Access);
const P: u8 = bit(Phase::Response);
const S: u8 = bit(Phase::Preread);
const L: u8 = bit(Phase::Log);

/// `phases!(R A P)`: the phases named by their letter in protocol.md §11.
macro_rules! phases {
    ($($phase:ident)*) => {
        Phases(0 $(| $phase)*)
    };
}

const ALL: Phases = phases!(C R A P S L);

impl Phases {
    /// Kong's phase check: its error when `phase` is not one of these.
    pub(super) fn check(self, phase: Phase) -> Result<(), String> {
        if self.0 & bit(phase) != 0 {
            return Ok(());
        }
        let allowed: Vec<&str> = Phase::ALL
            .into_iter()
            .filter(|p| self.0 & bit(*p) != 0)
            .map(Phase::as_str)
            .collect();
        let why = match phase {
            Phase::Log => {
                "; the log phase runs in a timer after the response was sent, with only a \
                 snapshot of the request (docs/protocol.md §10.3): read request data from \
                 kong.log.serialize() instead"
            }
            _ => "",
        };
        Err(format!(
            "function cannot be called in {phase} phase (only in: {}){why}",
            allowed.join(", ")
        ))
    }
}

type Run = fn(&mut State, &Args) -> Answer;

pub(super) struct Function {
    name: &'static str,
    pub(super) phases: Phases,
    pub(super) run: Run,
    usable: bool,
}

const fn f(name: &'static str, phases: Phases, run: Run) -> Function {
    Function {
        name,
        phases,
        run,
        usable: true,
    }
}

/// A function that exists in Kong but cannot work for an external plugin: `run` raises why.
const fn unusable(name: &'static str, run: Run) -> Function {
    Function {
        name,
        phases: ALL,
        run,
        usable: false,
    }
}

pub(super) fn find(method: &str) -> Option<&'static Function> {
    CATALOGUE.iter().find(|function| function.name == method)
}

/// The names of the functions an external plugin can use.
pub(crate) fn usable_names() -> Vec<&'static str> {
    CATALOGUE
        .iter()
        .filter(|function| function.usable)
        .map(|function| function.name)
        .collect()
}

fn body_filter_only(_: &mut State, _: &Args) -> Answer {
    Err("only available in the body_filter phase, which external plugins cannot implement".into())
}

fn needs_cdata(_: &mut State, _: &Args) -> Answer {
    Err(
        "needs a cdata or Lua function argument, which cannot be sent over the plugin protocol"
            .into(),
    )
}

#[rustfmt::skip]
static CATALOGUE: &[Function] = &[
    // kong.client (protocol.md §11.2)
    f("kong.client.get_ip", phases!(C R A P), client::get_ip),
    f("kong.client.get_forwarded_ip", phases!(C R A P), client::get_forwarded_ip),
    f("kong.client.get_port", phases!(C R A P), client::get_port),
    f("kong.client.get_forwarded_port", phases!(C R A P), client::get_forwarded_port),
    f("kong.client.get_credential", phases!(A P L), client::get_credential),
    f("kong.client.load_consumer", phases!(A P L), client::load_consumer),
    f("kong.client.get_consumer", phases!(A P L), client::get_consumer),
    f("kong.client.authenticate", phases!(A), client::authenticate),
    f("kong.client.get_protocol", phases!(A P), client::get_protocol),
    f("kong.client.tls.request_client_certificate", phases!(C), support::done),
    f("kong.client.tls.disable_session_reuse", phases!(C), support::done),
    f("kong.client.tls.get_full_client_certificate_chain", phases!(R A), client::certificate_chain),
    f("kong.client.tls.set_client_verify", phases!(R A), client::set_client_verify),
    // kong.ctx, kong.nginx, kong.log, kong.ip, kong.node, kong.plugin, kong.cluster
    // (protocol.md §11.3)
    f("kong.ctx.shared.get", phases!(R A P S L), support::shared_get),
    f("kong.ctx.shared.set", phases!(R A P S L), support::shared_set),
    f("kong.nginx.get_var", phases!(R A P S), support::get_var),
    f("kong.nginx.get_tls1_version_str", phases!(C R A P), support::tls_version),
    f("kong.nginx.get_ctx", ALL, support::get_ctx),
    f("kong.nginx.set_ctx", ALL, support::set_ctx),
    f("kong.nginx.req_start_time", phases!(R A P L), support::req_start_time),
    f("kong.nginx.get_subsystem", ALL, support::subsystem),
    f("kong.nginx.get_statistics", ALL, support::statistics),
    f("kong.log", ALL, |s, a| support::log(s, a, LogLevel::Notice)),
    f("kong.log.alert", ALL, |s, a| support::log(s, a, LogLevel::Alert)),
    f("kong.log.crit", ALL, |s, a| support::log(s, a, LogLevel::Crit)),
    f("kong.log.err", ALL, |s, a| support::log(s, a, LogLevel::Err)),
    f("kong.log.warn", ALL, |s, a| support::log(s, a, LogLevel::Warn)),
    f("kong.log.notice", ALL, |s, a| support::log(s, a, LogLevel::Notice)),
    f("kong.log.info", ALL, |s, a| support::log(s, a, LogLevel::Info)),
    f("kong.log.debug", ALL, |s, a| support::log(s, a, LogLevel::Debug)),
    f("kong.log.deprecation", ALL, |s, a| support::log(s, a, LogLevel::Warn)),
    f("kong.log.set_serialize_value", phases!(C R A P L), support::set_serialize_value),
    f("kong.log.serialize", phases!(L), support::serialize),
    f("kong.ip.is_trusted", ALL, support::is_trusted),
    f("kong.node.get_id", ALL, support::node_id),
    f("kong.node.get_hostname", ALL, support::hostname),
    f("kong.node.get_memory_stats", ALL, support::memory_stats),
    f("kong.plugin.get_id", phases!(R A P L), support::plugin_id),
    f("kong.cluster.get_id", ALL, support::cluster_id),
    // kong.request (protocol.md §11.4)
    f("kong.request.get_scheme", phases!(R A P), request::get_scheme),
    f("kong.request.get_host", phases!(R A P), request::get_host),
    f("kong.request.get_port", phases!(C R A P), request::get_port),
    f("kong.request.get_forwarded_scheme", phases!(R A P), request::get_forwarded_scheme),
    f("kong.request.get_forwarded_host", phases!(R A P), request::get_forwarded_host),
    f("kong.request.get_forwarded_path", phases!(R A P), request::get_forwarded_path),
    f("kong.request.get_forwarded_prefix", phases!(R A P), request::get_forwarded_prefix),
    f("kong.request.get_forwarded_port", phases!(R A P), request::get_forwarded_port),
    f("kong.request.get_http_version", phases!(R A P), request::get_http_version),
    f("kong.request.get_method", phases!(R A P), request::get_method),
    f("kong.request.get_path", phases!(R A P), request::get_path),
    f("kong.request.get_raw_path", phases!(R A P), request::get_raw_path),
    f("kong.request.get_path_with_query", phases!(R A P), request::get_path_with_query),
    f("kong.request.get_raw_query", phases!(R A P), request::get_raw_query),
    f("kong.request.get_query_arg", phases!(R A P), request::get_query_arg),
    f("kong.request.get_query", phases!(R A P), request::get_query),
    f("kong.request.get_header", phases!(R A P L), request::get_header),
    f("kong.request.get_headers", phases!(R A P L), request::get_headers),
    f("kong.request.get_raw_body", phases!(R A P), request::get_raw_body),
    f("kong.request.get_body", phases!(R A P), request::get_body),
    f("kong.request.get_start_time", phases!(R A P), request::get_start_time),
    f("kong.request.get_uri_captures", phases!(R A P L), request::get_uri_captures),
    // kong.response (protocol.md §11.5)
    f("kong.response.get_status", phases!(P L), response::get_status),
    f("kong.response.get_header", phases!(P L), response::get_header),
    f("kong.response.get_headers", phases!(P L), response::get_headers),
    f("kong.response.get_source", phases!(P L), response::get_source),
    f("kong.response.set_status", phases!(R A P), response::set_status),
    f("kong.response.set_header", phases!(R A P), response::set_header),
    f("kong.response.add_header", phases!(R A P), response::add_header),
    f("kong.response.clear_header", phases!(R A P), response::clear_header),
    f("kong.response.set_headers", phases!(R A P), response::set_headers),
    f("kong.response.exit", phases!(R A P S), response::exit),
    f("kong.response.error", phases!(R A P), response::error),
    unusable("kong.response.get_raw_body", body_filter_only),
    unusable("kong.response.set_raw_body", body_filter_only),
    // kong.router, kong.service (protocol.md §11.6)
    f("kong.router.get_route", phases!(A P L), service::get_route),
    f("kong.router.get_service", phases!(A P L), service::get_service),
    f("kong.service.set_upstream", phases!(A), service::set_upstream),
    f("kong.service.set_target", phases!(A), service::set_target),
    f("kong.service.set_retries", phases!(A), service::set_retries),
    f("kong.service.set_timeouts", phases!(A), service::set_timeouts),
    f("kong.service.set_tls_verify", phases!(R A S), service::set_tls_verify),
    f("kong.service.set_tls_verify_depth", phases!(R A S), service::set_tls_verify_depth),
    unusable("kong.service.set_tls_cert_key", needs_cdata),
    unusable("kong.service.set_tls_verify_store", needs_cdata),
    unusable("kong.service.set_target_retry_callback", needs_cdata),
    f("kong.service.request.enable_buffering", phases!(R A), service::enable_buffering),
    f("kong.service.request.set_scheme", phases!(R A), service::set_scheme),
    f("kong.service.request.set_path", phases!(R A), service::set_path),
    f("kong.service.request.set_raw_query", phases!(R A), service::set_raw_query),
    f("kong.service.request.set_method", phases!(R A), service::set_method),
    f("kong.service.request.set_query", phases!(R A), service::set_query),
    f("kong.service.request.clear_query_arg", phases!(R A), service::clear_query_arg),
    f("kong.service.request.set_header", phases!(R A), service::set_header),
    f("kong.service.request.add_header", phases!(R A), service::add_header),
    f("kong.service.request.clear_header", phases!(R A), service::clear_header),
    f("kong.service.request.set_headers", phases!(R A), service::set_headers),
    f("kong.service.request.set_raw_body", phases!(R A), service::set_raw_body),
    f("kong.service.request.set_body", phases!(R A), service::set_body),
    f("kong.service.request.disable_tls", phases!(S), support::done),
    f("kong.service.response.get_status", phases!(P), service::response_status),
    f("kong.service.response.get_header", phases!(P), service::response_header),
    f("kong.service.response.get_headers", phases!(P), service::response_headers),
    f("kong.service.response.get_raw_body", phases!(P), service::response_raw_body),
    f("kong.service.response.get_body", phases!(P), service::response_body),
    // kong.vault, kong.telemetry (protocol.md §11.7)
    f("kong.vault.get", ALL, support::vault_get),
    f("kong.vault.is_reference", ALL, support::vault_is_reference),
    f("kong.vault.parse_reference", ALL, support::vault_parse_reference),
    f("kong.vault.update", ALL, support::vault_update),
    f("kong.vault.flush", ALL, support::nothing),
    f("kong.telemetry.log", ALL, support::nothing),
];
