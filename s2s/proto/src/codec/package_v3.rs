//! FlowFile Package v3 (`application/flowfile-v3`, docs/site-to-site.md §10): what NiFi's `PackageFlowFile`,
//! `PostHTTP` and MiNiFi send to `ListenHTTP`. Packages are concatenated back-to-back.
//!
//! ```text
//! "NiFiFF3" len(attributeCount) { len(keyLen) key len(valueLen) value } i64 contentLength content
//! len(n) := n < 65535 ? u16 n : FF FF i32 n        (65535 itself takes the 6-byte form)
//! ```

use bytes::{Buf, BufMut, BytesMut};

use super::DecodeError;
use super::flowfile::{FlowFile, Limits};
use super::reader::{RESERVE_CAP, check_len};

/// The 7 bytes that start every package.
pub const MAGIC: [u8; 7] = *b"NiFiFF3";

/// The media type of a body of concatenated packages.
pub const MEDIA_TYPE: &str = "application/flowfile-v3";

const TWO_BYTE_MAX: usize = 65535;

fn field_len(n: usize) -> usize {
    if n < TWO_BYTE_MAX { 2 } else { 6 }
}

fn put_field_len(n: usize, buf: &mut BytesMut) {
    if n < TWO_BYTE_MAX {
        buf.put_u16(n as u16);
    } else {
        let n = i32::try_from(n).unwrap_or_else(|_| panic!("length {n} does not fit a Java int"));
        buf.put_u16(0xFFFF);
        buf.put_i32(n);
    }
}

/// Length of the package header (magic to content length) of `flowfile`.
pub fn header_len(flowfile: &FlowFile) -> usize {
    MAGIC.len()
        + field_len(flowfile.attributes.len())
        + flowfile
            .attributes
            .iter()
            .map(|(k, v)| field_len(k.len()) + k.len() + field_len(v.len()) + v.len())
            .sum::<usize>()
        + 8
}

/// Total package length of `flowfile`.
pub fn encoded_len(flowfile: &FlowFile) -> usize {
    header_len(flowfile) + flowfile.content.len()
}

/// Appends the package header; the content (`flowfile.content`) follows it unchanged.
///
/// A FlowFile without attributes is written as NiFi's packager writes it, but NiFi's
/// unpacker rejects it ("FlowFiles cannot have zero attributes"): give it at least `filename`.
///
/// # Panics
/// If a count or length exceeds `i32::MAX`.
pub fn encode_header(flowfile: &FlowFile, buf: &mut BytesMut) {
    buf.reserve(header_len(flowfile));
    buf.put_slice(&MAGIC);
    put_field_len(flowfile.attributes.len(), buf);
    for (k, v) in &flowfile.attributes {
        put_field_len(k.len(), buf);
        buf.put_slice(k.as_bytes());
        put_field_len(v.len(), buf);
        buf.put_slice(v.as_bytes());
    }
    buf.put_i64(flowfile.content.len() as i64);
}

/// Appends one whole package.
///
/// # Panics
/// As [`encode_header`].
pub fn encode(flowfile: &FlowFile, buf: &mut BytesMut) {
    buf.reserve(encoded_len(flowfile));
    encode_header(flowfile, buf);
    buf.put_slice(&flowfile.content);
}

#[derive(Debug, Clone)]
enum State {
    Magic,
    Count,
    Key { left: usize },
    Value { left: usize, key: String },
    ContentLen,
    Content { len: usize },
}

/// Incremental decoder of concatenated v3 packages, bounded by [`Limits`].
///
/// Unlike NiFi's unpacker it accepts packages with zero attributes (NiFi's packager can write
/// them; nothing downstream needs attributes).
#[derive(Debug, Clone)]
pub struct PackageV3Decoder {
    limits: Limits,
    state: State,
    attributes: Vec<(String, String)>,
}

