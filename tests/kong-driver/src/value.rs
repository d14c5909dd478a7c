//! Lua values and their MessagePack encoding exactly as Kong produces it.
//!
//! Kong packs everything it sends with lua-MessagePack 0.5.x (protocol.md §6.2). The
//! encoding is not "canonical msgpack": numbers are Lua doubles that become the
//! smallest integer form when integral, strings always use the `str` family in
//! "compat" mode (never `str8`), and an empty Lua table is an empty *array*.
//! Tests compare bytes, so this module reproduces those rules bit for bit.

use rmpv::Value;

/// Largest magnitude (exclusive) that lua-MessagePack still packs as an integer.
const MAX_INTEGER: f64 = 9_007_199_254_740_991.0; // 2^53 - 1

/// A value as it exists on Kong's (Lua) side before packing.
///
/// `Map` keeps its entries in the given order so tests are deterministic (Kong's
/// real order is Lua hash order and unspecified).
#[derive(Debug, Clone, PartialEq)]
pub enum LuaValue {
    /// Lua `nil` (also what Kong's packer emits for `cjson.null`).
    Nil,
    /// A Lua boolean.
    Bool(bool),
    /// A Lua number: always a double, packed as the smallest integer when integral.
    Num(f64),
    /// A Lua string: arbitrary bytes, packed with the `str` family.
    Str(Vec<u8>),
    /// Only for the raw-body fix-up of protocol.md §11.1, where Kong deliberately packs `bin`.
    Bin(Vec<u8>),
    /// A Lua sequence (keys exactly 1..n). An empty table is also packed as `[]`.
    Array(Vec<LuaValue>),
    /// Any other table. With zero entries it still packs as `[]` (0x90), because an
    /// empty Lua table is a sequence; use [`LuaValue::EmptyMap`] for Kong's 0x80.
    Map(Vec<(LuaValue, LuaValue)>),
    /// Kong's explicit empty map (0x80), sent only by the multi-map fix-up (protocol.md §11.1).
    EmptyMap,
}

impl LuaValue {
    /// A Lua string from text or raw bytes.
    pub fn str(s: impl AsRef<[u8]>) -> Self {
        LuaValue::Str(s.as_ref().to_vec())
    }

    /// A raw body as Kong's raw-body fix-up sends it (`bin`).
    pub fn bin(b: impl AsRef<[u8]>) -> Self {
        LuaValue::Bin(b.as_ref().to_vec())
    }

    /// An integral Lua number. Like Lua, values beyond ±2^53 lose precision.
    pub fn int(n: i64) -> Self {
        LuaValue::Num(n as f64)
    }

    /// Any Lua number.
    pub fn num(n: f64) -> Self {
        LuaValue::Num(n)
    }

    /// A Lua boolean.
    pub fn bool(b: bool) -> Self {
        LuaValue::Bool(b)
    }

    /// A Lua sequence.
    pub fn array<V: Into<LuaValue>>(items: impl IntoIterator<Item = V>) -> Self {
        LuaValue::Array(items.into_iter().map(Into::into).collect())
    }

    /// A non-sequence table with entries in the given order (packed as-is; see
    /// [`LuaValue::table`] for Lua's sequence detection).
    pub fn map<K: Into<LuaValue>, V: Into<LuaValue>>(
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        LuaValue::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// A multi-map as produced by Kong's fix-up (protocol.md §11.1): every value an array of
    /// strings, and an empty result packed as an empty *map* (0x80).
    pub fn multimap<K, V>(entries: impl IntoIterator<Item = (K, Vec<V>)>) -> Self
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let entries: Vec<(LuaValue, LuaValue)> = entries
            .into_iter()
            .map(|(k, vs)| {
                let values = vs.iter().map(LuaValue::str).collect();
                (LuaValue::str(k), LuaValue::Array(values))
            })
            .collect();
        if entries.is_empty() {
            LuaValue::EmptyMap
        } else {
            LuaValue::Map(entries)
        }
    }

