//! The FlowFile stream of a transaction, chunk by chunk: the one place that turns FlowFiles
//! into transaction bytes and back (docs/site-to-site.md §4.1, §4.2, §5.3).
//!
//! Both transports carry the same stream inside a transaction. Each FlowFile is its
//! `StandardFlowFileCodec` v1 bytes (attributes and content length, then the content), and
//! with compression on, each FlowFile is wrapped on its own in the `SYNC`-chunked zlib
//! envelope. One CRC32 covers the uncompressed codec bytes of every FlowFile in order. RAW puts
//! `CONTINUE`/`FINISH` markers between FlowFiles (the [`raw`](crate::raw) session writes and
//! reads those); HTTP puts FlowFiles back to back in one request or response body.
//!
//! ```text
//!  FlowFileWriter: start(attributes, len) ─ content(chunk)* ─ finish()   ─► bytes (+ CRC)
//!  FlowFileReader: bytes ─► next_part(): Header ─ Content(chunk)* ─ End  (+ CRC)
//! ```
//!
//! Neither side ever needs a whole FlowFile: the writer takes content in chunks of any size
//! and passes uncompressed content through without copying; the reader hands content out as
//! it arrives (and inflates one envelope chunk, at most [`CHUNK_SIZE`](crate::codec::compression::CHUNK_SIZE)
//! from NiFi, at a time). Memory is therefore bounded by the chunk sizes the caller picks,
//! whatever the content length. [`FlowFileReader::next_flowfile`] and
//! [`FlowFileWriter::write_flowfile`] are conveniences for whole in-memory FlowFiles.
//!
//! # Example: a round trip, in pieces
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use s2s_proto::stream::{FlowFileReader, FlowFileWriter};
//! use s2s_proto::codec::flowfile::{FlowFilePart, Limits};
//!
//! let mut writer = FlowFileWriter::new(true); // compressed
//! let mut wire = BytesMut::new();
//! let attributes = vec![("filename".to_string(), "big.bin".to_string())];
//! writer.start(&attributes, 6, &mut wire)?;
//! for piece in [&b"abc"[..], &b"def"[..]] {
//!     // Uncompressed, the content comes back to be written after `wire`; compressed, it
//!     // is deflated into `wire`.
//!     assert!(writer.content(Bytes::from_static(piece), &mut wire)?.is_none());
//! }
//! writer.finish(&mut wire)?;
//!
//! let mut reader = FlowFileReader::new(true, Limits::default());
//! let mut content = Vec::new();
//! loop {
//!     match reader.next_part(&mut wire)? {
//!         Some(FlowFilePart::Header { attributes: a, content_len }) => {
//!             assert_eq!((a, content_len), (attributes.clone(), 6));
//!         }
//!         Some(FlowFilePart::Content(chunk)) => content.extend_from_slice(&chunk),
//!         Some(FlowFilePart::End) => break,
//!         Some(_) => unreachable!(),
//!         None => panic!("the whole stream is in `wire`"),
//!     }
//! }
//! assert_eq!(content, b"abcdef");
//! assert_eq!(reader.checksum(), writer.checksum());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use bytes::{Bytes, BytesMut};

use crate::codec::DecodeError;
use crate::codec::checksum::TransactionChecksum;
use crate::codec::compression::{Compressor, DecompressLimits, Decompressor, StepResult};
use crate::codec::flowfile::{
    CONTENT_RESERVE_CAP, FlowFile, FlowFileDecoder, FlowFilePart, Limits, encode_header_parts,
};

