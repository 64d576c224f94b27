//! Jute, ZooKeeper's binary record format: big-endian integers, length-prefixed
//! strings, buffers and vectors (`-1` length meaning null).
//!
//! Decoding works on a borrowed byte slice and checks every length against the
//! bytes that remain before allocating, so a hostile frame can never make us
//! allocate more than the frame itself.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("record truncated: needed {needed} more bytes at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    #[error("negative or oversized length {len} at offset {offset}")]
    BadLength { offset: usize, len: i32 },
    #[error("{extra} trailing bytes after the record")]
    TrailingBytes { extra: usize },
    #[error("unexpected value {value} for {what}")]
    BadValue { what: &'static str, value: i64 },
}

pub type Result<T> = std::result::Result<T, DecodeError>;

/// A cursor over untrusted bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes { extra }),
        }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                offset: self.pos,
                needed: n - self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// The rest of the input, consumed.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    pub fn bool(&mut self) -> Result<bool> {
        Ok(self.take(1)?[0] != 0)
    }

    /// A length prefix; `None` for jute's null (-1). `min_item` is the smallest
    /// encoding of one element so that a count can be checked against the input.
    fn length(&mut self, min_item: usize) -> Result<Option<usize>> {
        let offset = self.pos;
        let len = self.i32()?;
        if len == -1 {
            return Ok(None);
        }
        let n = usize::try_from(len).map_err(|_| DecodeError::BadLength { offset, len })?;
        if n.saturating_mul(min_item) > self.remaining() {
            return Err(DecodeError::BadLength { offset, len });
        }
        Ok(Some(n))
    }

    /// A jute `buffer`; `None` when null.
    pub fn buffer(&mut self) -> Result<Option<&'a [u8]>> {
        match self.length(1)? {
            None => Ok(None),
            Some(n) => self.take(n).map(Some),
        }
    }

    /// A jute `ustring`. Null reads as empty; invalid UTF-8 is replaced the way
    /// Java's decoder does, so a bad path becomes a bad-path error later rather
    /// than a dropped connection.
    pub fn string(&mut self) -> Result<String> {
        let bytes = self.buffer()?.unwrap_or_default();
        Ok(match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        })
    }

    /// A jute `vector`; null reads as empty.
    pub fn vec<T: Jute>(&mut self) -> Result<Vec<T>> {
        let n = self.length(T::MIN_ENCODED_LEN)?.unwrap_or(0);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(T::read(self)?);
        }
        Ok(out)
    }
}

/// Encoding helpers over a growable buffer.
pub trait WriteJute {
    fn put_i32(&mut self, v: i32);
    fn put_i64(&mut self, v: i64);
    fn put_bool(&mut self, v: bool);
    fn put_buffer(&mut self, v: Option<&[u8]>);
    fn put_string(&mut self, v: &str);
    fn put_vec<T: Jute>(&mut self, v: &[T]);
}

impl WriteJute for Vec<u8> {
    fn put_i32(&mut self, v: i32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_bool(&mut self, v: bool) {
        self.push(u8::from(v));
    }
    fn put_buffer(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.put_i32(-1),
            Some(b) => {
                self.put_i32(len_i32(b.len()));
                self.extend_from_slice(b);
            }
        }
    }
    fn put_string(&mut self, v: &str) {
        self.put_buffer(Some(v.as_bytes()));
    }
    fn put_vec<T: Jute>(&mut self, v: &[T]) {
        self.put_i32(len_i32(v.len()));
        for item in v {
            item.write(self);
        }
    }
}

/// Lengths on the wire are `int`; frames are bounded by `jute.maxbuffer`
/// far below `i32::MAX`, so a larger value is a caller bug.
fn len_i32(n: usize) -> i32 {
    i32::try_from(n).expect("jute length exceeds i32::MAX")
}

/// A value with a jute encoding.
pub trait Jute: Sized {
    /// Lower bound of one encoded element, used to bound vector counts.
    const MIN_ENCODED_LEN: usize;
    fn read(r: &mut Reader<'_>) -> Result<Self>;
    fn write(&self, out: &mut Vec<u8>);

    fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let v = Self::read(&mut r)?;
        r.finish()?;
        Ok(v)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }
}

impl Jute for i32 {
    const MIN_ENCODED_LEN: usize = 4;
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        r.i32()
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.put_i32(*self)
    }
}

impl Jute for i64 {
    const MIN_ENCODED_LEN: usize = 8;
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        r.i64()
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.put_i64(*self)
    }
}

impl Jute for bool {
    const MIN_ENCODED_LEN: usize = 1;
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        r.bool()
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.put_bool(*self)
    }
}

impl Jute for String {
    const MIN_ENCODED_LEN: usize = 4;
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        r.string()
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.put_string(self)
    }
}

/// A non-null `buffer` (null decodes as empty).
impl Jute for Vec<u8> {
    const MIN_ENCODED_LEN: usize = 4;
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(r.buffer()?.unwrap_or_default().to_vec())
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.put_buffer(Some(self))
    }
}

/// A nullable `buffer`: znode data keeps the difference between null and empty.
impl Jute for Option<Vec<u8>> {
    const MIN_ENCODED_LEN: usize = 4;
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(r.buffer()?.map(<[u8]>::to_vec))
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.put_buffer(self.as_deref())
    }
}

impl<T: Jute> Jute for Vec<T> {
    const MIN_ENCODED_LEN: usize = 4;
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        r.vec()
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.put_vec(self)
    }
}

/// Declares a jute record: a struct whose fields are encoded in order.
macro_rules! record {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name { $($(#[$fmeta])* pub $field: $ty),* }

        impl $crate::jute::Jute for $name {
            const MIN_ENCODED_LEN: usize = 0 $(+ <$ty as $crate::jute::Jute>::MIN_ENCODED_LEN)*;
            fn read(r: &mut $crate::jute::Reader<'_>) -> $crate::jute::Result<Self> {
                Ok($name { $($field: <$ty as $crate::jute::Jute>::read(r)?),* })
            }
            fn write(&self, out: &mut Vec<u8>) {
                $(<$ty as $crate::jute::Jute>::write(&self.$field, out);)*
            }
        }
    };
}
pub(crate) use record;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_count_larger_than_input_is_refused_before_allocating() {
        let mut bytes = Vec::new();
        bytes.put_i32(i32::MAX);
        assert!(matches!(
            Vec::<String>::decode(&bytes),
            Err(DecodeError::BadLength { .. })
        ));
    }

    #[test]
    fn null_buffer_and_empty_buffer_differ() {
        let null: Option<Vec<u8>> = None;
        let empty: Option<Vec<u8>> = Some(Vec::new());
        assert_eq!(null.encode(), (-1i32).to_be_bytes());
        assert_eq!(empty.encode(), 0i32.to_be_bytes());
        assert_eq!(Option::<Vec<u8>>::decode(&null.encode()), Ok(None));
    }

    #[test]
    fn negative_length_other_than_null_is_an_error() {
        assert!(matches!(
            String::decode(&(-2i32).to_be_bytes()),
            Err(DecodeError::BadLength { .. })
        ));
    }
}
