//! HTTP details Kong delegates to nginx: header lookups, query strings, URL escaping, path
//! normalization and request/response body codecs.

use super::lua;
use kong_rust_pdk::pdk::Headers;
use rmpv::Value;

/// How nginx compares header names: case-insensitively, `_` standing for `-`.
fn lookup_key(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Whether two header names name the same header.
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    lookup_key(a) == lookup_key(b)
}

pub(crate) fn header_values<'a>(headers: &'a Headers, name: &str) -> Option<&'a [String]> {
    let wanted = lookup_key(name);
    headers
        .iter()
        .find(|(key, _)| lookup_key(key) == wanted)
        .map(|(_, values)| values)
}

/// The first value of header `name`, as `get_header` returns it.
pub(crate) fn first_header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    header_values(headers, name).and_then(|values| values.first().map(String::as_str))
}

pub(crate) fn clear_header(headers: &mut Headers, name: &str) {
    let wanted = lookup_key(name);
    let matching: Vec<String> = headers
        .iter()
        .filter(|(key, _)| lookup_key(key) == wanted)
        .map(|(key, _)| key.to_string())
        .collect();
    for key in matching {
        headers.remove(&key);
    }
}

/// Replaces every value of `name`, which takes the case given; no values removes the header.
pub(crate) fn set_header(headers: &mut Headers, name: &str, values: Vec<String>) {
    clear_header(headers, name);
    for value in values {
        headers.append(name, value);
    }
}

/// Adds `values` to `name`; a header already there keeps its name's case.
pub(crate) fn add_header(headers: &mut Headers, name: &str, values: Vec<String>) {
    let wanted = lookup_key(name);
    let existing = headers
        .iter()
        .find(|(key, _)| lookup_key(key) == wanted)
        .map(|(key, _)| key.to_string());
    let name = existing.as_deref().unwrap_or(name);
    for value in values {
        headers.append(name, value);
    }
}

/// At most `max` header lines, as `ngx.req.get_headers(max)` truncates.
pub(crate) fn first_lines(headers: &Headers, max: usize) -> Headers {
    headers
        .iter()
        .flat_map(|(name, values)| values.iter().map(move |value| (name, value.as_str())))
        .take(max)
        .collect()
}

/// A multi-map result after Kong's fix-up (protocol.md §11.1): a map of arrays, an empty one a
/// map. nginx's `get_headers` lower-cases the names.
pub(crate) fn multi_map(headers: &Headers) -> Value {
    Value::Map(
        headers
            .iter()
            .map(|(name, values)| {
                let values = values.iter().map(|v| Value::from(v.as_str())).collect();
                (Value::from(name.to_ascii_lowercase()), Value::Array(values))
            })
            .collect(),
    )
}

