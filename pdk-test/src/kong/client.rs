//! `kong.client.*`: the client connection and who it authenticated as.

use super::{optional, Answer, Args};
use crate::{
    http, lua,
    state::{lua_field, lua_value, State},
};
use rmpv::Value;

pub(super) fn get_ip(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.req.client_ip.as_str()))
}

pub(super) fn get_forwarded_ip(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.forwarded_ip()))
}

/// The client's port; Kong's realip handling keeps it for forwarded requests too.
pub(super) fn get_port(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.req.client_port))
}

pub(super) fn get_forwarded_port(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.req.client_port))
}

pub(super) fn get_credential(s: &mut State, _: &Args) -> Answer {
    Ok(optional(s.credential.clone()))
}

pub(super) fn get_consumer(s: &mut State, _: &Args) -> Answer {
    Ok(optional(s.consumer.clone()))
}

/// By id (a UUID), then by username when `search_by_username` is truthy; absent when not found.
pub(super) fn load_consumer(s: &mut State, a: &Args) -> Answer {
    let id = a.string(0, "consumer_id")?;
    let by_username = a.truthy(1);
    let find = |field: &str| {
        s.known_consumers
            .iter()
            .chain(&s.consumer)
            .find(|consumer| lua_field(consumer, field).as_deref() == Some(id.as_str()))
            .cloned()
    };
    let by_id = is_uuid(&id).then(|| find("id")).flatten();
    Ok(optional(by_id.or_else(|| {
        by_username.then(|| find("username")).flatten()
    })))
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Sets (or, with `nil`, clears) the authenticated consumer and credential.
pub(super) fn authenticate(s: &mut State, a: &Args) -> Answer {
    let (consumer, credential) = (a.get(0), a.get(1));
    if consumer.is_nil() && credential.is_nil() {
        return Err("either credential or consumer must be provided".into());
    }
    for (value, what) in [(consumer, "consumer"), (credential, "credential")] {
        if !value.is_nil() && !lua::is_table(value) {
            return Err(format!("{what} must be a table or nil"));
        }
    }
    let entity = |value: &Value| (!value.is_nil()).then(|| lua::through_lua(value.clone()));
    s.consumer = entity(consumer);
    s.credential = entity(credential);
    Ok(Value::Nil)
}

/// The route's only protocol, or `http`/`https` (`grpc`/`grpcs`) from the connection;
/// `allow_terminated` also trusts `X-Forwarded-Proto` from a trusted client.
pub(super) fn get_protocol(s: &mut State, a: &Args) -> Answer {
    let Some(route) = s.route.as_ref() else {
        return Ok(Value::Nil);
    };
    let protocols: Vec<String> =
        lua::entries(lua_value(Some(route), "protocols").unwrap_or(&Value::Nil))
            .iter()
            .filter_map(|(_, protocol)| lua::as_text(protocol))
            .collect();
    if let [only] = protocols.as_slice() {
        return Ok(Value::from(only.as_str()));
    }
    if s.is_stream() {
        return Ok(Value::from(s.req.scheme.as_str()));
    }
    let terminated = a.truthy(0)
        && s.is_trusted(&s.req.client_ip)
        && http::first_header(&s.headers, "x-forwarded-proto")
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    let https = s.req.scheme == "https" || terminated;
    let grpc = protocols.iter().any(|p| p.starts_with("grpc"))
        && http::first_header(&s.headers, "content-type")
            .is_some_and(|ct| ct.starts_with("application/grpc"));
    let protocol = match (grpc, https) {
        (true, true) => "grpcs",
        (true, false) => "grpc",
        (false, true) => "https",
        (false, false) => "http",
    };
    Ok(Value::from(protocol))
}

pub(super) fn certificate_chain(s: &mut State, _: &Args) -> Answer {
    Ok(optional(s.req.client_certificate.clone()))
}

pub(super) fn set_client_verify(_: &mut State, a: &Args) -> Answer {
    let verify = a.string(0, "v")?;
    if verify == "SUCCESS" || verify == "NONE" || verify.starts_with("FAILED:") {
        Ok(Value::Nil)
    } else {
        Err(format!(
            "unknown client verify value: {verify}, accepted values are: SUCCESS, NONE, or FAILED:<reason>"
        ))
    }
}
