//! Lua 5.1 patterns as LuaJIT (Kong's Lua) implements `string.match`: a port of `lstrlib.c`,
//! byte-oriented, C locale. Supports everything: `.`, `%a %c %d %l %p %s %u %w %x %z` and
//! their upper-case complements, `%` escapes, sets `[...]` with ranges, classes and `^`,
//! quantifiers `* + - ?`, anchors `^` and `$`, captures `(...)` and `()`, back-references
//! `%1`–`%9`, `%bxy` and the frontier `%f[set]`.

/// Lua's `LUA_MAXCAPTURES`.
const MAX_CAPTURES: usize = 32;

/// A pattern byte, with Lua's C-string view: past the end reads as NUL.
fn at(pattern: &[u8], i: usize) -> u8 {
    pattern.get(i).copied().unwrap_or(0)
}

/// The index just past the single-character class starting at `p`.
fn class_end(pattern: &[u8], p: usize) -> Result<usize, &'static str> {
    match at(pattern, p) {
        b'%' if at(pattern, p + 1) == 0 => Err("malformed pattern (ends with '%')"),
        b'%' => Ok(p + 2),
        b'[' => {
            let mut q = p + 1;
            if at(pattern, q) == b'^' {
                q += 1;
            }
            // The first byte is always part of the set: `[]]` is the set of `]`.
            loop {
                if at(pattern, q) == 0 {
                    return Err("malformed pattern (missing ']')");
                }
                let c = at(pattern, q);
                q += 1;
                if c == b'%' && at(pattern, q) != 0 {
                    q += 1;
                }
                if at(pattern, q) == b']' {
                    return Ok(q + 1);
                }
            }
        }
        _ => Ok(p + 1),
    }
}

/// Whether `pattern` is well-formed; Lua's error message if not. (Lua only reports a
/// malformed part when matching reaches it; this looks at the whole pattern.)
pub fn check(pattern: &[u8]) -> Result<(), &'static str> {
    let mut p = usize::from(at(pattern, 0) == b'^');
    // One entry per capture, in order: closed yet?
    let mut closed: Vec<bool> = Vec::new();
    while at(pattern, p) != 0 {
        match (at(pattern, p), at(pattern, p + 1)) {
            (b'(', next) => {
                if closed.len() == MAX_CAPTURES {
                    return Err("too many captures");
                }
                closed.push(next == b')');
                p += if next == b')' { 2 } else { 1 };
                continue;
            }
            (b')', _) => {
                let open = closed
                    .iter()
                    .rposition(|closed| !closed)
                    .ok_or("invalid pattern capture")?;
                closed[open] = true;
                p += 1;
                continue;
            }
            (b'%', b'b') => {
                if at(pattern, p + 2) == 0 || at(pattern, p + 3) == 0 {
                    return Err("unbalanced pattern");
                }
                p += 4;
                continue;
            }
            (b'%', b'f') => {
                if at(pattern, p + 2) != b'[' {
                    return Err("missing '[' after '%f' in pattern");
                }
                p = class_end(pattern, p + 2)?;
                continue;
            }
            (b'%', digit) if digit.is_ascii_digit() => {
                let index = usize::from(digit - b'0');
                if index == 0 || !closed.get(index - 1).copied().unwrap_or(false) {
                    return Err("invalid capture index");
                }
                p += 2;
                continue;
            }
            (b'$', 0) => break,
            _ => {}
        }
        p = class_end(pattern, p)?;
        if matches!(at(pattern, p), b'?' | b'*' | b'+' | b'-') {
            p += 1;
        }
    }
    if closed.contains(&false) {
        return Err("unfinished capture");
    }
    Ok(())
}

/// `subject:match(pattern) ~= nil`.
pub fn matches(subject: &[u8], pattern: &[u8]) -> Result<bool, &'static str> {
    check(pattern)?;
    let (anchored, pattern) = match pattern.split_first() {
        Some((b'^', rest)) => (true, rest),
        _ => (false, pattern),
    };
    let mut matcher = Matcher {
        subject,
        pattern,
        captures: Vec::new(),
    };
    for start in 0..=subject.len() {
        matcher.captures.clear();
        if matcher.run(start, 0).is_some() {
            return Ok(true);
        }
        if anchored {
            break;
        }
    }
    Ok(false)
}

