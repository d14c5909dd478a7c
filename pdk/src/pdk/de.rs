//! A serde `Deserializer` over the values Kong sends, absorbing lua-MessagePack's encoding
//! (protocol.md §6.2): an empty map arrives as an empty array, an integral float as an integer
//! (and the other way round), a string may not be UTF-8, an `ext` value is Lua's `nil`.

use rmpv::Value;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess,
    Visitor,
};
use std::fmt;

/// Decodes a value Kong sent into `T`; the error says what did not fit, and where.
pub fn decode<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    T::deserialize(Lua(value))
        .map_err(|Failure(message)| format!("a value that does not fit: {message}"))
}

/// What went wrong while decoding.
#[derive(Debug)]
struct Failure(String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

impl de::Error for Failure {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Failure(message.to_string())
    }
}

/// One value as Kong sent it.
struct Lua(Value);

/// Text from a msgpack `str`, invalid UTF-8 replaced.
fn lossy(s: rmpv::Utf8String) -> String {
    match s.as_str() {
        Some(text) => text.to_string(),
        None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
    }
}

impl Lua {
    /// An integral float as the integer it stands for, anything else unchanged.
    fn integral(self) -> Value {
        match self.0 {
            Value::F64(f) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => {
                Value::from(f as i64)
            }
            other => other,
        }
    }
}

macro_rules! integers {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
            Lua(self.integral()).deserialize_any(visitor)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Lua {
    type Error = Failure;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        match self.0 {
            Value::Nil | Value::Ext(..) => visitor.visit_unit(),
            Value::Boolean(b) => visitor.visit_bool(b),
            Value::Integer(i) => match i.as_u64() {
                Some(u) => visitor.visit_u64(u),
                None => visitor.visit_i64(i.as_i64().unwrap_or_default()),
            },
            Value::F32(f) => visitor.visit_f32(f),
            Value::F64(f) => visitor.visit_f64(f),
            Value::String(s) => visitor.visit_string(lossy(s)),
            Value::Binary(b) => visitor.visit_byte_buf(b),
            Value::Array(items) => visitor.visit_seq(Seq(items.into_iter())),
            Value::Map(entries) => visitor.visit_map(Map {
                entries: entries.into_iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        match self.0 {
            Value::Nil | Value::Ext(..) => visitor.visit_none(),
            other => visitor.visit_some(Lua(other)),
        }
    }

    /// Lua has one kind of table: an empty one arrives as an empty array.
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        match self.0 {
            Value::Array(items) if items.is_empty() => visitor.visit_map(Map {
                entries: Vec::new().into_iter(),
                value: None,
            }),
            other => Lua(other).deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Failure> {
        self.deserialize_map(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        match self.0 {
            Value::String(s) => visitor.visit_byte_buf(s.into_bytes()),
            other => Lua(other).deserialize_any(visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Failure> {
        visitor.visit_newtype_struct(self)
    }

    /// A unit variant is its name; a variant with data is a one-entry map.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Failure> {
        match self.0 {
            Value::Map(entries) if entries.len() == 1 => {
                let (variant, value) = entries.into_iter().next().expect("one entry");
                visitor.visit_enum(Variant {
                    variant,
                    value: Some(value),
                })
            }
            variant => visitor.visit_enum(Variant {
                variant,
                value: None,
            }),
        }
    }

    integers!(
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
    );

    serde::forward_to_deserialize_any! {
        bool f32 f64 char str string unit unit_struct seq tuple tuple_struct identifier
        ignored_any
    }
}

struct Seq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Seq {
    type Error = Failure;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Failure> {
        self.0
            .next()
            .map(|item| seed.deserialize(Lua(item)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Map {
    entries: std::vec::IntoIter<(Value, Value)>,
    value: Option<Value>,
}

impl<'de> MapAccess<'de> for Map {
    type Error = Failure;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Failure> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(Lua(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Failure> {
        seed.deserialize(Lua(self.value.take().unwrap_or(Value::Nil)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct Variant {
    variant: Value,
    value: Option<Value>,
}

impl<'de> EnumAccess<'de> for Variant {
    type Error = Failure;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Failure> {
        let name = seed.deserialize(Lua(self.variant.clone()))?;
        Ok((name, self))
    }
}

impl<'de> VariantAccess<'de> for Variant {
    type Error = Failure;

    fn unit_variant(self) -> Result<(), Failure> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Failure> {
        seed.deserialize(Lua(self.value.unwrap_or(Value::Nil)))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Failure> {
        de::Deserializer::deserialize_any(Lua(self.value.unwrap_or(Value::Nil)), visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Failure> {
        de::Deserializer::deserialize_map(Lua(self.value.unwrap_or(Value::Nil)), visitor)
    }
}
