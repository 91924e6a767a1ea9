//! The FlowFile model and `StandardFlowFileCodec` version 1 (docs/site-to-site.md §4.1).
//!
//! ```text
//! i32 attributeCount
//! repeat: i32 keyLen, key (standard UTF-8), i32 valueLen, value (standard UTF-8)
//! i64 contentLength, content
//! ```
//!
//! Unlike protocol strings, attribute strings are standard UTF-8 with an i32 length.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::DecodeError;
use super::checksum::TransactionChecksum;
use super::reader::check_len;

/// A FlowFile: ordered attributes and content.
///
/// Attribute order is kept as given and is what goes on the wire (NiFi itself stores them in
/// a map, so order carries no meaning to it). `Debug` shows the content length, not the bytes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FlowFile {
    /// Attributes as `(key, value)` pairs. Keys should be unique; if not, NiFi keeps the last.
    pub attributes: Vec<(String, String)>,
    /// The content.
    pub content: Bytes,
}

impl FlowFile {
    /// A FlowFile with `content` and no attributes.
    pub fn new(content: impl Into<Bytes>) -> Self {
        Self {
            attributes: Vec::new(),
            content: content.into(),
        }
    }

    /// Sets attribute `key` to `value`, replacing an existing value in place.
    #[must_use]
    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        match self.attributes.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.attributes.push((key, value)),
        }
        self
    }

    /// Adds this FlowFile to a transaction CRC exactly as the codec writes it (header, then
    /// content), without copying the content.
    pub fn add_to_checksum(&self, crc: &mut TransactionChecksum) {
        let mut header = BytesMut::new();
        encode_header(self, &mut header);
        crc.update(&header);
        crc.update(&self.content);
    }

    /// The value of attribute `key` (the last one if the key is repeated).
    pub fn attribute(&self, key: &str) -> Option<&str> {
        attribute(&self.attributes, key)
    }
}

impl fmt::Debug for FlowFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowFile")
            .field("attributes", &self.attributes)
            .field("content_len", &self.content.len())
            .finish()
    }
}

/// The value of `key` in wire-order `attributes` (the last one if the key is repeated, as NiFi
/// keeps the last).
pub fn attribute<'a>(attributes: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn wire_i32(what: &str, n: usize) -> i32 {
    i32::try_from(n).unwrap_or_else(|_| panic!("{what} of {n} does not fit a Java int"))
}

/// Length of the codec header (everything but the content) of `flowfile`.
pub fn header_len(flowfile: &FlowFile) -> usize {
    header_len_parts(&flowfile.attributes)
}

/// Length of the codec header of a FlowFile with `attributes`: `i32` count, per attribute `i32`
/// length + key and `i32` length + value, `i64` content length.
pub fn header_len_parts(attributes: &[(String, String)]) -> usize {
    4 + attributes
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len())
        .sum::<usize>()
        + 8
}

/// Total encoded length of `flowfile` (header and content).
pub fn encoded_len(flowfile: &FlowFile) -> usize {
    header_len(flowfile) + flowfile.content.len()
}

/// Appends the header: attribute count, attributes, content length. Write the content
/// (`flowfile.content`) right after it; this lets a driver send large content without copying.
///
/// # Panics
/// If there are more than `i32::MAX` attributes or a key/value exceeds `i32::MAX` bytes:
/// the wire format cannot carry them.
pub fn encode_header(flowfile: &FlowFile, buf: &mut BytesMut) {
    encode_header_parts(&flowfile.attributes, flowfile.content.len() as u64, buf);
}