#[derive(Clone, Copy)]
enum Capture {
    Open,
    Position,
    Closed(usize),
}

/// `MatchState`, for a pattern `check` accepted (so malformed cases just fail to match).
struct Matcher<'a> {
    subject: &'a [u8],
    pattern: &'a [u8],
    /// (start in subject, state)
    captures: Vec<(usize, Capture)>,
}

fn match_class(c: u8, class: u8) -> bool {
    let matched = match class.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        // C's isspace also takes the vertical tab.
        b's' => c.is_ascii_whitespace() || c == 0x0b,
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        b'z' => c == 0,
        _ => return class == c,
    };
    matched != class.is_ascii_uppercase()
}

impl Matcher<'_> {
    fn at(&self, p: usize) -> u8 {
        at(self.pattern, p)
    }

    fn byte(&self, s: usize) -> u8 {
        self.subject.get(s).copied().unwrap_or(0)
    }

    /// `c` against the set `[...]` spanning `p` (the `[`) to `end` (the `]`).
    fn bracket_class(&self, c: u8, mut p: usize, end: usize) -> bool {
        let mut found = true;
        if self.at(p + 1) == b'^' {
            found = false;
            p += 1;
        }
        loop {
            p += 1;
            if p >= end {
                return !found;
            }
            if self.at(p) == b'%' {
                p += 1;
                if match_class(c, self.at(p)) {
                    return found;
                }
            } else if self.at(p + 1) == b'-' && p + 2 < end {
                p += 2;
                if self.at(p - 2) <= c && c <= self.at(p) {
                    return found;
                }
            } else if self.at(p) == c {
                return found;
            }
        }
    }

    fn single(&self, s: usize, p: usize, class_end: usize) -> bool {
        if s >= self.subject.len() {
            return false;
        }
        let c = self.subject[s];
        match self.at(p) {
            b'.' => true,
            b'%' => match_class(c, self.at(p + 1)),
            b'[' => self.bracket_class(c, p, class_end - 1),
            literal => literal == c,
        }
    }

    /// Matches the pattern from `p` against the subject from `s`: the end of the match.
    fn run(&mut self, mut s: usize, mut p: usize) -> Option<usize> {
        loop {
            match (self.at(p), self.at(p + 1)) {
                (0, _) => return Some(s),
                (b'(', b')') => return self.start_capture(s, p + 2, Capture::Position),
                (b'(', _) => return self.start_capture(s, p + 1, Capture::Open),
                (b')', _) => return self.end_capture(s, p + 1),
                (b'$', 0) => return (s == self.subject.len()).then_some(s),
                (b'%', b'b') => {
                    s = self.balance(s, p + 2)?;
                    p += 4;
                }
                (b'%', b'f') => {
                    p += 2;
                    let end = class_end(self.pattern, p).ok()?;
                    let previous = if s == 0 { 0 } else { self.subject[s - 1] };
                    if self.bracket_class(previous, p, end - 1)
                        || !self.bracket_class(self.byte(s), p, end - 1)
                    {
                        return None;
                    }
                    p = end;
                }
                (b'%', digit) if digit.is_ascii_digit() => {
                    s = self.back_reference(s, usize::from(digit - b'1'))?;
                    p += 2;
                }
                _ => {
                    let end = class_end(self.pattern, p).ok()?;
                    let one = self.single(s, p, end);
                    match self.at(end) {
                        b'?' => {
                            if one {
                                if let Some(found) = self.run(s + 1, end + 1) {
                                    return Some(found);
                                }
                            }
                            p = end + 1;
                        }
                        b'*' => return self.max_expand(s, p, end),
                        b'+' => {
                            return if one {
                                self.max_expand(s + 1, p, end)
                            } else {
                                None
                            }
                        }
                        b'-' => return self.min_expand(s, p, end),
                        _ if one => {
                            s += 1;
                            p = end;
                        }
                        _ => return None,
                    }
                }
            }
        }
    }

    fn max_expand(&mut self, s: usize, p: usize, end: usize) -> Option<usize> {
        let mut count = 0;
        while self.single(s + count, p, end) {
            count += 1;
        }
        loop {
            if let Some(found) = self.run(s + count, end + 1) {
                return Some(found);
            }
            count = count.checked_sub(1)?;
        }
    }

    fn min_expand(&mut self, mut s: usize, p: usize, end: usize) -> Option<usize> {
        loop {
            if let Some(found) = self.run(s, end + 1) {
                return Some(found);
            }
            if !self.single(s, p, end) {
                return None;
            }
            s += 1;
        }
    }

    fn start_capture(&mut self, s: usize, p: usize, capture: Capture) -> Option<usize> {
        self.captures.push((s, capture));
        let found = self.run(s, p);
        if found.is_none() {
            self.captures.pop();
        }
        found
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Option<usize> {
        let open = self
            .captures
            .iter()
            .rposition(|(_, capture)| matches!(capture, Capture::Open))?;
        let start = self.captures[open].0;
        self.captures[open].1 = Capture::Closed(s - start);
        let found = self.run(s, p);
        if found.is_none() {
            self.captures[open].1 = Capture::Open;
        }
        found
    }

    fn back_reference(&self, s: usize, index: usize) -> Option<usize> {
        let (start, Capture::Closed(len)) = *self.captures.get(index)? else {
            return None;
        };
        let wanted = &self.subject[start..start + len];
        self.subject[s..].starts_with(wanted).then_some(s + len)
    }

    fn balance(&self, s: usize, p: usize) -> Option<usize> {
        let (open, close) = (self.at(p), self.at(p + 1));
        if self.subject.get(s) != Some(&open) {
            return None;
        }
        let mut depth = 1;
        for (i, &c) in self.subject.iter().enumerate().skip(s + 1) {
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            } else if c == open {
                depth += 1;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::{check, matches};

    fn m(subject: &str, pattern: &str) -> bool {
        matches(subject.as_bytes(), pattern.as_bytes()).unwrap()
    }

    #[test]
    fn matches_like_lua() {
        let cases = [
            ("hello", "^h.-o$", true),
            ("abc", "^%a+$", true),
            ("ab1", "^%a+$", false),
            ("ab1", "%d", true),
            ("ba", "^a", false),
            ("ba", "a", true),
            ("", "^$", true),
            ("a", "^$", false),
            ("a$b", "a$b", true),
            ("[x]", "^%[x%]$", true),
            ("foo.bar", "^[%w.]+$", true),
            ("foo bar", "^[%w.]+$", false),
            ("]", "^[]]$", true),
            ("a", "^[]]$", false),
            ("x-y", "^[a-z]%-[a-z]$", true),
            ("m", "^[^a-f]$", true),
            ("c", "^[^a-f]$", false),
            ("(a(b)c)", "^%b()$", true),
            ("(a(b)c", "^%b()$", false),
            ("THE (quick) fox", "%f[%a]%a+%f[%A]", true),
            ("abab", "^(ab)%1$", true),
            ("abac", "^(ab)%1$", false),
            ("key: value", "^(%w+):%s*(.-)$", true),
            ("aaa", "^a-$", true),
            ("ab", "^ab?$", true),
            ("a", "^ab?$", true),
            ("abb", "^ab?$", false),
            ("https://x", "^https?://", true),
            ("ftp://x", "^https?://", false),
            ("a\x0bb", "^a%sb$", true),
            ("A1", "^%u%d$", true),
            ("a1", "^%U%D$", false),
            ("abc", "()b()", true),
            ("/path", "^/", true),
        ];
        for (subject, pattern, expected) in cases {
            assert_eq!(m(subject, pattern), expected, "{subject:?} ~ {pattern:?}");
        }
    }

    #[test]
    fn malformed_patterns_are_refused_with_lua_messages() {
        let cases = [
            ("abc%", "malformed pattern (ends with '%')"),
            ("[a", "malformed pattern (missing ']')"),
            ("[]", "malformed pattern (missing ']')"),
            ("(a", "unfinished capture"),
            ("a)", "invalid pattern capture"),
            ("%1", "invalid capture index"),
            ("(a%1)", "invalid capture index"),
            ("%0", "invalid capture index"),
            ("%fx", "missing '[' after '%f' in pattern"),
            ("%bx", "unbalanced pattern"),
        ];
        for (pattern, message) in cases {
            assert_eq!(check(pattern.as_bytes()), Err(message), "{pattern:?}");
        }
        assert_eq!(check(&[b'('; 33]), Err("too many captures"));
        assert_eq!(check(b"^(%w+)=(%d*)$"), Ok(()));
    }
}