impl Default for PackageV3Decoder {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl PackageV3Decoder {
    /// A decoder applying `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::Magic,
            attributes: Vec::new(),
        }
    }

    /// Whether the decoder sits at a package boundary.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Magic)
    }

    /// Decodes the next package. `Ok(None)` means more bytes are needed.
    ///
    /// # Errors
    /// [`DecodeError::BadMagic`], [`DecodeError::Negative`], [`DecodeError::LimitExceeded`],
    /// [`DecodeError::InvalidUtf8`].
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<FlowFile>, DecodeError> {
        let r = self.step(buf);
        if r.is_err() {
            self.state = State::Magic;
            self.attributes = Vec::new();
        }
        r
    }

    /// Like [`decode`](Self::decode) at end of input: the body must end at a package boundary.
    ///
    /// # Errors
    /// As [`decode`](Self::decode), plus [`DecodeError::Truncated`].
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<FlowFile>, DecodeError> {
        match self.decode(buf)? {
            Some(f) => Ok(Some(f)),
            None if buf.is_empty() && self.is_idle() => Ok(None),
            None => {
                self.state = State::Magic;
                self.attributes = Vec::new();
                Err(DecodeError::Truncated {
                    buffered: buf.len(),
                })
            }
        }
    }

    fn step(&mut self, buf: &mut BytesMut) -> Result<Option<FlowFile>, DecodeError> {
        loop {
            match &mut self.state {
                State::Magic => {
                    let n = buf.len().min(MAGIC.len());
                    if buf[..n] != MAGIC[..n] {
                        return Err(DecodeError::BadMagic {
                            expected: &MAGIC,
                            found: buf[..n].to_vec(),
                        });
                    }
                    if n < MAGIC.len() {
                        return Ok(None);
                    }
                    buf.advance(MAGIC.len());
                    self.state = State::Count;
                }
                State::Count => {
                    let Some((hdr, n)) =
                        peek_len(buf, "attribute count", self.limits.max_attributes)?
                    else {
                        return Ok(None);
                    };
                    buf.advance(hdr);
                    self.attributes = Vec::with_capacity(n.min(64));
                    self.state = if n == 0 {
                        State::ContentLen
                    } else {
                        State::Key { left: n }
                    };
                }
                State::Key { left } => {
                    let left = *left;
                    let Some(key) =
                        take_string(buf, "attribute key", self.limits.max_attribute_key_len)?
                    else {
                        return Ok(None);
                    };
                    self.state = State::Value { left, key };
                }
                State::Value { left, key } => {
                    let Some(value) =
                        take_string(buf, "attribute value", self.limits.max_attribute_value_len)?
                    else {
                        return Ok(None);
                    };
                    let left = *left - 1;
                    self.attributes.push((std::mem::take(key), value));
                    self.state = if left == 0 {
                        State::ContentLen
                    } else {
                        State::Key { left }
                    };
                }
                State::ContentLen => {
                    if buf.len() < 8 {
                        return Ok(None);
                    }
                    let n = buf.get_i64();
                    let len = check_len("content length", n, self.limits.max_content_len)?;
                    self.state = State::Content { len };
                }
                State::Content { len } => {
                    let len = *len;
                    if buf.len() < len {
                        buf.reserve((len - buf.len()).min(super::flowfile::CONTENT_RESERVE_CAP));
                        return Ok(None);
                    }
                    let content = buf.split_to(len).freeze();
                    self.state = State::Magic;
                    return Ok(Some(FlowFile {
                        attributes: std::mem::take(&mut self.attributes),
                        content,
                    }));
                }
            }
        }
    }
}

/// Reads a variable-length field without consuming: `(bytes used, value)`.
fn peek_len(
    buf: &BytesMut,
    field: &'static str,
    max: usize,
) -> Result<Option<(usize, usize)>, DecodeError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[0] != 0xFF || buf[1] != 0xFF {
        let n = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
        return check_len(field, n as i64, max as u64).map(|n| Some((2, n)));
    }
    if buf.len() < 6 {
        return Ok(None);
    }
    let n = i32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]]);
    check_len(field, n.into(), max as u64).map(|n| Some((6, n)))
}

