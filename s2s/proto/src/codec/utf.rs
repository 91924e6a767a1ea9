//! Java modified UTF-8 strings (`DataOutputStream.writeUTF`) and big-endian integers.
//!
//! Every protocol token of S2S (resource names, request types, handshake properties,
//! response-code messages, peer host names) is a `writeUTF` string: a u16 byte length and
//! the string in *modified* UTF-8, which differs from UTF-8 in two ways: U+0000 is written
//! `C0 80`, and characters above U+FFFF are written as two 3-byte surrogate encodings
//! (CESU-8). Java's reader rejects the 4-byte sequences of standard UTF-8, so sending plain
//! UTF-8 for an emoji breaks the connection.
//!
//! FlowFile attributes are *not* encoded this way (see [`super::flowfile`]).

use bytes::{Buf, BufMut, BytesMut};

use super::reader::{self, Reader, Step, Stop};
use super::{DecodeError, EncodeError};

/// Largest encoded length a `writeUTF` string can have.
pub const MAX_UTF_LEN: usize = u16::MAX as usize;

/// Number of bytes `s` takes in modified UTF-8 (without the u16 length prefix).
pub fn modified_utf8_len(s: &str) -> usize {
    s.chars()
        .map(|c| match c as u32 {
            0 => 2,
            1..=0x7F => 1,
            0x80..=0x7FF => 2,
            0x800..=0xFFFF => 3,
            _ => 6,
        })
        .sum()
}