/// [`encode_header`] from the parts: the header of a FlowFile with `attributes` whose content
/// (written after it by the caller) is `content_len` bytes long.
///
/// # Panics
/// As [`encode_header`], and if `content_len` exceeds `i64::MAX`.
pub fn encode_header_parts(attributes: &[(String, String)], content_len: u64, buf: &mut BytesMut) {
    buf.reserve(header_len_parts(attributes));
    buf.put_i32(wire_i32("attribute count", attributes.len()));
    for (k, v) in attributes {
        buf.put_i32(wire_i32("attribute key length", k.len()));
        buf.put_slice(k.as_bytes());
        buf.put_i32(wire_i32("attribute value length", v.len()));
        buf.put_slice(v.as_bytes());
    }
    let len = i64::try_from(content_len)
        .unwrap_or_else(|_| panic!("content length {content_len} does not fit a Java long"));
    buf.put_i64(len);
}

/// Appends the whole FlowFile (header and content).
///
/// # Panics
/// As [`encode_header`].
pub fn encode(flowfile: &FlowFile, buf: &mut BytesMut) {
    buf.reserve(encoded_len(flowfile));
    encode_header(flowfile, buf);
    buf.put_slice(&flowfile.content);
}

/// Bounds applied while decoding; a value above a bound is a [`DecodeError::LimitExceeded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum attribute count. Default 25000 (NiFi's own limit).
    pub max_attributes: usize,
    /// Maximum attribute key length in bytes. Default 64 KiB.
    pub max_attribute_key_len: usize,
    /// Maximum attribute value length in bytes. Default 1 MiB.
    pub max_attribute_value_len: usize,
    /// Maximum content length in bytes; the content is buffered whole. Default 256 MiB.
    pub max_content_len: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_attributes: 25_000,
            max_attribute_key_len: 64 * 1024,
            max_attribute_value_len: 1024 * 1024,
            max_content_len: 256 * 1024 * 1024,
        }
    }
}

/// Largest reservation made for content still in flight: large contents grow the buffer as
/// bytes arrive instead of trusting the announced length up front.
pub(crate) const CONTENT_RESERVE_CAP: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
enum State {
    Count,
    Key {
        left: usize,
    },
    Value {
        left: usize,
        key: String,
    },
    ContentLen,
    /// `hashed`: content bytes at the front of the buffer already added to the CRC.
    Content {
        len: usize,
        hashed: usize,
    },
    /// [`FlowFileDecoder::decode_part`]: `left` content bytes still to hand out.
    Streaming {
        left: usize,
    },
}

/// One piece of a FlowFile from [`FlowFileDecoder::decode_part`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlowFilePart {
    /// The attributes and the announced content length; content chunks follow.
    Header {
        /// Attributes in wire order.
        attributes: Vec<(String, String)>,
        /// Content bytes that will follow as [`FlowFilePart::Content`].
        content_len: u64,
    },
    /// The next bytes of content (never empty), split off the input without copying.
    Content(Bytes),
    /// The FlowFile is complete (all content handed out); the decoder is idle again.
    End,
}

/// Incremental `StandardFlowFileCodec` v1 decoder.
///
/// Feed it the bytes of one FlowFile at a time (the transaction markers between FlowFiles are
/// not part of the codec). Parsed parts are consumed from the buffer as soon as they are
/// complete, so a header is never re-parsed; the content is split off without copying.
/// After an error the decoder resets, but the stream it was reading is out of sync.
#[derive(Debug, Clone)]
pub struct FlowFileDecoder {
    limits: Limits,
    state: State,
    attributes: Vec<(String, String)>,
    /// Set only inside [`FlowFileDecoder::decode_part`]: stop after the content length.
    streaming: bool,
}