fn take_string(
    buf: &mut BytesMut,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, DecodeError> {
    let Some((hdr, len)) = peek_len(buf, field, max)? else {
        return Ok(None);
    };
    if buf.len() < hdr + len {
        buf.reserve((hdr + len - buf.len()).min(RESERVE_CAP));
        return Ok(None);
    }
    buf.advance(hdr);
    let bytes = buf.split_to(len);
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Some(s.to_owned())),
        Err(_) => Err(DecodeError::InvalidUtf8 { field }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TV10: F1 as a v3 package.
    const TV10: &[u8] = b"NiFiFF3\x00\x02\x00\x08filename\x00\x09hello.txt\x00\x04path\x00\x02./\
\x00\x00\x00\x00\x00\x00\x00\x05hello";

    fn f1() -> FlowFile {
        FlowFile::new(&b"hello"[..])
            .with_attribute("filename", "hello.txt")
            .with_attribute("path", "./")
    }

    #[test]
    fn tv10_encode_decode() {
        assert_eq!(TV10.len(), 53);
        let mut b = BytesMut::new();
        encode(&f1(), &mut b);
        assert_eq!(&b[..], TV10);
        assert_eq!(encoded_len(&f1()), 53);
        let mut d = PackageV3Decoder::default();
        assert_eq!(d.decode(&mut b), Ok(Some(f1())));
        assert_eq!(d.decode_eof(&mut b), Ok(None));
    }

    #[test]
    fn tv10_length_field_edges() {
        for (n, wire) in [
            (65534usize, &[0xff, 0xfe][..]),
            (65535, &[0xff, 0xff, 0x00, 0x00, 0xff, 0xff][..]),
            (70000, &[0xff, 0xff, 0x00, 0x01, 0x11, 0x70][..]),
        ] {
            let mut b = BytesMut::new();
            put_field_len(n, &mut b);
            assert_eq!(&b[..], wire, "{n}");
            assert_eq!(peek_len(&b, "x", usize::MAX), Ok(Some((wire.len(), n))));
            let f = FlowFile::new(&b"c"[..]).with_attribute("k", "v".repeat(n));
            let mut b = BytesMut::new();
            encode(&f, &mut b);
            assert_eq!(b.len(), encoded_len(&f));
            assert_eq!(PackageV3Decoder::default().decode(&mut b), Ok(Some(f)));
        }
    }

    #[test]
    fn concatenated_byte_by_byte() {
        let f2 = FlowFile::new(&b"world!"[..]).with_attribute("filename", "b.txt");
        let mut body = BytesMut::new();
        encode(&f1(), &mut body);
        encode(&f2, &mut body);
        let mut d = PackageV3Decoder::default();
        let mut b = BytesMut::new();
        let mut got = Vec::new();
        for byte in body.iter() {
            b.put_u8(*byte);
            if let Some(f) = d.decode(&mut b).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, [f1(), f2]);
        assert_eq!(d.decode_eof(&mut b), Ok(None));
    }

    #[test]
    fn invalid_packages() {
        let mut d = PackageV3Decoder::default();
        assert!(matches!(
            d.decode(&mut BytesMut::from(&b"NiFiFF2"[..])),
            Err(DecodeError::BadMagic { .. })
        ));
        // Negative 6-byte length.
        let mut b = BytesMut::from(&b"NiFiFF3\xff\xff\x80\x00\x00\x00"[..]);
        assert!(matches!(
            d.decode(&mut b),
            Err(DecodeError::Negative { .. })
        ));
        // Key longer than the limit.
        let mut d = PackageV3Decoder::new(Limits {
            max_attribute_key_len: 4,
            ..Limits::default()
        });
        assert!(matches!(
            d.decode(&mut BytesMut::from(TV10)),
            Err(DecodeError::LimitExceeded {
                field: "attribute key",
                len: 8,
                max: 4
            })
        ));
        // Truncated at every point but the boundary.
        for cut in 1..TV10.len() {
            let mut d = PackageV3Decoder::default();
            let mut b = BytesMut::from(&TV10[..cut]);
            assert_eq!(d.decode(&mut b), Ok(None), "cut {cut}");
            assert!(matches!(
                d.decode_eof(&mut b),
                Err(DecodeError::Truncated { .. })
            ));
        }
    }
}