/// A misuse of [`FlowFileWriter`], or content that does not match its declared length.
///
/// After any of these the transaction's byte stream is unusable: cancel it (NiFi then commits
/// nothing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The content source yielded more bytes than the length declared in the header.
    #[error("content is longer than its declared length of {declared} bytes")]
    ContentTooLong {
        /// The declared content length.
        declared: u64,
    },
    /// The FlowFile was finished before its declared length was reached.
    #[error("content ended after {written} of its declared {declared} bytes")]
    ContentTooShort {
        /// The declared content length.
        declared: u64,
        /// Bytes actually written.
        written: u64,
    },
    /// An attribute, the attribute count or the content length does not fit the wire format
    /// (Java `int` lengths, `long` content length).
    #[error("{0} does not fit the FlowFile codec")]
    TooLarge(&'static str),
    /// Calls out of order (content without `start`, `start` while a FlowFile is open).
    #[error("invalid call: {0}")]
    InvalidState(&'static str),
}

/// Encodes the FlowFiles of one transaction, chunk by chunk, and keeps its CRC.
///
/// # Call order
/// Per FlowFile: [`start`](Self::start), [`content`](Self::content) any number of times (the
/// chunks must add up to the declared length), [`finish`](Self::finish). Bytes are appended to
/// the caller's `out`; without compression, `content` returns the chunk itself, to be written
/// right after what `out` holds (no copy).
#[derive(Debug, Default)]
pub struct FlowFileWriter {
    compression: bool,
    crc: TransactionChecksum,
    flowfiles: u64,
    bytes: u64,
    open: Option<Open>,
}

#[derive(Debug)]
struct Open {
    declared: u64,
    written: u64,
    /// The FlowFile's envelope, when compression is on.
    z: Option<Box<Compressor>>,
}

impl FlowFileWriter {
    /// A writer for one transaction; `compression` must match what the handshake announced.
    pub fn new(compression: bool) -> Self {
        Self {
            compression,
            ..Self::default()
        }
    }

    /// Whether compression is on.
    pub fn compression(&self) -> bool {
        self.compression
    }

    /// Whether a FlowFile is started and not yet finished.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Starts a FlowFile: appends its header (attributes, `content_len`) to `out`, through the
    /// envelope when compression is on.
    ///
    /// # Errors
    /// [`StreamError::InvalidState`] while a FlowFile is open, [`StreamError::TooLarge`] for
    /// lengths the codec cannot carry (nothing is written then).
    pub fn start(
        &mut self,
        attributes: &[(String, String)],
        content_len: u64,
        out: &mut BytesMut,
    ) -> Result<(), StreamError> {
        if self.open.is_some() {
            return Err(StreamError::InvalidState(
                "start() while a FlowFile is still open",
            ));
        }
        check_encodable(attributes, content_len)?;
        let mut z = self.compression.then(|| Box::new(Compressor::new()));
        match z.as_mut() {
            Some(z) => {
                let mut header = BytesMut::new();
                encode_header_parts(attributes, content_len, &mut header);
                self.crc.update(&header);
                z.write(&header, out);
            }
            None => {
                let at = out.len();
                encode_header_parts(attributes, content_len, out);
                self.crc.update(&out[at..]);
            }
        }
        self.flowfiles += 1;
        self.open = Some(Open {
            declared: content_len,
            written: 0,
            z,
        });
        Ok(())
    }

    /// Adds the next piece of content. Without compression it is returned (never copied), to
    /// be written after the bytes already in `out`; with compression its completed envelope
    /// chunks are appended to `out` and `None` is returned. Empty chunks are fine.
    ///
    /// # Errors
    /// [`StreamError::ContentTooLong`] past the declared length (nothing of `chunk` is
    /// encoded), [`StreamError::InvalidState`] outside a FlowFile.
    pub fn content(
        &mut self,
        chunk: Bytes,
        out: &mut BytesMut,
    ) -> Result<Option<Bytes>, StreamError> {
        let Some(open) = self.open.as_mut() else {
            return Err(StreamError::InvalidState("content() outside a FlowFile"));
        };
        let len = chunk.len() as u64;
        if len > open.declared - open.written {
            return Err(StreamError::ContentTooLong {
                declared: open.declared,
            });
        }
        open.written += len;
        self.bytes += len;
        self.crc.update(&chunk);
        match open.z.as_mut() {
            Some(z) => {
                z.write(&chunk, out);
                Ok(None)
            }
            None => Ok((!chunk.is_empty()).then_some(chunk)),
        }
    }

    /// Ends the FlowFile (and its envelope).
    ///
    /// # Errors
    /// [`StreamError::ContentTooShort`] when less than the declared length was written (the
    /// stream is then unusable), [`StreamError::InvalidState`] outside a FlowFile.
    pub fn finish(&mut self, out: &mut BytesMut) -> Result<(), StreamError> {
        let Some(open) = self.open.take() else {
            return Err(StreamError::InvalidState("finish() outside a FlowFile"));
        };
        if open.written != open.declared {
            return Err(StreamError::ContentTooShort {
                declared: open.declared,
                written: open.written,
            });
        }
        if let Some(z) = open.z {
            z.finish(out);
        }
        Ok(())
    }

    /// A whole in-memory FlowFile: [`start`](Self::start), [`content`](Self::content),
    /// [`finish`](Self::finish). Write `out`, then the returned content (uncompressed only).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn write_flowfile(
        &mut self,
        flowfile: &FlowFile,
        out: &mut BytesMut,
    ) -> Result<Option<Bytes>, StreamError> {
        self.start(&flowfile.attributes, flowfile.content.len() as u64, out)?;
        let content = self.content(flowfile.content.clone(), out)?;
        self.finish(out)?;
        Ok(content)
    }

    /// FlowFiles started so far.
    pub fn flowfiles(&self) -> u64 {
        self.flowfiles
    }

    /// Content bytes written so far.
    pub fn content_bytes(&self) -> u64 {
        self.bytes
    }

    /// The transaction CRC32 so far (what NiFi must confirm).
    pub fn checksum(&self) -> u32 {
        self.crc.value()
    }
}