impl Default for FlowFileDecoder {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl FlowFileDecoder {
    /// A decoder applying `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::Count,
            attributes: Vec::new(),
            streaming: false,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether no FlowFile is partially decoded (the decoder sits at a FlowFile boundary).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Count)
    }

    /// Decodes the next FlowFile. `Ok(None)` means more bytes are needed; the bytes decoded so
    /// far are kept (consumed from `buf`) until the FlowFile is complete.
    ///
    /// # Errors
    /// [`DecodeError::Negative`]/[`DecodeError::LimitExceeded`] for a bad count or length,
    /// [`DecodeError::InvalidUtf8`] for an attribute that is not UTF-8.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<FlowFile>, DecodeError> {
        let r = self.step(buf, None);
        if r.is_err() {
            self.reset();
        }
        r
    }

    /// Like [`decode`](Self::decode), and adds the FlowFile's codec bytes to `crc` as they
    /// arrive: the header as each field is parsed, the content as each read appends to `buf`.
    /// The CRC thus reads every byte right after the socket wrote it (cache-hot) instead of in
    /// one pass over the whole content at the end; the result equals
    /// [`FlowFile::add_to_checksum`] of the returned FlowFile. Use the same `crc` for
    /// every call of one FlowFile.
    ///
    /// # Errors
    /// As [`decode`](Self::decode).
    pub fn decode_with_checksum(
        &mut self,
        buf: &mut BytesMut,
        crc: &mut TransactionChecksum,
    ) -> Result<Option<FlowFile>, DecodeError> {
        let r = self.step(buf, Some(crc));
        if r.is_err() {
            self.reset();
        }
        r
    }

    /// Streaming decode: the header, then the content in chunks as they arrive, then
    /// [`FlowFilePart::End`]. Nothing waits for the whole content, so a receiver can hand each
    /// chunk on (or drop it) and reuse one small read buffer for FlowFiles of any size. Every
    /// codec byte is added to `crc` as it is consumed (same result as
    /// [`FlowFile::add_to_checksum`]). `Ok(None)` means more bytes are needed.
    ///
    /// Do not mix with [`decode`](Self::decode) within one FlowFile.
    ///
    /// # Errors
    /// As [`decode`](Self::decode).
    pub fn decode_part(
        &mut self,
        buf: &mut BytesMut,
        crc: &mut TransactionChecksum,
    ) -> Result<Option<FlowFilePart>, DecodeError> {
        if let State::Streaming { left } = &mut self.state {
            if *left == 0 {
                self.state = State::Count;
                return Ok(Some(FlowFilePart::End));
            }
            if buf.is_empty() {
                return Ok(None);
            }
            let n = buf.len().min(*left);
            *left -= n;
            let chunk = buf.split_to(n).freeze();
            crc.update(&chunk);
            return Ok(Some(FlowFilePart::Content(chunk)));
        }
        let r = self.header(buf, crc);
        if r.is_err() {
            self.reset();
        }
        r
    }

    /// Header part of [`decode_part`](Self::decode_part): runs the shared header states and
    /// stops where the buffered decoder would start collecting content.
    fn header(
        &mut self,
        buf: &mut BytesMut,
        crc: &mut TransactionChecksum,
    ) -> Result<Option<FlowFilePart>, DecodeError> {
        if matches!(self.state, State::Content { .. }) {
            // Only reachable by mixing `decode` and `decode_part` mid-FlowFile.
            self.reset();
        }
        self.streaming = true;
        let r = self.step(buf, Some(crc));
        self.streaming = false;
        match r? {
            Some(_) => unreachable!("streaming mode never completes a whole FlowFile"),
            None => match self.state {
                State::Streaming { left } => Ok(Some(FlowFilePart::Header {
                    attributes: std::mem::take(&mut self.attributes),
                    content_len: left as u64,
                })),
                _ => Ok(None),
            },
        }
    }

    /// Like [`decode`](Self::decode), at end of input: a partial FlowFile is an error.
    ///
    /// # Errors
    /// As [`decode`](Self::decode), plus [`DecodeError::Truncated`].
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<FlowFile>, DecodeError> {
        match self.decode(buf)? {
            Some(f) => Ok(Some(f)),
            None if buf.is_empty() && self.is_idle() => Ok(None),
            None => {
                self.reset();
                Err(DecodeError::Truncated {
                    buffered: buf.len(),
                })
            }
        }
    }

    fn reset(&mut self) {
        self.state = State::Count;
        self.attributes = Vec::new();
    }

    fn step(
        &mut self,
        buf: &mut BytesMut,
        mut crc: Option<&mut TransactionChecksum>,
    ) -> Result<Option<FlowFile>, DecodeError> {
        loop {
            match &mut self.state {
                State::Count => {
                    if let (Some(c), true) = (crc.as_deref_mut(), buf.len() >= 4) {
                        c.update(&buf[..4]);
                    }
                    let Some(n) = take_i32(buf) else {
                        return Ok(None);
                    };
                    let n = check_len(
                        "attribute count",
                        n.into(),
                        self.limits.max_attributes as u64,
                    )?;
                    self.attributes = Vec::with_capacity(n.min(64));
                    self.state = if n == 0 {
                        State::ContentLen
                    } else {
                        State::Key { left: n }
                    };
                }
                State::Key { left } => {
                    let left = *left;
                    let Some(key) = take_string(
                        buf,
                        "attribute key",
                        self.limits.max_attribute_key_len,
                        crc.as_deref_mut(),
                    )?
                    else {
                        return Ok(None);
                    };
                    self.state = State::Value { left, key };
                }
                State::Value { left, key } => {
                    let Some(value) = take_string(
                        buf,
                        "attribute value",
                        self.limits.max_attribute_value_len,
                        crc.as_deref_mut(),
                    )?
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
                    if let Some(c) = crc.as_deref_mut() {
                        c.update(&buf[..8]);
                    }
                    let n = buf.get_i64();
                    let len = check_len("content length", n, self.limits.max_content_len)?;
                    if self.streaming {
                        self.state = State::Streaming { left: len };
                        return Ok(None);
                    }
                    self.state = State::Content { len, hashed: 0 };
                }
                State::Streaming { .. } => {
                    // `decode` called mid-way through a streamed FlowFile: API misuse, but
                    // never a panic; the stream is out of sync either way.
                    return Err(DecodeError::Truncated {
                        buffered: buf.len(),
                    });
                }
                State::Content { len, hashed } => {
                    let len = *len;
                    if let Some(c) = crc.as_deref_mut() {
                        let upto = buf.len().min(len);
                        if upto > *hashed {
                            c.update(&buf[*hashed..upto]);
                            *hashed = upto;
                        }
                    }
                    if buf.len() < len {
                        buf.reserve((len - buf.len()).min(CONTENT_RESERVE_CAP));
                        return Ok(None);
                    }
                    let content = buf.split_to(len).freeze();
                    self.state = State::Count;
                    return Ok(Some(FlowFile {
                        attributes: std::mem::take(&mut self.attributes),
                        content,
                    }));
                }
            }
        }
    }
}

