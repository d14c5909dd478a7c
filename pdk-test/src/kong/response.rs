//! `kong.response.*`: the response the client gets.

use super::{header_of, headers_of, Answer, Args};
use crate::{
    http, lua,
    outcome::{Exit, LogLevel, Source},
    request::REQUEST_ID,
    state::{Body, HeaderOp, State},
};
use kong_rust_pdk::pdk::default_error_message;
use rmpv::Value;

pub(super) fn get_status(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.response.status))
}

pub(super) fn get_header(s: &mut State, a: &Args) -> Answer {
    header_of(a, &s.response.headers)
}

pub(super) fn get_headers(s: &mut State, a: &Args) -> Answer {
    headers_of(a, &s.response.headers)
}

pub(super) fn get_source(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.response.source.as_str()))
}

/// Before the service answered this has no visible effect: nginx takes the service's status.
pub(super) fn set_status(s: &mut State, a: &Args) -> Answer {
    s.response.status = a.status(0, 100..=599)?;
    Ok(Value::Nil)
}

/// nginx turns `_` into `-` in response header names.
fn response_name(name: &str) -> String {
    name.replace('_', "-")
}

/// One header change, except `Transfer-Encoding`, which Kong refuses with a warning.
fn change(
    s: &mut State,
    op: fn(String, Vec<String>) -> HeaderOp,
    (name, values): (String, Vec<String>),
) {
    let name = response_name(&name);
    if name.eq_ignore_ascii_case("transfer-encoding") {
        s.log(
            LogLevel::Warn,
            "manually setting Transfer-Encoding. Ignored.".into(),
        );
    } else {
        s.change_response_header(op(name, values));
    }
}

pub(super) fn set_header(s: &mut State, a: &Args) -> Answer {
    change(s, HeaderOp::Set, a.header(0)?);
    Ok(Value::Nil)
}

pub(super) fn add_header(s: &mut State, a: &Args) -> Answer {
    change(s, HeaderOp::Add, a.header(0)?);
    Ok(Value::Nil)
}

pub(super) fn clear_header(s: &mut State, a: &Args) -> Answer {
    let name = a.string(0, "header name")?;
    s.change_response_header(HeaderOp::Clear(response_name(&name)));
    Ok(Value::Nil)
}

pub(super) fn set_headers(s: &mut State, a: &Args) -> Answer {
    for header in a.headers(0)? {
        change(s, HeaderOp::Set, header);
    }
    Ok(Value::Nil)
}

/// Optional response headers: `nil`, or a table `validate_headers` accepts.
fn exit_headers(a: &Args, i: usize) -> Result<Vec<(String, Vec<String>)>, String> {
    match a.get(i) {
        Value::Nil => Ok(Vec::new()),
        table if lua::is_table(table) => Ok(a
            .headers(i)?
            .into_iter()
            .map(|(name, values)| (response_name(&name), values))
            .collect()),
        _ => Err("headers must be a nil or table".into()),
    }
}

/// Ends the request: `status`, a string body as is or a table body as JSON, plus `headers`.
/// In a stream only Kong's six stream statuses are accepted and headers are ignored.
pub(super) fn exit(s: &mut State, a: &Args) -> Answer {
    let status = if s.is_stream() {
        match lua::as_number(a.get(0)) {
            None => return Err("code must be a number".into()),
            Some(code) if [200.0, 400.0, 403.0, 500.0, 502.0, 503.0].contains(&code) => code as u16,
            Some(_) => {
                return Err(
                    "unacceptable code, only 200, 400, 403, 500, 502 and 503 are accepted".into(),
                )
            }
        }
    } else {
        a.status(0, 100..=599)?
    };
    let body = match a.get(1) {
        Value::Nil => Body::Raw(Vec::new()),
        table if lua::is_table(table) => Body::Json(lua::to_json(table).to_string()),
        value => match lua::as_bytes(value) {
            Some(bytes) => Body::Raw(bytes.to_vec()),
            None => return Err("body must be a nil, string or table".into()),
        },
    };
    let headers = if s.is_stream() {
        Vec::new()
    } else {
        exit_headers(a, 2)?
    };
    s.respond(status, body, headers, Source::Exit);
    record_exit(s, "kong.response.exit", status);
    Ok(Value::Nil)
}