    /// Builds what a Lua table with these entries packs as, following
    /// lua-MessagePack's rule: nil keys/values do not exist in Lua, a later key
    /// replaces an earlier one, and the table is an array iff all keys are positive
    /// numbers and the largest equals the key count (elements `t[1]..t[max]`).
    pub fn table(entries: impl IntoIterator<Item = (LuaValue, LuaValue)>) -> Self {
        let mut kept: Vec<(LuaValue, LuaValue)> = Vec::new();
        for (k, v) in entries {
            let k = match k {
                LuaValue::Nil => continue,
                LuaValue::Num(n) if n.is_nan() => continue,
                // Lua normalises 1.0 and 1 to the same key; -0.0 to 0.
                LuaValue::Num(0.0) => LuaValue::Num(0.0),
                other => other,
            };
            kept.retain(|(old, _)| *old != k);
            if v != LuaValue::Nil {
                kept.push((k, v));
            }
        }
        let mut max = 0.0_f64;
        let mut is_map = false;
        for (k, _) in &kept {
            match k {
                LuaValue::Num(n) if *n > 0.0 => max = max.max(*n),
                _ => is_map = true,
            }
        }
        if kept.is_empty() {
            return LuaValue::Array(Vec::new());
        }
        if is_map || max != kept.len() as f64 {
            return LuaValue::Map(kept);
        }
        let items = (1..=kept.len())
            .map(|i| {
                kept.iter()
                    .find(|(k, _)| *k == LuaValue::Num(i as f64))
                    .map_or(LuaValue::Nil, |(_, v)| v.clone())
            })
            .collect();
        LuaValue::Array(items)
    }

    /// What a value sent by the server becomes once Kong has decoded it into Lua
    /// and would pack it again (e.g. a `kong.ctx.shared` value read back later):
    /// integers become doubles, `bin` becomes a string, ext becomes nil, and maps
    /// and arrays become Lua tables (see [`LuaValue::table`]).
    pub fn from_msgpack(v: &Value) -> Self {
        match v {
            Value::Nil | Value::Ext(..) => LuaValue::Nil,
            Value::Boolean(b) => LuaValue::Bool(*b),
            Value::Integer(i) => LuaValue::Num(i.as_f64().unwrap_or(f64::NAN)),
            Value::F32(f) => LuaValue::Num(f64::from(*f)),
            Value::F64(f) => LuaValue::Num(*f),
            Value::String(s) => LuaValue::Str(s.as_bytes().to_vec()),
            Value::Binary(b) => LuaValue::Str(b.clone()),
            Value::Array(items) => LuaValue::table(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (LuaValue::int(i as i64 + 1), LuaValue::from_msgpack(v))),
            ),
            Value::Map(entries) => LuaValue::table(
                entries
                    .iter()
                    .map(|(k, v)| (LuaValue::from_msgpack(k), LuaValue::from_msgpack(v))),
            ),
        }
    }

    /// Appends the lua-MessagePack encoding of this value to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            LuaValue::Nil => out.push(0xc0),
            LuaValue::Bool(false) => out.push(0xc2),
            LuaValue::Bool(true) => out.push(0xc3),
            LuaValue::Num(n) => encode_number(*n, out),
            LuaValue::Str(s) => {
                encode_len(s.len(), 0xa0, 31, None, 0xda, 0xdb, out);
                out.extend_from_slice(s);
            }
            LuaValue::Bin(b) => {
                encode_len(b.len(), 0, 0, Some(0xc4), 0xc5, 0xc6, out);
                out.extend_from_slice(b);
            }
            LuaValue::Array(items) => {
                encode_len(items.len(), 0x90, 15, None, 0xdc, 0xdd, out);
                items.iter().for_each(|v| v.encode(out));
            }
            LuaValue::Map(entries) if entries.is_empty() => out.push(0x90),
            LuaValue::Map(entries) => {
                encode_len(entries.len(), 0x80, 15, None, 0xde, 0xdf, out);
                for (k, v) in entries {
                    k.encode(out);
                    v.encode(out);
                }
            }
            LuaValue::EmptyMap => out.push(0x80),
        }
    }

    /// The encoding as a fresh buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

impl From<&str> for LuaValue {
    fn from(s: &str) -> Self {
        LuaValue::str(s)
    }
}

