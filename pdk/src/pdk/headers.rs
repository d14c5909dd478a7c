//! [`Headers`]: HTTP headers with case-insensitive names.

use std::collections::BTreeMap;

/// HTTP headers as Kong's PDK returns and takes them: every name maps to all its values, in
/// order. Names are case-insensitive, as in HTTP: `get("Content-Type")` and
/// `get("content-type")` are the same header. A name keeps the case it was given (Kong sends
/// `X-Reason` to the client as `X-Reason`); what Kong returns (`get_headers`) is lower-case.
/// Iteration is by name, case-insensitively ordered; two `Headers` are equal when they hold the
/// same values under the same names, whatever their case.
///
/// ```
/// use kong_rust_pdk::prelude::*;
///
/// let mut headers = Headers::new();
/// headers.append("Accept", "text/html");
/// headers.append("accept", "application/json");
/// headers.insert("X-Id", "7");
/// assert_eq!(headers.get("ACCEPT"), Some("text/html"));
/// assert_eq!(headers.get_all("accept"), ["text/html", "application/json"]);
/// assert_eq!(headers.get_all("x-missing"), [] as [String; 0]);
/// let names: Vec<&str> = headers.iter().map(|(name, _)| name).collect();
/// assert_eq!(names, ["Accept", "X-Id"]);
/// assert_eq!(headers, Headers::from([("accept", "text/html"), ("ACCEPT", "application/json"), ("x-id", "7")]));
/// ```
#[derive(Debug, Clone, Default, Eq)]
pub struct Headers {
    /// Lower-case name to the name as given and the values.
    map: BTreeMap<String, (String, Vec<String>)>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers::default()
    }

    /// The first value of header `name`, `None` when it is absent (or has no value).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).first().map(String::as_str)
    }

    /// Every value of header `name`, in order; empty when it is absent.
    pub fn get_all(&self, name: &str) -> &[String] {
        self.map
            .get(&name.to_ascii_lowercase())
            .map_or(&[], |(_, values)| values.as_slice())
    }

    /// Whether header `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(&name.to_ascii_lowercase())
    }

    /// Sets header `name` to `value` alone, replacing any values it had; the header takes the
    /// case of `name`.
    pub fn insert(&mut self, name: &str, value: impl Into<String>) {
        self.map.insert(
            name.to_ascii_lowercase(),
            (name.to_string(), vec![value.into()]),
        );
    }

    /// Adds `value` to header `name`, after any values it has; a header already present keeps
    /// the case it had.
    pub fn append(&mut self, name: &str, value: impl Into<String>) {
        self.map
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| (name.to_string(), Vec::new()))
            .1
            .push(value.into());
    }

    /// Removes header `name`, returning its values.
    pub fn remove(&mut self, name: &str) -> Option<Vec<String>> {
        self.map
            .remove(&name.to_ascii_lowercase())
            .map(|(_, values)| values)
    }

    /// Each header: its name, in the case it was given, and its values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.map
            .values()
            .map(|(name, values)| (name.as_str(), values.as_slice()))
    }

    /// How many distinct header names there are.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The same headers with the same values, names compared case-insensitively.
impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.map.len() == other.map.len()
            && self
                .map
                .iter()
                .zip(&other.map)
                .all(|((a, (_, a_values)), (b, (_, b_values)))| a == b && a_values == b_values)
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a [String]);
    type IntoIter = Box<dyn Iterator<Item = (&'a str, &'a [String])> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Header lines, one `(name, value)` each: a repeated name gets every value, in order.
impl<N: AsRef<str>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(lines: I) -> Self {
        let mut headers = Headers::new();
        for (name, value) in lines {
            headers.append(name.as_ref(), value);
        }
        headers
    }
}

/// Header lines, one `(name, value)` each, as for `FromIterator`.
impl<N: AsRef<str>, V: Into<String>, const LINES: usize> From<[(N, V); LINES]> for Headers {
    fn from(lines: [(N, V); LINES]) -> Self {
        lines.into_iter().collect()
    }
}