/// Ends the request with an error body in the format the `Content-Type` header argument or the
/// request's `Accept` header asks for (JSON by default), with Kong's default messages.
pub(super) fn error(s: &mut State, a: &Args) -> Answer {
    let status = a.status(0, 400..=599)?;
    let message = match a.get(1) {
        Value::Nil => None,
        table if lua::is_table(table) => Some(lua::to_json(table).to_string()),
        value => Some(lua::as_text(value).ok_or("message must be a nil, a string or a table")?),
    };
    let mut headers = exit_headers(a, 2)?;
    let content_type = match headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        Some((_, values)) => values.first().cloned().unwrap_or_default(),
        None => {
            let accept = http::header_values(&s.headers, "accept").map(|values| values.join(","));
            let content_type = response_type(accept.as_deref());
            headers.push(("Content-Type".into(), vec![content_type.to_string()]));
            content_type.to_string()
        }
    };
    let message = message.unwrap_or_else(|| default_error_message(status));
    let body = error_template(&content_type)
        .replacen("%s", &message, 1)
        .replacen("%s", REQUEST_ID, 1);
    s.respond(status, Body::Raw(body.into_bytes()), headers, Source::Exit);
    record_exit(s, "kong.response.error", status);
    Ok(Value::Nil)
}

fn record_exit(s: &mut State, method: &str, status: u16) {
    s.exit = Some(Exit {
        plugin: s.plugin,
        phase: s.phase,
        method: method.to_string(),
        status,
        by_plugin: true,
    });
}

const JSON: &str = "application/json; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const XML: &str = "application/xml; charset=utf-8";
const PLAIN: &str = "text/plain; charset=utf-8";

/// Kong's `get_response_type`: the acceptable media type with the highest quality that Kong has
/// a template for; JSON when none is.
fn response_type(accept: Option<&str>) -> &'static str {
    let mut best = (0.0, JSON);
    for entry in accept.unwrap_or_default().split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        if !media.contains('/') {
            continue;
        }
        let quality = parts
            .find_map(|p| p.strip_prefix("q="))
            .map_or(Some(1.0), |q| q.parse::<f64>().ok());
        let Some(quality) = quality else { continue };
        if quality > best.0 {
            best = (quality, mime_type(&media));
        }
    }
    best.1
}

fn mime_type(media: &str) -> &'static str {
    match media {
        "text/html" => HTML,
        "application/xml" => XML,
        "text/plain" | "text/*" => PLAIN,
        _ => JSON,
    }
}

/// The error body for `content_type`: `%s` for the message, then for the request id.
fn error_template(content_type: &str) -> &'static str {
    match http::media_type(content_type).as_str() {
        "text/html" => "<!doctype html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n    <title>Error</title>\n  </head>\n  <body>\n    <h1>Error</h1>\n    <p>%s.</p>\n    <p>request_id: %s</p>\n  </body>\n</html>\n",
        "application/xml" => "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error>\n  <message>%s</message>\n  <requestid>%s</requestid>\n</error>\n",
        "text/plain" => "%s\nrequest_id: %s\n",
        _ => "{\n  \"message\":\"%s\",\n  \"request_id\":\"%s\"\n}",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_template() {
        assert_eq!(response_type(None), JSON);
        assert_eq!(response_type(Some("text/html")), HTML);
        assert_eq!(
            response_type(Some("text/plain;q=0.5, application/xml")),
            XML
        );
        assert_eq!(response_type(Some("image/png")), JSON);
        assert_eq!(response_type(Some("text/*")), PLAIN);
    }
}
