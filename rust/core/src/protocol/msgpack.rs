//! MessagePack as msgpackr (bunqueue's codec, default options) writes and reads it.
//!
//! Decoding accepts every MessagePack form. Encoding follows the reference byte for
//! byte where a client can tell: maps are always `map16`, integers outside
//! [-2^31, 2^32-1] go out as float64 (a JavaScript client would otherwise get a BigInt),
//! `undefined` is fixext 1 of type 0.

use std::borrow::Cow;

use super::value::Value;

/// Deeper nesting is refused: decoding recurses, and a hostile frame must not exhaust
/// the stack.
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError;

/// Decodes exactly one value that spans all of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader { bytes, pos: 0 };
    let v = r.value(0)?;
    if r.pos != bytes.len() {
        return Err(DecodeError);
    }
    Ok(v)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError)?;
        let s = self.bytes.get(self.pos..end).ok_or(DecodeError)?;
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn len(&mut self, width: usize) -> Result<usize, DecodeError> {
        Ok(match width {
            1 => usize::from(self.byte()?),
            2 => usize::from(u16::from_be_bytes(self.be()?)),
            _ => u32::from_be_bytes(self.be()?) as usize,
        })
    }

    fn string(&mut self, n: usize) -> Result<String, DecodeError> {
        let raw = self.take(n)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError)
    }

    fn array(&mut self, n: usize, depth: usize) -> Result<Value, DecodeError> {
        // Each element takes at least one byte: a lying count cannot reserve memory
        // beyond the frame's own size.
        let mut items = Vec::with_capacity(n.min(self.bytes.len() - self.pos));
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Value, DecodeError> {
        let mut entries: Vec<(Cow<'static, str>, Value)> =
            Vec::with_capacity(n.min((self.bytes.len() - self.pos) / 2));
        for _ in 0..n {
            let key = match self.value(depth + 1)? {
                Value::Str(s) => s,
                // msgpackr turns other keys into strings of their JavaScript form.
                Value::Int(i) => i.to_string(),
                Value::Float(f) => Value::Float(f).to_json(),
                Value::Bool(b) => b.to_string(),
                Value::Nil => "null".into(),
                _ => return Err(DecodeError),
            };
            let value = self.value(depth + 1)?;
            if let Some(slot) = entries.iter_mut().find(|(k, _)| *k == key) {
                slot.1 = value;
            } else {
                entries.push((Cow::Owned(key), value));
            }
        }
        Ok(Value::Map(entries))
    }

    fn ext(&mut self, n: usize) -> Result<Value, DecodeError> {
        let kind = self.byte()? as i8;
        let data = self.take(n)?;
        Ok(match (kind, n) {
            (0, _) => Value::Undefined,
            (-1, 4) => Value::Timestamp(
                i64::from(u32::from_be_bytes(data.try_into().expect("4 bytes"))),
                0,
            ),
            (-1, 8) => {
                let v = u64::from_be_bytes(data.try_into().expect("8 bytes"));
                Value::Timestamp((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
            }
            (-1, 12) => Value::Timestamp(
                i64::from_be_bytes(data[4..].try_into().expect("8 bytes")),
                u32::from_be_bytes(data[..4].try_into().expect("4 bytes")),
            ),
            _ => Value::Ext(kind, data.to_vec()),
        })
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError);
        }
        let b = self.byte()?;
        Ok(match b {
            0x00..=0x7f => Value::Int(i64::from(b)),
            0x80..=0x8f => return self.map(usize::from(b & 0x0f), depth),
            0x90..=0x9f => return self.array(usize::from(b & 0x0f), depth),
            0xa0..=0xbf => Value::Str(self.string(usize::from(b & 0x1f))?),
            0xc0 => Value::Nil,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => {
                let n = self.len(1 << (b - 0xc4))?;
                Value::Bin(self.take(n)?.to_vec())
            }
            0xc7..=0xc9 => {
                let n = self.len(1 << (b - 0xc7))?;
                return self.ext(n);
            }
            0xca => Value::Float(f64::from(f32::from_be_bytes(self.be()?))),
            0xcb => Value::Float(f64::from_be_bytes(self.be()?)),
            0xcc => Value::Int(i64::from(self.byte()?)),
            0xcd => Value::Int(i64::from(u16::from_be_bytes(self.be()?))),
            0xce => Value::Int(i64::from(u32::from_be_bytes(self.be()?))),
            0xcf => Value::BigInt(i128::from(u64::from_be_bytes(self.be()?))),
            0xd0 => Value::Int(i64::from(self.byte()? as i8)),
            0xd1 => Value::Int(i64::from(i16::from_be_bytes(self.be()?))),
            0xd2 => Value::Int(i64::from(i32::from_be_bytes(self.be()?))),
            0xd3 => Value::BigInt(i128::from(i64::from_be_bytes(self.be()?))),
            0xd4..=0xd8 => return self.ext(1 << (b - 0xd4)),
            0xd9..=0xdb => {
                let n = self.len(1 << (b - 0xd9))?;
                Value::Str(self.string(n)?)
            }
            0xdc | 0xdd => {
                let n = self.len(if b == 0xdc { 2 } else { 4 })?;
                return self.array(n, depth);
            }
            0xde | 0xdf => {
                let n = self.len(if b == 0xde { 2 } else { 4 })?;
                return self.map(n, depth);
            }
            0xe0..=0xff => Value::Int(i64::from(b as i8)),
            0xc1 => return Err(DecodeError),
        })
    }
}

/// Appends the MessagePack encoding of `v`.
pub fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Nil => out.push(0xc0),
        Value::Undefined => out.extend_from_slice(&[0xd4, 0x00, 0x00]),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Int(i) => encode_int(*i, out),
        Value::BigInt(i) => match i64::try_from(*i) {
            Ok(i) => {
                out.push(0xd3);
                out.extend_from_slice(&i.to_be_bytes());
            }
            Err(_) => {
                out.push(0xcf);
                out.extend_from_slice(&(*i as u64).to_be_bytes());
            }
        },
        Value::Float(f) => encode_number(*f, out),
        Value::Str(s) => encode_str(s, out),
        Value::Bin(b) => {
            match b.len() {
                n if n < 0x100 => out.extend_from_slice(&[0xc4, n as u8]),
                n if n < 0x1_0000 => {
                    out.push(0xc5);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    out.push(0xc6);
                    out.extend_from_slice(&(n as u32).to_be_bytes());
                }
            }
            out.extend_from_slice(b);
        }
        Value::Timestamp(secs, nanos) => {
            if *nanos == 0 && (0..=i64::from(u32::MAX)).contains(secs) {
                out.extend_from_slice(&[0xd6, 0xff]);
                out.extend_from_slice(&(*secs as u32).to_be_bytes());
            } else if (0..1 << 34).contains(secs) {
                out.extend_from_slice(&[0xd7, 0xff]);
                let v = (u64::from(*nanos) << 34) | *secs as u64;
                out.extend_from_slice(&v.to_be_bytes());
            } else {
                out.extend_from_slice(&[0xc7, 12, 0xff]);
                out.extend_from_slice(&nanos.to_be_bytes());
                out.extend_from_slice(&secs.to_be_bytes());
            }
        }
        Value::Ext(kind, data) => {
            match data.len() {
                1 => out.push(0xd4),
                2 => out.push(0xd5),
                4 => out.push(0xd6),
                8 => out.push(0xd7),
                16 => out.push(0xd8),
                n if n < 0x100 => out.extend_from_slice(&[0xc7, n as u8]),
                n if n < 0x1_0000 => {
                    out.push(0xc8);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    out.push(0xc9);
                    out.extend_from_slice(&(n as u32).to_be_bytes());
                }
            }
            out.push(*kind as u8);
            out.extend_from_slice(data);
        }
        Value::Array(items) => {
            match items.len() {
                n if n < 16 => out.push(0x90 | n as u8),
                n if n < 0x1_0000 => {
                    out.push(0xdc);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    out.push(0xdd);
                    out.extend_from_slice(&(n as u32).to_be_bytes());
                }
            }
            for item in items {
                encode(item, out);
            }
        }
        Value::Map(entries) => {
            encode_map_header(entries.len(), out);
            for (k, v) in entries {
                encode_str(k, out);
                encode(v, out);
            }
        }
    }
}

