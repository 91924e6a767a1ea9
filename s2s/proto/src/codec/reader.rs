//! All-or-nothing parsing over a borrowed buffer.
//!
//! Parsers run on a `Reader` over the buffered bytes; running out of bytes is a distinct
//! outcome (`Step::Incomplete`) from corrupt input, so public decoders can return `Ok(None)`
//! without consuming anything and retry from the start when more bytes arrive. Messages
//! parsed this way are small (protocol strings, peer lists, headers), so re-parsing is cheap;
//! large payloads (FlowFile content) are handled by stateful decoders instead.

use bytes::{Buf, BytesMut};

use super::DecodeError;

/// Why a parse step did not produce a value.
#[derive(Debug)]
pub(crate) enum Stop {
    /// More bytes are needed; `needed` is a lower bound on the missing byte count.
    Incomplete { needed: usize },
    /// The bytes are corrupt.
    Invalid(DecodeError),
}

impl From<DecodeError> for Stop {
    fn from(e: DecodeError) -> Self {
        Self::Invalid(e)
    }
}

pub(crate) type Step<T> = Result<T, Stop>;

#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        if self.remaining() < n {
            return Err(Stop::Incomplete {
                needed: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Step<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Step<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Step<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn i32(&mut self) -> Step<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    /// A Java `int` used as a length or count: must be `0..=max`.
    pub(crate) fn len_i32(&mut self, field: &'static str, max: u64) -> Step<usize> {
        let v = self.i32()?;
        Ok(check_len(field, i64::from(v), max)?)
    }
}

/// Checks a signed length or count read from the wire against `0..=max`.
pub(crate) fn check_len(field: &'static str, v: i64, max: u64) -> Result<usize, DecodeError> {
    if v < 0 {
        return Err(DecodeError::Negative { field, value: v });
    }
    let v = v as u64;
    if v > max {
        return Err(DecodeError::LimitExceeded { field, len: v, max });
    }
    usize::try_from(v).map_err(|_| DecodeError::LimitExceeded {
        field,
        len: v,
        max: usize::MAX as u64,
    })
}

/// Runs `parse` over `buf`; on success removes the consumed bytes from `buf`.
///
/// On `Incomplete` nothing is consumed and `buf` reserves room for at least the missing
/// bytes (capped, so a hostile length cannot force a large allocation up front).
pub(crate) fn run<T>(
    buf: &mut BytesMut,
    parse: impl FnOnce(&mut Reader<'_>) -> Step<T>,
) -> Result<Option<T>, DecodeError> {
    let mut r = Reader::new(buf);
    match parse(&mut r) {
        Ok(v) => {
            let n = r.position();
            buf.advance(n);
            Ok(Some(v))
        }
        Err(Stop::Incomplete { needed }) => {
            buf.reserve(needed.min(RESERVE_CAP));
            Ok(None)
        }
        Err(Stop::Invalid(e)) => Err(e),
    }
}

/// Largest up-front reservation made on behalf of a length read from the wire.
pub(crate) const RESERVE_CAP: usize = 64 * 1024;