fn take_i32(buf: &mut BytesMut) -> Option<i32> {
    (buf.len() >= 4).then(|| buf.get_i32())
}

/// An i32-length UTF-8 string, consumed only once complete.
fn take_string(
    buf: &mut BytesMut,
    field: &'static str,
    max: usize,
    crc: Option<&mut TransactionChecksum>,
) -> Result<Option<String>, DecodeError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let n = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let len = check_len(field, n.into(), max as u64)?;
    if buf.len() < 4 + len {
        buf.reserve((4 + len - buf.len()).min(super::reader::RESERVE_CAP));
        return Ok(None);
    }
    if let Some(c) = crc {
        c.update(&buf[..4 + len]);
    }
    buf.advance(4);
    let bytes = buf.split_to(len);
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Some(s.to_owned())),
        Err(_) => Err(DecodeError::InvalidUtf8 { field }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// TV4: F1 = {filename=hello.txt, path=./}, content "hello".
    pub(crate) const TV4: &[u8] =
        b"\x00\x00\x00\x02\x00\x00\x00\x08filename\x00\x00\x00\x09hello.txt\
\x00\x00\x00\x04path\x00\x00\x00\x02./\x00\x00\x00\x00\x00\x00\x00\x05hello";

    fn f1() -> FlowFile {
        FlowFile::new(&b"hello"[..])
            .with_attribute("filename", "hello.txt")
            .with_attribute("path", "./")
    }

    #[test]
    fn tv4_encode_decode() {
        let mut b = BytesMut::new();
        encode(&f1(), &mut b);
        assert_eq!(&b[..], TV4);
        assert_eq!(encoded_len(&f1()), 56);
        let mut h = BytesMut::new();
        encode_header(&f1(), &mut h);
        assert_eq!(&h[..], &TV4[..51]);

        let mut d = FlowFileDecoder::default();
        assert_eq!(d.decode(&mut b), Ok(Some(f1())));
        assert!(b.is_empty() && d.is_idle());
    }

    #[test]
    fn tv4_byte_by_byte() {
        let mut d = FlowFileDecoder::default();
        let mut b = BytesMut::new();
        for (i, byte) in TV4.iter().enumerate() {
            b.put_u8(*byte);
            let got = d.decode(&mut b).unwrap();
            assert_eq!(got.is_some(), i == TV4.len() - 1, "at {i}");
            if let Some(f) = got {
                assert_eq!(f, f1());
            }
        }
    }

    #[test]
    fn streaming_checksum_equals_whole_flowfile_checksum() {
        let big = FlowFile::new((0..300_000u32).map(|i| i as u8).collect::<Vec<u8>>())
            .with_attribute("filename", "big.bin")
            .with_attribute("ü", "ß");
        for ff in [f1(), FlowFile::default(), big] {
            let mut wire = BytesMut::new();
            encode(&ff, &mut wire);
            let mut expected = TransactionChecksum::new();
            ff.add_to_checksum(&mut expected);
            // Fed in pieces of every awkward size, including 1 byte at a time.
            for piece in [1, 3, 4, 7, 4096, 65_537, usize::MAX] {
                let mut d = FlowFileDecoder::default();
                let mut crc = TransactionChecksum::new();
                let mut buf = BytesMut::new();
                let mut got = None;
                for chunk in wire.chunks(piece.min(wire.len()).max(1)) {
                    assert!(got.is_none());
                    buf.extend_from_slice(chunk);
                    got = d.decode_with_checksum(&mut buf, &mut crc).unwrap();
                }
                assert_eq!(got.as_ref(), Some(&ff), "piece {piece}");
                assert_eq!(crc.value(), expected.value(), "piece {piece}");
                assert!(buf.is_empty() && d.is_idle());
            }
        }
    }

    #[test]
    fn streaming_parts_reassemble_the_flowfile() {
        let big = FlowFile::new((0..300_000u32).map(|i| i as u8).collect::<Vec<u8>>())
            .with_attribute("k", "v");
        for ff in [f1(), FlowFile::default(), big] {
            let mut wire = BytesMut::new();
            encode(&ff, &mut wire);
            encode(&f1(), &mut wire); // a second FlowFile right behind
            let mut expected = TransactionChecksum::new();
            ff.add_to_checksum(&mut expected);
            for piece in [1, 5, 4096, usize::MAX] {
                let mut d = FlowFileDecoder::default();
                let mut crc = TransactionChecksum::new();
                let mut buf = BytesMut::new();
                let (mut attrs, mut announced, mut content) = (None, None, Vec::new());
                let mut ended = false;
                let mut chunks = wire.chunks(piece.min(wire.len()));
                while !ended {
                    match d.decode_part(&mut buf, &mut crc).unwrap() {
                        None => buf.extend_from_slice(chunks.next().expect("wire is complete")),
                        Some(FlowFilePart::Header {
                            attributes,
                            content_len,
                        }) => {
                            assert!(attrs.is_none());
                            attrs = Some(attributes);
                            announced = Some(content_len);
                        }
                        Some(FlowFilePart::Content(c)) => {
                            assert!(!c.is_empty());
                            content.extend_from_slice(&c);
                        }
                        Some(FlowFilePart::End) => ended = true,
                    }
                }
                assert_eq!(attrs.as_ref(), Some(&ff.attributes), "piece {piece}");
                assert_eq!(announced, Some(ff.content.len() as u64));
                assert_eq!(content, ff.content);
                assert_eq!(crc.value(), expected.value(), "piece {piece}");
                assert!(d.is_idle());
                // The next FlowFile decodes normally from what is left.
                for c in chunks {
                    buf.extend_from_slice(c);
                }
                assert_eq!(d.decode(&mut buf), Ok(Some(f1())));
            }
        }
        // Bounds apply in streaming mode too.
        let mut d = FlowFileDecoder::new(Limits {
            max_content_len: 4,
            ..Limits::default()
        });
        assert!(matches!(
            d.decode_part(&mut BytesMut::from(TV4), &mut TransactionChecksum::new()),
            Err(DecodeError::LimitExceeded { .. })
        ));
    }

    #[test]
    fn builder_and_lookup() {
        let f = f1().with_attribute("path", "/x");
        assert_eq!(f.attributes.len(), 2);
        assert_eq!(f.attribute("path"), Some("/x"));
        assert_eq!(f.attribute("nope"), None);
        assert!(format!("{f:?}").contains("content_len: 5"));
    }

    #[test]
    fn invalid_inputs_are_typed() {
        let mut d = FlowFileDecoder::default();
        // Attribute count over NiFi's 25000.
        let mut b = BytesMut::from(&25_001i32.to_be_bytes()[..]);
        assert!(matches!(
            d.decode(&mut b),
            Err(DecodeError::LimitExceeded {
                field: "attribute count",
                ..
            })
        ));
        // Negative key length.
        let mut b = BytesMut::from(&b"\x00\x00\x00\x01\xff\xff\xff\xfe"[..]);
        assert!(matches!(
            d.decode(&mut b),
            Err(DecodeError::Negative {
                field: "attribute key",
                ..
            })
        ));
        // Invalid UTF-8 key.
        let mut b = BytesMut::from(&b"\x00\x00\x00\x01\x00\x00\x00\x01\xff"[..]);
        assert_eq!(
            d.decode(&mut b),
            Err(DecodeError::InvalidUtf8 {
                field: "attribute key"
            })
        );
        // Content over the limit.
        let mut d = FlowFileDecoder::new(Limits {
            max_content_len: 4,
            ..Limits::default()
        });
        let mut b = BytesMut::from(TV4);
        assert!(matches!(
            d.decode(&mut b),
            Err(DecodeError::LimitExceeded {
                field: "content length",
                len: 5,
                max: 4
            })
        ));
        // Negative content length.
        let mut d = FlowFileDecoder::default();
        let mut b = BytesMut::from(&b"\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff"[..]);
        assert!(matches!(
            d.decode(&mut b),
            Err(DecodeError::Negative {
                field: "content length",
                ..
            })
        ));
    }

    #[test]
    fn truncation_reported_at_eof() {
        for cut in 1..TV4.len() {
            let mut d = FlowFileDecoder::default();
            let mut b = BytesMut::from(&TV4[..cut]);
            assert_eq!(d.decode(&mut b), Ok(None));
            assert!(matches!(
                d.decode_eof(&mut b),
                Err(DecodeError::Truncated { .. })
            ));
        }
        let mut d = FlowFileDecoder::default();
        assert_eq!(d.decode_eof(&mut BytesMut::new()), Ok(None));
    }

    #[test]
    fn empty_flowfile_is_valid() {
        let f = FlowFile::default();
        let mut b = BytesMut::new();
        encode(&f, &mut b);
        assert_eq!(&b[..], &[0u8; 12]);
        assert_eq!(FlowFileDecoder::default().decode(&mut b), Ok(Some(f)));
    }
}