/// msgpackr writes every object as `map16`, even a small one (map32 past 65,535 keys).
pub fn encode_map_header(n: usize, out: &mut Vec<u8>) {
    if n < 0x1_0000 {
        out.push(0xde);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdf);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

pub fn encode_str(s: &str, out: &mut Vec<u8>) {
    match s.len() {
        n if n < 32 => out.push(0xa0 | n as u8),
        n if n < 0x100 => out.extend_from_slice(&[0xd9, n as u8]),
        n if n < 0x1_0000 => {
            out.push(0xda);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0xdb);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(s.as_bytes());
}

/// Integers in [-2^31, 2^32-1] use the smallest int form; others are float64, as
/// msgpackr writes a JavaScript number.
pub fn encode_int(i: i64, out: &mut Vec<u8>) {
    match i {
        0..=0x7f => out.push(i as u8),
        -32..=-1 => out.push(i as i8 as u8),
        0x80..=0xff => out.extend_from_slice(&[0xcc, i as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(i as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(i as u32).to_be_bytes());
        }
        -0x80..=-33 => out.extend_from_slice(&[0xd0, i as i8 as u8]),
        -0x8000..=-0x81 => {
            out.push(0xd1);
            out.extend_from_slice(&(i as i16).to_be_bytes());
        }
        -0x8000_0000..=-0x8001 => {
            out.push(0xd2);
            out.extend_from_slice(&(i as i32).to_be_bytes());
        }
        _ => encode_float(i as f64, out),
    }
}

/// A JavaScript number: an integral value goes out as an int when it fits the rule above.
fn encode_number(f: f64, out: &mut Vec<u8>) {
    if f.fract() == 0.0 && (-2_147_483_648.0..=4_294_967_295.0).contains(&f) && f != 0.0
        || f == 0.0 && f.is_sign_positive()
    {
        encode_int(f as i64, out);
    } else {
        encode_float(f, out);
    }
}

pub fn encode_float(f: f64, out: &mut Vec<u8>) {
    out.push(0xcb);
    out.extend_from_slice(&f.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(v: &Value) -> Value {
        let mut out = Vec::new();
        encode(v, &mut out);
        decode(&out).unwrap()
    }

    #[test]
    fn maps_are_map16_and_undefined_is_fixext() {
        let mut out = Vec::new();
        encode(
            &Value::map(vec![("ok", Value::Bool(true)), ("id", Value::Undefined)]),
            &mut out,
        );
        assert_eq!(
            out,
            [0xde, 0, 2, 0xa2, b'o', b'k', 0xc3, 0xa2, b'i', b'd', 0xd4, 0, 0]
        );
    }

    #[test]
    fn wide_integers_become_float64() {
        let mut out = Vec::new();
        encode(&Value::Int(1_796_400_460_630), &mut out);
        assert_eq!(out[0], 0xcb);
        assert_eq!(decode(&out).unwrap(), Value::Float(1_796_400_460_630.0));
        for (i, first) in [
            (-2_147_483_649i64, 0xcb),
            (-2_147_483_648, 0xd2),
            (4_294_967_295, 0xce),
            (4_294_967_296, 0xcb),
            (-1, 0xff),
            (200, 0xcc),
        ] {
            let mut out = Vec::new();
            encode_int(i, &mut out);
            assert_eq!(out[0], first, "{i}");
        }
    }

    #[test]
    fn every_form_round_trips() {
        let v = Value::map(vec![
            ("s", Value::str("x".repeat(300))),
            ("a", Value::Array((0..20).map(Value::Int).collect())),
            ("b", Value::Bin(vec![1, 2, 3])),
            ("t", Value::Timestamp(1_796_400_460, 630_000_000)),
            ("t32", Value::Timestamp(5, 0)),
            ("f", Value::Float(0.5)),
            ("n", Value::Int(-100_000)),
            ("nil", Value::Nil),
            ("e", Value::Ext(7, vec![1, 2, 3])),
        ]);
        assert_eq!(round(&v), v);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            &[0xc1][..],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0xdb, 0xff, 0xff, 0xff, 0xff, b'x'],
            &[0xa2, 0xff, 0xfe],
            &[0x92, 0x01],
            &[0x01, 0x02],
            &[],
        ] {
            assert_eq!(decode(bad), Err(DecodeError), "{bad:?}");
        }
        let deep = vec![0x91u8; 100_000];
        assert_eq!(decode(&deep), Err(DecodeError));
    }

    #[test]
    fn int64_forms_decode() {
        assert_eq!(
            decode(&[0xd3, 0, 0, 0, 0, 0, 0, 0, 5]).unwrap(),
            Value::BigInt(5)
        );
        let max = [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(decode(&max).unwrap(), Value::BigInt(u64::MAX.into()));
        assert_eq!(
            round(&Value::BigInt(u64::MAX.into())),
            Value::BigInt(u64::MAX.into())
        );
        assert_eq!(round(&Value::BigInt(-5)), Value::BigInt(-5));
    }
}
