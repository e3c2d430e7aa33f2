//! The little MessagePack the TCP transport needs: a writer for request maps and a reader
//! that walks a reply without building values (no allocation).

pub fn map(out: &mut Vec<u8>, len: u16) {
    out.push(0xde); // map16, as msgpackr writes every object
    out.extend_from_slice(&len.to_be_bytes());
}

pub fn array(out: &mut Vec<u8>, len: u32) {
    if len < 16 {
        out.push(0x90 | len as u8);
    } else if len <= u16::MAX as u32 {
        out.push(0xdc);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

pub fn str(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= u8::MAX as usize {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= u16::MAX as usize {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

/// Always 5 bytes (`ce`), so a request's `reqId` can be patched in place.
pub fn u32(out: &mut Vec<u8>, v: u32) {
    out.push(0xce);
    out.extend_from_slice(&v.to_be_bytes());
}

/// Numbers beyond 32 bits go as float64: msgpackr would make int64s BigInts.
pub fn f64(out: &mut Vec<u8>, v: f64) {
    out.push(0xcb);
    out.extend_from_slice(&v.to_be_bytes());
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Array(u32),
    Map(u32),
    Ext,
}

impl Val<'_> {
    pub fn number(&self) -> Option<f64> {
        match *self {
            Val::Int(i) => Some(i as f64),
            Val::Float(f) => Some(f),
            _ => None,
        }
    }
}

pub struct Reader<'a> {
    b: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Reader<'a> {
        Reader { b, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        Some(self.take(n)?.iter().fold(0u64, |a, b| (a << 8) | *b as u64))
    }

    /// One value's header (and a scalar's payload); an array's or map's items follow it.
    pub fn value(&mut self) -> Option<Val<'a>> {
        let t = *self.take(1)?.first()?;
        Some(match t {
            0x00..=0x7f => Val::Int(t as i64),
            0x80..=0x8f => Val::Map((t & 0x0f) as u32),
            0x90..=0x9f => Val::Array((t & 0x0f) as u32),
            0xa0..=0xbf => Val::Str(self.take((t & 0x1f) as usize)?),
            0xc0 => Val::Nil,
            0xc2 => Val::Bool(false),
            0xc3 => Val::Bool(true),
            0xc4..=0xc6 => {
                let n = self.be(1 << (t - 0xc4))? as usize;
                Val::Bin(self.take(n)?)
            }
            0xc7..=0xc9 => {
                let n = self.be(1 << (t - 0xc7))? as usize;
                self.take(n + 1)?;
                Val::Ext
            }
            0xca => Val::Float(f32::from_bits(self.be(4)? as u32) as f64),
            0xcb => Val::Float(f64::from_bits(self.be(8)?)),
            0xcc..=0xcf => Val::Int(self.be(1 << (t - 0xcc))? as i64),
            0xd0 => Val::Int(self.be(1)? as u8 as i8 as i64),
            0xd1 => Val::Int(self.be(2)? as u16 as i16 as i64),
            0xd2 => Val::Int(self.be(4)? as u32 as i32 as i64),
            0xd3 => Val::Int(self.be(8)? as i64),
            0xd4..=0xd8 => {
                self.take(1 + (1 << (t - 0xd4)))?;
                Val::Ext
            }
            0xd9..=0xdb => {
                let n = self.be(1 << (t - 0xd9))? as usize;
                Val::Str(self.take(n)?)
            }
            0xdc | 0xdd => Val::Array(self.be(if t == 0xdc { 2 } else { 4 })? as u32),
            0xde | 0xdf => Val::Map(self.be(if t == 0xde { 2 } else { 4 })? as u32),
            0xe0..=0xff => Val::Int(t as i8 as i64),
            0xc1 => return None,
        })
    }

    /// A reader of the same bytes from `pos`.
    pub fn clone_at(&self, pos: usize) -> Option<Reader<'a>> {
        (pos <= self.b.len()).then_some(Reader { b: self.b, pos })
    }

    /// Skips one whole value (a container with everything in it).
    pub fn skip(&mut self) -> Option<()> {
        let mut left: u64 = 1;
        while left > 0 {
            left -= 1;
            match self.value()? {
                Val::Array(n) => left += n as u64,
                Val::Map(n) => left += 2 * n as u64,
                _ => {}
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let mut b = Vec::new();
        map(&mut b, 3);
        str(&mut b, b"k");
        array(&mut b, 2);
        u32(&mut b, 7);
        f64(&mut b, 1.5e12);
        str(&mut b, &[b'x'; 40]);
        b.extend_from_slice(&[0xd4, 0x00, 0x00]); // undefined
        str(&mut b, b"z");
        b.push(0xc3);
        let mut r = Reader::new(&b);
        assert_eq!(r.value(), Some(Val::Map(3)));
        assert_eq!(r.value(), Some(Val::Str(b"k")));
        let at = r.pos;
        r.skip().unwrap();
        let mut again = Reader::new(&b[at..]);
        assert_eq!(again.value(), Some(Val::Array(2)));
        assert_eq!(again.value(), Some(Val::Int(7)));
        assert_eq!(again.value().unwrap().number(), Some(1.5e12));
        assert_eq!(r.value(), Some(Val::Str(&[b'x'; 40])));
        assert_eq!(r.value(), Some(Val::Ext));
        assert_eq!(r.value(), Some(Val::Str(b"z")));
        assert_eq!(r.value(), Some(Val::Bool(true)));
        assert_eq!(r.value(), None);
    }
}