/// Headers as a Lua table encoded by cjson: one value as a string, several as an array.
pub(crate) fn headers_json(headers: &Headers) -> serde_json::Value {
    headers
        .iter()
        .map(|(name, values)| {
            let value = match values {
                [one] => serde_json::Value::from(one.as_str()),
                many => serde_json::Value::from(many.to_vec()),
            };
            (name.to_ascii_lowercase(), value)
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// A `name: value` header list's size on the wire, plus the first line and the body.
pub(crate) fn wire_size(first_line: &str, headers: &Headers, body: &[u8]) -> usize {
    let header_bytes: usize = headers
        .iter()
        .flat_map(|(name, values)| values.iter().map(move |v| name.len() + v.len() + 4))
        .sum();
    first_line.len() + 2 + header_bytes + 2 + body.len()
}

/// One query or form argument: `a=1` is `Some("1")`, a bare `a` (a flag) is `None`.
pub(crate) type Arg = (String, Option<String>);

/// `ngx.decode_args`: `&`-separated, `+` is a space, empty names are skipped.
pub(crate) fn parse_args(raw: &str, max: usize) -> Vec<Arg> {
    raw.split('&')
        .filter(|part| !part.is_empty())
        .filter_map(|part| {
            let (name, value) = match part.split_once('=') {
                Some((name, value)) => (name, Some(unescape(value, true))),
                None => (part, None),
            };
            (!name.is_empty()).then(|| (unescape(name, true), value))
        })
        .take(max)
        .collect()
}

/// Arguments grouped by name in order of first appearance.
fn grouped(args: &[Arg]) -> Vec<(&str, Vec<&Option<String>>)> {
    let mut groups: Vec<(&str, Vec<&Option<String>>)> = Vec::new();
    for (name, value) in args {
        match groups.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) => values.push(value),
            None => groups.push((name, vec![value])),
        }
    }
    groups
}

fn arg_scalar(value: &Option<String>) -> Value {
    value.as_deref().map_or(Value::Boolean(true), Value::from)
}

/// The Lua table `ngx.req.get_uri_args` returns: a string, `true` for a flag, an array for a
/// repeated name.
pub(crate) fn args_table(args: &[Arg]) -> Value {
    let entries: Vec<(Value, Value)> = grouped(args)
        .into_iter()
        .map(|(name, values)| {
            let value = match values.as_slice() {
                [one] => arg_scalar(one),
                many => Value::Array(many.iter().map(|v| arg_scalar(v)).collect()),
            };
            (Value::from(name), value)
        })
        .collect();
    if entries.is_empty() {
        Value::Array(Vec::new())
    } else {
        Value::Map(entries)
    }
}

/// `get_query`'s result after the multi-map fix-up: strings become 1-element arrays, flags empty
/// arrays, arrays (which may hold `true`) stay; an empty result is an empty map.
pub(crate) fn args_multi_map(args: &[Arg]) -> Value {
    Value::Map(
        grouped(args)
            .into_iter()
            .map(|(name, values)| {
                let value = match values.as_slice() {
                    [None] => Value::Array(Vec::new()),
                    many => Value::Array(many.iter().map(|v| arg_scalar(v)).collect()),
                };
                (Value::from(name), value)
            })
            .collect(),
    )
}

/// `make_ordered_args` of Kong's service request module: each name encoded with
/// `ngx.encode_args` (`true` a flag, `false` dropped, arrays repeated), the pieces sorted.
pub(crate) fn encode_args(table: &Value) -> Result<String, String> {
    let mut pieces = Vec::new();
    for (name, value) in lua::entries(table) {
        let name = match &name {
            Value::String(_) | Value::Binary(_) => lua::as_text(&name).unwrap_or_default(),
            _ => return Err("arg keys must be strings".into()),
        };
        let values = match &value {
            Value::Array(items) => items.clone(),
            single => vec![single.clone()],
        };
        let mut parts = Vec::new();
        for value in &values {
            match value {
                Value::Boolean(true) => parts.push(escape(&name)),
                Value::Boolean(false) => {}
                Value::String(_)
                | Value::Binary(_)
                | Value::Integer(_)
                | Value::F64(_)
                | Value::F32(_) => {
                    parts.push(format!(
                        "{}={}",
                        escape(&name),
                        escape(&lua::tostring(value))
                    ));
                }
                other => {
                    return Err(format!(
                        "attempt to use {} as query arg value",
                        lua::type_name(other)
                    ))
                }
            }
        }
        pieces.push(parts.join("&"));
    }
    pieces.sort();
    Ok(pieces.join("&"))
}

/// Removes every argument called `name` from a raw query, keeping the others as written.
pub(crate) fn remove_arg(raw: &str, name: &str) -> String {
    raw.split('&')
        .filter(|part| {
            let arg = part.split_once('=').map_or(*part, |(n, _)| n);
            unescape(arg, true) != name
        })
        .collect::<Vec<_>>()
        .join("&")
        .replace('+', "%20")
}

/// Percent-decoding; `plus` turns `+` into a space (query strings and forms).
pub(crate) fn unescape(text: &str, plus: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() && hex_pair(bytes[i + 1], bytes[i + 2]).is_some() => {
                out.extend(hex_pair(bytes[i + 1], bytes[i + 2]));
                i += 3;
                continue;
            }
            b'+' if plus => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_pair(high: u8, low: u8) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    Some((digit(high)? * 16 + digit(low)?) as u8)
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// `ngx.escape_uri` for a query component: everything but unreserved characters escaped.
pub(crate) fn escape(text: &str) -> String {
    escape_except(text, is_unreserved)
}

/// Kong's path escaping for `set_path`: reserved characters and `%` stay, the rest is escaped.
pub(crate) fn escape_path(path: &str) -> String {
    escape_except(path, |b| {
        is_unreserved(b) || b"!$&'()*+,;=:@/%".contains(&b)
    })
}

fn escape_except(text: &str, keep: impl Fn(u8) -> bool) -> String {
    text.bytes()
        .map(|b| {
            if keep(b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `kong.request.get_path`: unreserved escapes decoded, other escapes upper-cased, dot
/// segments resolved and repeated slashes merged.
pub(crate) fn normalize_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| hex_pair(bytes[i + 1], bytes[i + 2]))
            .flatten();
        match escaped {
            Some(byte) if is_unreserved(byte) => decoded.push(byte as char),
            Some(byte) => decoded.push_str(&format!("%{byte:02X}")),
            None => {
                decoded.push(bytes[i] as char);
                i += 1;
                continue;
            }
        }
        i += 3;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut normalized = format!("/{}", segments.join("/"));
    if trailing && !segments.is_empty() {
        normalized.push('/');
    }
    normalized
}

/// The media type of a `Content-Type` value: lower-cased, parameters dropped.
pub(crate) fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// A `name=value` parameter of a `Content-Type` value (`boundary`), unquoted.
fn content_type_parameter<'a>(content_type: &'a str, name: &str) -> Option<&'a str> {
    content_type.split(';').skip(1).find_map(|parameter| {
        let (key, value) = parameter.split_once('=')?;
        (key.trim().eq_ignore_ascii_case(name)).then(|| value.trim().trim_matches('"'))
    })
}

/// `get_body`: a body decoded by its media type into the Lua table Kong returns; `None` when Kong
/// returns nothing (unknown type, invalid JSON, a JSON scalar).
pub(crate) fn decode_body(content_type: &str, body: &[u8], max_args: usize) -> Option<Value> {
    match media_type(content_type).as_str() {
        "application/x-www-form-urlencoded" => Some(args_table(&parse_args(
            &String::from_utf8_lossy(body),
            max_args,
        ))),
        "application/json" => match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(json) if json.is_object() || json.is_array() => Some(lua::from_json(&json)),
            _ => None,
        },
        "multipart/form-data" => {
            let boundary = content_type_parameter(content_type, "boundary")?;
            Some(args_table(&multipart_fields(body, boundary)))
        }
        _ => None,
    }
}

fn multipart_fields(body: &[u8], boundary: &str) -> Vec<Arg> {
    let body = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    body.split(delimiter.as_str())
        .skip(1)
        .take_while(|part| !part.starts_with("--"))
        .filter_map(|part| {
            let part = part.strip_prefix("\r\n").unwrap_or(part);
            let (head, value) = part.split_once("\r\n\r\n")?;
            let name = head.split("\r\n").find_map(|line| {
                let (key, rest) = line.split_once(':')?;
                if !key.trim().eq_ignore_ascii_case("content-disposition") {
                    return None;
                }
                let start = rest.find("name=\"")? + 6;
                let end = rest[start..].find('"')? + start;
                Some(rest[start..end].to_string())
            })?;
            let value = value.strip_suffix("\r\n").unwrap_or(value);
            Some((name, Some(value.to_string())))
        })
        .collect()
}

/// `kong.service.request.set_body`: `args` encoded for `mime`; the body and the Content-Type to
/// send, or Kong's error for a table it cannot encode.
pub(crate) fn encode_body(args: &Value, mime: &str) -> Result<(Vec<u8>, String), String> {
    match media_type(mime).as_str() {
        "application/x-www-form-urlencoded" => {
            Ok((encode_args(args)?.into_bytes(), mime.to_string()))
        }
        "application/json" => Ok((
            lua::to_json(args).to_string().into_bytes(),
            mime.to_string(),
        )),
        "multipart/form-data" => {
            let boundary =
                content_type_parameter(mime, "boundary").unwrap_or("kong-testing-boundary");
            let mut fields = Vec::new();
            for (key, value) in lua::entries(args) {
                let Some(name) = lua::as_text(&key) else {
                    return Err(format!(
                        "invalid key {}: got {}, expected string",
                        lua::tostring(&key),
                        lua::type_name(&key)
                    ));
                };
                if lua::is_table(&value) || value.is_nil() {
                    return Err(format!(
                        "invalid value \"{name}\": got {}, expected string, number or boolean",
                        lua::type_name(&value)
                    ));
                }
                fields.push((name, lua::tostring(&value)));
            }
            fields.sort();
            let mut body = String::new();
            for (name, value) in fields {
                body.push_str(&format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                ));
            }
            body.push_str(&format!("--{boundary}--\r\n"));
            Ok((
                body.into_bytes(),
                format!("multipart/form-data; boundary={boundary}"),
            ))
        }
        _ => Err(format!("unsupported content type {mime}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_tables_follow_ngx() {
        let args = parse_args("a=1&a&b=x+y&c=&&=z", 100);
        assert_eq!(
            args_table(&args),
            Value::Map(vec![
                (
                    Value::from("a"),
                    Value::Array(vec![Value::from("1"), Value::Boolean(true)])
                ),
                (Value::from("b"), Value::from("x y")),
                (Value::from("c"), Value::from("")),
            ])
        );
        let flag = parse_args("debug", 100);
        assert_eq!(
            args_multi_map(&flag),
            Value::Map(vec![(Value::from("debug"), Value::Array(vec![]))])
        );
    }

    #[test]
    fn set_query_orders_and_escapes_like_kong() {
        // The example of Kong's own documentation for set_query.
        let table = Value::Map(vec![
            (Value::from("foo"), Value::from("hello world")),
            (
                Value::from("bar"),
                Value::Array(vec![
                    Value::from("baz"),
                    Value::from("bla"),
                    Value::Boolean(true),
                ]),
            ),
            (Value::from("zzz"), Value::Boolean(true)),
            (Value::from("blo"), Value::from("")),
        ]);
        assert_eq!(
            encode_args(&table).unwrap(),
            "bar=baz&bar=bla&bar&blo=&foo=hello%20world&zzz"
        );
        assert_eq!(remove_arg("a=1&b=2&a&c=x+y", "a"), "b=2&c=x%20y");
    }

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize_path("/a//b/./c/../d%7e%2f"), "/a/b/d~%2F");
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path("/x/"), "/x/");
    }

    #[test]
    fn bodies_decode_by_media_type() {
        let form = decode_body(
            "application/x-www-form-urlencoded; charset=utf-8",
            b"a=1&b",
            100,
        );
        assert_eq!(
            form,
            Some(Value::Map(vec![
                (Value::from("a"), Value::from("1")),
                (Value::from("b"), Value::Boolean(true)),
            ]))
        );
        assert_eq!(decode_body("application/json", b"42", 100), None);
        assert_eq!(decode_body("text/plain", b"x", 100), None);
        let (body, mime) = encode_body(
            &Value::Map(vec![(Value::from("k"), Value::from("v"))]),
            "multipart/form-data; boundary=XY",
        )
        .unwrap();
        assert_eq!(
            decode_body(&mime, &body, 100),
            Some(Value::Map(vec![(Value::from("k"), Value::from("v"))]))
        );
    }

    #[test]
    fn header_lookups_ignore_case_and_underscores() {
        let mut headers = Headers::new();
        add_header(&mut headers, "X-Foo", vec!["1".into()]);
        add_header(&mut headers, "x-foo", vec!["2".into()]);
        assert_eq!(first_header(&headers, "X_FOO"), Some("1"));
        set_header(&mut headers, "x_foo", vec!["3".into()]);
        assert_eq!(
            header_values(&headers, "x-foo"),
            Some(&["3".to_string()][..])
        );
        assert_eq!(first_lines(&headers, 0), Headers::new());
    }
}