fn check_encodable(attributes: &[(String, String)], content_len: u64) -> Result<(), StreamError> {
    let int = |n: usize| i32::try_from(n).is_ok();
    if !int(attributes.len()) {
        return Err(StreamError::TooLarge("the attribute count"));
    }
    if attributes
        .iter()
        .any(|(k, v)| !int(k.len()) || !int(v.len()))
    {
        return Err(StreamError::TooLarge("an attribute"));
    }
    if i64::try_from(content_len).is_err() {
        return Err(StreamError::TooLarge("the content length"));
    }
    Ok(())
}

/// Decodes the FlowFiles of one transaction, chunk by chunk, and keeps its CRC.
///
/// Feed it the stream's bytes as they arrive (RAW: only the bytes between the markers).
/// [`next_part`](Self::next_part) yields each FlowFile's [`FlowFilePart::Header`], its content
/// as [`FlowFilePart::Content`] chunks split off the input without copying, then
/// [`FlowFilePart::End`] once the FlowFile (and its envelope) is complete. `Ok(None)` means
/// more bytes are needed. Every length is bounded by the [`Limits`]; a compressed stream is
/// inflated one envelope chunk at a time.
#[derive(Debug)]
pub struct FlowFileReader {
    decoder: FlowFileDecoder,
    envelope: Option<Box<Envelope>>,
    crc: TransactionChecksum,
    flowfiles: u64,
    bytes: u64,
    /// A FlowFile being collected by [`next_flowfile`](Self::next_flowfile).
    whole: Option<(Vec<(String, String)>, BytesMut)>,
}

#[derive(Debug)]
struct Envelope {
    z: Decompressor,
    /// Inflated bytes not yet decoded.
    plain: BytesMut,
    /// The FlowFile inside the envelope is complete; only the end marker may follow.
    flowfile_done: bool,
}