/// Appends `s` as a `writeUTF` string: u16 length, then modified UTF-8.
///
/// # Errors
/// [`EncodeError::StringTooLong`] if the encoding exceeds 65535 bytes; nothing is written
/// (Java also checks before writing).
pub fn encode_utf(s: &str, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let len = modified_utf8_len(s);
    if len > MAX_UTF_LEN {
        return Err(EncodeError::StringTooLong { len });
    }
    buf.reserve(2 + len);
    buf.put_u16(len as u16);
    if len == s.len() {
        // No NUL and nothing above U+FFFF: modified UTF-8 equals UTF-8 here.
        buf.put_slice(s.as_bytes());
        return Ok(());
    }
    for c in s.chars() {
        match c as u32 {
            0 => buf.put_slice(&[0xC0, 0x80]),
            0x1_0000.. => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units).iter() {
                    put_three_byte(*unit, buf);
                }
            }
            _ => {
                let mut tmp = [0u8; 4];
                buf.put_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
    Ok(())
}

fn put_three_byte(unit: u16, buf: &mut BytesMut) {
    buf.put_slice(&[
        0xE0 | (unit >> 12) as u8,
        0x80 | ((unit >> 6) & 0x3F) as u8,
        0x80 | (unit & 0x3F) as u8,
    ]);
}

/// Decodes one `writeUTF` string. `Ok(None)` means more bytes are needed.
///
/// Accepts what Java's `readUTF` accepts: `C0 80` and raw `00` for U+0000, surrogate pairs
/// (combined into one `char`). Unpaired surrogates become U+FFFD.
///
/// # Errors
/// [`DecodeError::InvalidModifiedUtf8`] for byte sequences `readUTF` rejects (including the
/// 4-byte sequences of standard UTF-8).
pub fn decode_utf(buf: &mut BytesMut) -> Result<Option<String>, DecodeError> {
    reader::run(buf, read_utf)
}

pub(crate) fn read_utf(r: &mut Reader<'_>) -> Step<String> {
    let len = r.u16()? as usize;
    let bytes = r.take(len)?;
    decode_modified_utf8(bytes).map_err(Stop::Invalid)
}

/// Decodes modified UTF-8 bytes (without length prefix) into a `String`.
///
/// # Errors
/// [`DecodeError::InvalidModifiedUtf8`] with the offset of the first bad byte.
pub fn decode_modified_utf8(bytes: &[u8]) -> Result<String, DecodeError> {
    // Fast path: standard UTF-8 rejects C0 80 and surrogates, so valid UTF-8 without any
    // 4-byte sequence decodes identically under both rules.
    if let Ok(s) = std::str::from_utf8(bytes)
        && !bytes.iter().any(|&b| b >= 0xF0)
    {
        return Ok(s.to_owned());
    }
    let mut units: Vec<u16> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let bad = |offset| DecodeError::InvalidModifiedUtf8 { offset };
    while i < bytes.len() {
        let b = bytes[i];
        match b >> 4 {
            0..=7 => {
                units.push(u16::from(b));
                i += 1;
            }
            12 | 13 => {
                let b2 = *bytes.get(i + 1).ok_or_else(|| bad(i))?;
                if b2 & 0xC0 != 0x80 {
                    return Err(bad(i + 1));
                }
                units.push((u16::from(b & 0x1F) << 6) | u16::from(b2 & 0x3F));
                i += 2;
            }
            14 => {
                let b2 = *bytes.get(i + 1).ok_or_else(|| bad(i))?;
                let b3 = *bytes.get(i + 2).ok_or_else(|| bad(i))?;
                if b2 & 0xC0 != 0x80 {
                    return Err(bad(i + 1));
                }
                if b3 & 0xC0 != 0x80 {
                    return Err(bad(i + 2));
                }
                units.push(
                    (u16::from(b & 0x0F) << 12)
                        | (u16::from(b2 & 0x3F) << 6)
                        | u16::from(b3 & 0x3F),
                );
                i += 3;
            }
            _ => return Err(bad(i)),
        }
    }
    Ok(char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect())
}

/// Decodes a big-endian `i32` (Java `readInt`). `None` means fewer than 4 bytes are buffered.
pub fn decode_i32(buf: &mut BytesMut) -> Option<i32> {
    (buf.len() >= 4).then(|| buf.get_i32())
}

/// Decodes a big-endian `i64` (Java `readLong`). `None` means fewer than 8 bytes are buffered.
pub fn decode_i64(buf: &mut BytesMut) -> Option<i64> {
    (buf.len() >= 8).then(|| buf.get_i64())
}

/// Appends a big-endian `i32` (Java `writeInt`).
pub fn encode_i32(v: i32, buf: &mut BytesMut) {
    buf.put_i32(v);
}

/// Appends a big-endian `i64` (Java `writeLong`).
pub fn encode_i64(v: i64, buf: &mut BytesMut) {
    buf.put_i64(v);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        encode_utf(s, &mut b).unwrap();
        b.to_vec()
    }

    #[test]
    fn tv11_nul_and_supplementary() {
        let s = "a\u{0}\u{1F600}é";
        let wire = [
            0x00, 0x0b, 0x61, 0xc0, 0x80, 0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80, 0xc3, 0xa9,
        ];
        assert_eq!(enc(s), wire);
        let mut b = BytesMut::from(&wire[..]);
        assert_eq!(decode_utf(&mut b).unwrap().as_deref(), Some(s));
        assert!(b.is_empty());
    }

    #[test]
    fn too_long_is_refused_before_writing() {
        let s = "x".repeat(65536);
        let mut b = BytesMut::from(&b"keep"[..]);
        assert_eq!(
            encode_utf(&s, &mut b),
            Err(EncodeError::StringTooLong { len: 65536 })
        );
        assert_eq!(&b[..], b"keep");
        // 65535 bytes is the largest legal string; a 3-byte char can push it over.
        assert!(encode_utf(&"x".repeat(65535), &mut BytesMut::new()).is_ok());
        let s = format!("{}é", "x".repeat(65534));
        assert!(matches!(
            encode_utf(&s, &mut BytesMut::new()),
            Err(EncodeError::StringTooLong { len: 65536 })
        ));
    }

    #[test]
    fn incremental_decode_consumes_nothing_until_complete() {
        let wire = enc("SocketFlowFileProtocol");
        for cut in 0..wire.len() {
            let mut b = BytesMut::from(&wire[..cut]);
            assert_eq!(decode_utf(&mut b), Ok(None), "cut at {cut}");
            assert_eq!(b.len(), cut);
        }
    }

    #[test]
    fn rejects_four_byte_utf8_and_bad_continuations() {
        let mut b = BytesMut::from(&[0x00, 0x04, 0xF0, 0x9F, 0x98, 0x80][..]);
        assert_eq!(
            decode_utf(&mut b),
            Err(DecodeError::InvalidModifiedUtf8 { offset: 0 })
        );
        let mut b = BytesMut::from(&[0x00, 0x02, 0x61, 0x80][..]);
        assert_eq!(
            decode_utf(&mut b),
            Err(DecodeError::InvalidModifiedUtf8 { offset: 1 })
        );
        let mut b = BytesMut::from(&[0x00, 0x02, 0xC3, 0x41][..]);
        assert_eq!(
            decode_utf(&mut b),
            Err(DecodeError::InvalidModifiedUtf8 { offset: 1 })
        );
        // Truncated 3-byte sequence inside the declared length.
        let mut b = BytesMut::from(&[0x00, 0x02, 0xE2, 0x82][..]);
        assert_eq!(
            decode_utf(&mut b),
            Err(DecodeError::InvalidModifiedUtf8 { offset: 0 })
        );
    }

    #[test]
    fn lenient_like_java() {
        // Raw NUL is accepted by readUTF.
        let mut b = BytesMut::from(&[0x00, 0x01, 0x00][..]);
        assert_eq!(decode_utf(&mut b).unwrap().as_deref(), Some("\0"));
        // Lone high surrogate becomes U+FFFD.
        let mut b = BytesMut::from(&[0x00, 0x04, 0xed, 0xa0, 0xbd, 0x41][..]);
        assert_eq!(decode_utf(&mut b).unwrap().as_deref(), Some("\u{FFFD}A"));
    }

    #[test]
    fn integers_are_big_endian() {
        let mut b = BytesMut::new();
        encode_i32(6, &mut b);
        encode_i64(-2, &mut b);
        assert_eq!(&b[..4], &[0, 0, 0, 6]);
        assert_eq!(decode_i32(&mut b), Some(6));
        assert_eq!(decode_i64(&mut BytesMut::from(&b[..7])), None);
        assert_eq!(decode_i64(&mut b), Some(-2));
    }
}
