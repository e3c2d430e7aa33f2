//! One decoded protocol message, whatever its encoding: bunqueue's TCP frames carry
//! MessagePack and its WebSocket carries JSON, and both feed the same command table. The
//! distinctions MessagePack makes that JSON does not (an explicit `undefined`, binary,
//! timestamps, integer vs float) are kept, so replies can be written the way the
//! reference writes them.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// Map keys: replies use static names, decoded requests own theirs.
pub type Key = Cow<'static, str>;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Nil,
    /// JavaScript's `undefined` (MessagePack fixext 1 of type 0): "absent" on input.
    Undefined,
    Bool(bool),
    Int(i64),
    /// A MessagePack 64-bit integer form (`int 64`/`uint 64`): JavaScript decodes these
    /// to a BigInt, which is not a number (the reference refuses it for numeric options
    /// and in job data).
    BigInt(i128),
    Float(f64),
    Str(String),
    Bin(Vec<u8>),
    /// A timestamp extension (type -1): seconds and nanoseconds.
    Timestamp(i64, u32),
    /// Any other extension type, kept as is.
    Ext(i8, Vec<u8>),
    Array(Vec<Value>),
    Map(Vec<(Key, Value)>),
}

impl Value {
    pub fn map(entries: Vec<(&'static str, Value)>) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Cow::Borrowed(k), v))
                .collect(),
        )
    }

    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// A field of a map (`None` for other values and for absent keys).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A field that is present: neither missing, `undefined` nor `null`.
    pub fn field(&self, key: &str) -> Option<&Value> {
        self.get(key)
            .filter(|v| !matches!(v, Value::Nil | Value::Undefined))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A JavaScript number: ints and floats alike (64-bit integer encodings are BigInts
    /// in JavaScript, and the reference refuses them where it wants a number).
    pub fn as_number(&self) -> Option<f64> {
        match *self {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// JSON text of this value, as `JSON.stringify` would write it.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    /// Writes JSON as `JSON.stringify` does: `undefined` map entries are left out (and
    /// are `null` in arrays), non-finite numbers are `null`, integral floats print as
    /// integers, binary is Node's `{"type":"Buffer","data":[...]}` and a timestamp is an
    /// ISO-8601 string.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Value::Nil | Value::Undefined => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::BigInt(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => write_float(*f, out),
            Value::Str(s) => crate::json_render::push_str(out, s),
            Value::Bin(bytes) => {
                out.push_str("{\"type\":\"Buffer\",\"data\":[");
                for (i, b) in bytes.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{b}");
                }
                out.push_str("]}");
            }
            Value::Timestamp(secs, nanos) => {
                out.push('"');
                write_iso8601(*secs, *nanos, out);
                out.push('"');
            }
            Value::Ext(..) => out.push_str("null"),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Value::Map(entries) => {
                out.push('{');
                let mut first = true;
                for (k, v) in entries {
                    if matches!(v, Value::Undefined) {
                        continue;
                    }
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    crate::json_render::push_str(out, k);
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }

    /// Parses JSON text (`None` if it is not valid JSON). Nesting is bounded by
    /// serde_json's recursion limit (128), so a hostile document cannot exhaust the stack.
    pub fn from_json(text: &[u8]) -> Option<Value> {
        let mut de = serde_json::Deserializer::from_slice(text);
        let v = de.deserialize_any(JsonVisitor).ok()?;
        de.end().ok()?;
        Some(v)
    }
}

fn write_float(f: f64, out: &mut String) {
    if !f.is_finite() {
        out.push_str("null");
    } else if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
        let _ = write!(out, "{}", f as i64);
    } else {
        let _ = write!(out, "{f}");
    }
}

/// `Date.prototype.toISOString`: `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
fn write_iso8601(secs: i64, nanos: u32, out: &mut String) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for the whole i64 day range
    // a timestamp extension can hold in practice.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        nanos / 1_000_000
    );
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        // JSON has one number type: beyond i64 it is a (lossy) float, as in JavaScript.
        Ok(i64::try_from(u).map_or(Value::Float(u as f64), Value::Int))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element_seed(Seed)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(Key, Value)> = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(Seed)?;
            // A repeated key keeps its last value, as JSON.parse does.
            if let Some(slot) = entries.iter_mut().find(|(ek, _)| *ek == k) {
                slot.1 = v;
            } else {
                entries.push((Cow::Owned(k), v));
            }
        }
        Ok(Value::Map(entries))
    }
}

struct Seed;

impl<'de> de::DeserializeSeed<'de> for Seed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_structure() {
        let v = Value::from_json(br#"{"a":[1,-2,3.5,"x",null,true],"b":{"c":{}}}"#).unwrap();
        assert_eq!(
            v.to_json(),
            r#"{"a":[1,-2,3.5,"x",null,true],"b":{"c":{}}}"#
        );
        assert!(Value::from_json(b"{").is_none());
        assert!(Value::from_json(b"{} x").is_none());
    }

    #[test]
    fn json_writes_as_javascript_does() {
        let v = Value::map(vec![
            ("u", Value::Undefined),
            ("f", Value::Float(1_796_400_460_630.0)),
            ("n", Value::Float(f64::NAN)),
            ("b", Value::Bin(vec![1, 2])),
            ("t", Value::Timestamp(0, 5_000_000)),
            ("arr", Value::Array(vec![Value::Undefined])),
        ]);
        assert_eq!(
            v.to_json(),
            r#"{"f":1796400460630,"n":null,"b":{"type":"Buffer","data":[1,2]},"t":"1970-01-01T00:00:00.005Z","arr":[null]}"#
        );
        let mut out = String::new();
        write_iso8601(1_796_400_460, 630_000_000, &mut out);
        assert_eq!(out, "2026-12-04T16:07:40.630Z");
    }

    #[test]
    fn deep_json_is_refused_not_overflowed() {
        let deep = "[".repeat(100_000);
        assert!(Value::from_json(deep.as_bytes()).is_none());
    }
}