impl From<String> for LuaValue {
    fn from(s: String) -> Self {
        LuaValue::Str(s.into_bytes())
    }
}

impl From<bool> for LuaValue {
    fn from(b: bool) -> Self {
        LuaValue::Bool(b)
    }
}

impl From<i64> for LuaValue {
    fn from(n: i64) -> Self {
        LuaValue::int(n)
    }
}

impl From<f64> for LuaValue {
    fn from(n: f64) -> Self {
        LuaValue::Num(n)
    }
}

/// Writes a length header: the fix form when `len <= fix_max` (if `fix_base` is
/// non-zero), else the 8-bit form if the family has one, else 16- or 32-bit.
fn encode_len(
    len: usize,
    fix_base: u8,
    fix_max: usize,
    marker8: Option<u8>,
    marker16: u8,
    marker32: u8,
    out: &mut Vec<u8>,
) {
    if fix_base != 0 && len <= fix_max {
        out.push(fix_base | len as u8);
    } else if let (Some(m), Ok(l)) = (marker8, u8::try_from(len)) {
        out.push(m);
        out.push(l);
    } else if let Ok(l) = u16::try_from(len) {
        out.push(marker16);
        out.extend_from_slice(&l.to_be_bytes());
    } else {
        out.push(marker32);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// lua-MessagePack's `number` packer with its default `unsigned` integer and
/// `double` float settings.
fn encode_number(n: f64, out: &mut Vec<u8>) {
    if n.floor() != n || n >= MAX_INTEGER || n <= -MAX_INTEGER {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
        return;
    }
    let i = n as i64;
    if i >= 0 {
        if i <= 0x7f {
            out.push(i as u8);
        } else if i <= 0xff {
            out.extend_from_slice(&[0xcc, i as u8]);
        } else if i <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(i as u16).to_be_bytes());
        } else if i <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(i as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(i as u64).to_be_bytes());
        }
    } else if i >= -0x20 {
        out.push(i as i8 as u8);
    } else if i >= -0x80 {
        out.extend_from_slice(&[0xd0, i as i8 as u8]);
    } else if i >= -0x8000 {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= -0x8000_0000 {
        out.push(0xd2);
        out.extend_from_slice(&(i as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::hex;

    fn enc(v: LuaValue) -> Vec<u8> {
        v.to_bytes()
    }

    #[test]
    fn integers_use_smallest_form() {
        let cases: &[(f64, &str)] = &[
            (0.0, "00"),
            (-0.0, "00"),
            (127.0, "7f"),
            (128.0, "cc 80"),
            (255.0, "cc ff"),
            (256.0, "cd 01 00"),
            (65535.0, "cd ff ff"),
            (65536.0, "ce 00 01 00 00"),
            (4294967295.0, "ce ff ff ff ff"),
            (4294967296.0, "cf 00 00 00 01 00 00 00 00"),
            (9007199254740990.0, "cf 00 1f ff ff ff ff ff fe"),
            (-1.0, "ff"),
            (-32.0, "e0"),
            (-33.0, "d0 df"),
            (-128.0, "d0 80"),
            (-129.0, "d1 ff 7f"),
            (-32768.0, "d1 80 00"),
            (-32769.0, "d2 ff ff 7f ff"),
            (-2147483648.0, "d2 80 00 00 00"),
            (-2147483649.0, "d3 ff ff ff ff 7f ff ff ff"),
            (2.0, "02"),
        ];
        for (n, want) in cases {
            assert_eq!(enc(LuaValue::num(*n)), hex(want), "number {n}");
        }
    }

    #[test]
    fn non_integers_and_huge_numbers_are_float64() {
        assert_eq!(enc(LuaValue::num(1.5)), hex("cb 3f f8 00 00 00 00 00 00"));
        assert_eq!(
            enc(LuaValue::num(9007199254740991.0)),
            hex("cb 43 3f ff ff ff ff ff ff")
        );
        assert_eq!(
            enc(LuaValue::num(-9007199254740991.0)),
            hex("cb c3 3f ff ff ff ff ff ff")
        );
        assert_eq!(enc(LuaValue::num(f64::INFINITY))[0], 0xcb);
        assert_eq!(enc(LuaValue::num(f64::NAN))[0], 0xcb);
    }

    #[test]
    fn strings_use_compat_str_family_never_str8() {
        assert_eq!(enc(LuaValue::str("")), hex("a0"));
        assert_eq!(enc(LuaValue::str([b'x'; 31]))[0], 0xbf);
        assert_eq!(enc(LuaValue::str([b'x'; 32]))[..3], hex("da 00 20"));
        assert_eq!(enc(LuaValue::str(vec![b'x'; 255]))[..3], hex("da 00 ff"));
        assert_eq!(enc(LuaValue::str(vec![b'x'; 65535]))[..3], hex("da ff ff"));
        assert_eq!(
            enc(LuaValue::str(vec![b'x'; 65536]))[..5],
            hex("db 00 01 00 00")
        );
        assert_eq!(enc(LuaValue::str([0xff, 0xfe])), hex("a2 ff fe"));
    }

    #[test]
    fn bin_uses_bin8_16_32() {
        assert_eq!(enc(LuaValue::bin([])), hex("c4 00"));
        assert_eq!(enc(LuaValue::bin(vec![0; 255]))[..2], hex("c4 ff"));
        assert_eq!(enc(LuaValue::bin(vec![0; 256]))[..3], hex("c5 01 00"));
        assert_eq!(
            enc(LuaValue::bin(vec![0; 65536]))[..5],
            hex("c6 00 01 00 00")
        );
    }

    #[test]
    fn containers() {
        assert_eq!(enc(LuaValue::Array(vec![])), hex("90"));
        assert_eq!(enc(LuaValue::Map(vec![])), hex("90"));
        assert_eq!(enc(LuaValue::EmptyMap), hex("80"));
        assert_eq!(enc(LuaValue::array(vec![1i64; 15]))[0], 0x9f);
        assert_eq!(enc(LuaValue::array(vec![1i64; 16]))[..3], hex("dc 00 10"));
        assert_eq!(
            enc(LuaValue::array(vec![1i64; 65536]))[..5],
            hex("dd 00 01 00 00")
        );
        let big: Vec<(i64, bool)> = (100..116).map(|i| (i, true)).collect();
        assert_eq!(enc(LuaValue::map(big))[..3], hex("de 00 10"));
        assert_eq!(
            enc(LuaValue::map([("a", LuaValue::Nil)])),
            hex("81 a1 61 c0")
        );
    }

    #[test]
    fn lua_tables_follow_sequence_detection() {
        let n = LuaValue::int;
        // {1=3, 3="x"} has a hole → map.
        assert_eq!(
            LuaValue::table([(n(1), n(3)), (n(3), "x".into())]),
            LuaValue::map([(n(1), n(3)), (n(3), "x".into())])
        );
        // keys 2,1 → sequence.
        assert_eq!(
            LuaValue::table([(n(2), "b".into()), (n(1), "a".into())]),
            LuaValue::array(["a", "b"])
        );
        // nil values vanish, empty table → [].
        assert_eq!(
            LuaValue::table([("k".into(), LuaValue::Nil)]).to_bytes(),
            hex("90")
        );
        // mixed table → map.
        assert!(matches!(
            LuaValue::table([(n(1), n(1)), ("a".into(), n(3))]),
            LuaValue::Map(_)
        ));
    }

    #[test]
    fn from_msgpack_is_what_kong_would_repack() {
        let v = Value::Map(vec![
            (Value::from(2), Value::from("b")),
            (Value::from(1), Value::Binary(b"a".to_vec())),
        ]);
        assert_eq!(LuaValue::from_msgpack(&v), LuaValue::array(["a", "b"]));
        let holes = Value::Array(vec![Value::from(403), Value::Nil, Value::from(1)]);
        assert_eq!(
            LuaValue::from_msgpack(&holes),
            LuaValue::map([(LuaValue::int(1), 403i64), (LuaValue::int(3), 1i64)])
        );
        assert_eq!(LuaValue::from_msgpack(&Value::from(2.0)), LuaValue::int(2));
    }
}