impl FlowFileReader {
    /// A reader; `compression` must match what the handshake announced.
    pub fn new(compression: bool, limits: Limits) -> Self {
        let envelope = compression.then(|| {
            Box::new(Envelope {
                // Each inflated chunk is bounded; the total is bounded by the FlowFile limits
                // (more inflated bytes than the FlowFile holds are trailing bytes).
                z: Decompressor::new(DecompressLimits {
                    max_total_len: u64::MAX,
                    ..DecompressLimits::default()
                }),
                plain: BytesMut::new(),
                flowfile_done: false,
            })
        });
        Self {
            decoder: FlowFileDecoder::new(limits),
            envelope,
            crc: TransactionChecksum::new(),
            flowfiles: 0,
            bytes: 0,
            whole: None,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        self.decoder.limits()
    }

    /// Whether the reader sits between FlowFiles (nothing partially decoded).
    pub fn is_idle(&self) -> bool {
        self.decoder.is_idle()
            && self.whole.is_none()
            && self
                .envelope
                .as_ref()
                .is_none_or(|e| e.z.is_idle() && e.plain.is_empty() && !e.flowfile_done)
    }

    /// The next part of the stream; `Ok(None)` = more bytes needed (progress is kept).
    /// Bytes after a FlowFile's end stay in `src`.
    ///
    /// # Errors
    /// Any codec or envelope error; [`DecodeError::TrailingBytes`] when an envelope holds more
    /// than one FlowFile, [`DecodeError::Truncated`] when it ends inside one. The stream is
    /// out of sync afterwards.
    pub fn next_part(&mut self, src: &mut BytesMut) -> Result<Option<FlowFilePart>, DecodeError> {
        let part = match self.envelope.as_mut() {
            None => self.decoder.decode_part(src, &mut self.crc)?,
            Some(env) => Self::next_enveloped(env, &mut self.decoder, &mut self.crc, src)?,
        };
        match &part {
            Some(FlowFilePart::Header { .. }) => self.flowfiles += 1,
            Some(FlowFilePart::Content(c)) => self.bytes += c.len() as u64,
            _ => {}
        }
        Ok(part)
    }

    fn next_enveloped(
        env: &mut Envelope,
        decoder: &mut FlowFileDecoder,
        crc: &mut TransactionChecksum,
        src: &mut BytesMut,
    ) -> Result<Option<FlowFilePart>, DecodeError> {
        loop {
            if !env.flowfile_done {
                match decoder.decode_part(&mut env.plain, crc)? {
                    Some(FlowFilePart::End) => env.flowfile_done = true,
                    Some(part) => return Ok(Some(part)),
                    None => {}
                }
            }
            if env.flowfile_done && !env.plain.is_empty() {
                return Err(DecodeError::TrailingBytes(env.plain.len()));
            }
            match env.z.step(src, &mut env.plain)? {
                StepResult::NeedMore => return Ok(None),
                StepResult::Chunk => {}
                StepResult::Finished if env.flowfile_done => {
                    env.flowfile_done = false;
                    return Ok(Some(FlowFilePart::End));
                }
                StepResult::Finished => {
                    return Err(DecodeError::Truncated {
                        buffered: env.plain.len(),
                    });
                }
            }
        }
    }

    /// The next whole FlowFile (content collected in memory, bounded by
    /// [`Limits::max_content_len`]); `Ok(None)` = more bytes needed. Do not mix with
    /// [`next_part`](Self::next_part) within one FlowFile.
    ///
    /// # Errors
    /// As [`next_part`](Self::next_part).
    pub fn next_flowfile(&mut self, src: &mut BytesMut) -> Result<Option<FlowFile>, DecodeError> {
        if self.envelope.is_none() && self.whole.is_none() {
            // Plain: the decoder collects the content in `src` itself (one copy fewer).
            let ff = self.decoder.decode_with_checksum(src, &mut self.crc)?;
            if let Some(ff) = &ff {
                self.flowfiles += 1;
                self.bytes += ff.content.len() as u64;
            }
            return Ok(ff);
        }
        loop {
            match self.next_part(src)? {
                None => return Ok(None),
                Some(FlowFilePart::Header {
                    attributes,
                    content_len,
                }) => {
                    let reserve = usize::try_from(content_len)
                        .unwrap_or(usize::MAX)
                        .min(CONTENT_RESERVE_CAP);
                    self.whole = Some((attributes, BytesMut::with_capacity(reserve)));
                }
                Some(FlowFilePart::Content(c)) => {
                    if let Some((_, content)) = self.whole.as_mut() {
                        content.extend_from_slice(&c);
                    }
                }
                Some(FlowFilePart::End) => {
                    let (attributes, content) = self.whole.take().unwrap_or_default();
                    return Ok(Some(FlowFile {
                        attributes,
                        content: content.freeze(),
                    }));
                }
            }
        }
    }

    /// FlowFiles started so far.
    pub fn flowfiles(&self) -> u64 {
        self.flowfiles
    }

    /// Content bytes decoded so far.
    pub fn content_bytes(&self) -> u64 {
        self.bytes
    }

    /// The transaction CRC32 so far.
    pub fn checksum(&self) -> u32 {
        self.crc.value()
    }
}

/// The transaction CRC32 of `flowfiles` as one transaction (what [`FlowFileWriter`] and
/// [`FlowFileReader`] compute), without copying content.
pub fn checksum<'a>(flowfiles: impl IntoIterator<Item = &'a FlowFile>) -> u32 {
    let mut crc = TransactionChecksum::new();
    for ff in flowfiles {
        ff.add_to_checksum(&mut crc);
    }
    crc.value()
}

#[cfg(test)]
mod tests;
