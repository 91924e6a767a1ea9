//! The `SYNC`-chunked zlib envelope used when the handshake sets `GZIP=true` (docs/site-to-site.md §4.2).
//!
//! Despite the property name this is zlib (RFC 1950), level 1, in NiFi's own framing, applied
//! to each FlowFile separately:
//!
//! ```text
//! chunk  := "SYNC" i32 uncompressedLen i32 compressedLen <complete zlib stream>
//! stream := chunk { 0x01 chunk } 0x00
//! ```
//!
//! Each chunk holds at most 64 KiB of input. Compressed bytes differ between zlib
//! implementations; only the decompressed bytes are comparable. The transaction CRC covers
//! the uncompressed FlowFile bytes.

use bytes::{Buf, BufMut, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::DecodeError;

/// The 4 bytes that start every chunk.
pub const SYNC: [u8; 4] = *b"SYNC";

/// Uncompressed bytes per chunk written by NiFi's `CompressionOutputStream` (and by us).
pub const CHUNK_SIZE: usize = 64 * 1024;

const MORE: u8 = 0x01;
const END: u8 = 0x00;
const CHUNK_HEADER_LEN: usize = 12;

/// Streaming writer of the envelope.
///
/// Call [`write`](Self::write) any number of times, then [`finish`](Self::finish). An empty
/// stream is written as one empty chunk: NiFi's reader needs a `SYNC` chunk first (NiFi's own
/// writer would emit a bare `00`, which its reader rejects; a FlowFile is never empty anyway).
pub struct Compressor {
    z: Compress,
    pending: Vec<u8>,
    scratch: Vec<u8>,
    wrote_chunk: bool,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("pending", &self.pending.len())
            .field("wrote_chunk", &self.wrote_chunk)
            .finish_non_exhaustive()
    }
}

impl Default for Compressor {
    fn default() -> Self {
        Self::new()
    }
}

impl Compressor {
    /// A writer at NiFi's level (1).
    pub fn new() -> Self {
        Self {
            z: Compress::new(Compression::new(1), true),
            pending: Vec::new(),
            scratch: Vec::new(),
            wrote_chunk: false,
        }
    }

    /// Compresses `data`, appending every completed 64 KiB chunk to `out`.
    pub fn write(&mut self, mut data: &[u8], out: &mut BytesMut) {
        if !self.pending.is_empty() {
            let n = (CHUNK_SIZE - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.pending.len() == CHUNK_SIZE {
                let p = std::mem::take(&mut self.pending);
                self.chunk(&p, out);
                self.pending = p;
                self.pending.clear();
            }
        }
        // Full chunks straight from the caller's slice: no copy into `pending`.
        while data.len() >= CHUNK_SIZE {
            self.chunk(&data[..CHUNK_SIZE], out);
            data = &data[CHUNK_SIZE..];
        }
        self.pending.extend_from_slice(data);
    }

    /// Ends the stream: writes the buffered remainder as a last chunk, then `00`.
    pub fn finish(mut self, out: &mut BytesMut) {
        if !self.pending.is_empty() || !self.wrote_chunk {
            let p = std::mem::take(&mut self.pending);
            self.chunk(&p, out);
        }
        out.put_u8(END);
    }

    fn chunk(&mut self, data: &[u8], out: &mut BytesMut) {
        self.z.reset();
        let z = &mut self.z;
        let tmp = &mut self.scratch;
        tmp.clear();
        tmp.reserve(data.len() + data.len() / 16 + 64);
        loop {
            let consumed = z.total_in() as usize;
            let status = z
                .compress_vec(&data[consumed..], tmp, FlushCompress::Finish)
                .expect("deflate of an in-memory buffer cannot fail");
            if status == Status::StreamEnd {
                break;
            }
            tmp.reserve(tmp.capacity().max(64));
        }
        if self.wrote_chunk {
            out.put_u8(MORE);
        }
        self.wrote_chunk = true;
        out.reserve(CHUNK_HEADER_LEN + tmp.len());
        out.put_slice(&SYNC);
        out.put_i32(data.len() as i32);
        out.put_i32(tmp.len() as i32);
        out.put_slice(tmp);
    }
}

/// Compresses `data` into one complete envelope appended to `out`.
pub fn compress(data: &[u8], out: &mut BytesMut) {
    let mut c = Compressor::new();
    c.write(data, out);
    c.finish(out);
}

/// Bounds applied by [`Decompressor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecompressLimits {
    /// Maximum uncompressed length of one chunk. Default 1 MiB (NiFi writes 64 KiB).
    pub max_chunk_len: usize,
    /// Maximum compressed length of one chunk. Default 1 MiB + 1 KiB. NiFi writes up to
    /// about 65562 bytes for 64 KiB of incompressible data, so this must stay above 64 KiB.
    pub max_compressed_chunk_len: usize,
    /// Maximum uncompressed length of one whole envelope. Default 256 MiB + 1 MiB (a
    /// FlowFile at the default content limit plus its header).
    pub max_total_len: u64,
}

impl Default for DecompressLimits {
    fn default() -> Self {
        Self {
            max_chunk_len: 1024 * 1024,
            max_compressed_chunk_len: 1024 * 1024 + 1024,
            max_total_len: 257 * 1024 * 1024,
        }
    }
}

/// Progress reported by [`Decompressor::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecompressStatus {
    /// All complete chunks were inflated; more input is needed to reach the end marker.
    NeedMore,
    /// The `00` end marker was consumed; the decompressor is ready for the next envelope.
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DState {
    /// Expecting `SYNC` (first chunk or after `01`).
    Chunk,
    /// Expecting `00` or `01` after a chunk.
    Continuation,
}

/// What one step of the decompressor did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepResult {
    NeedMore,
    Chunk,
    Finished,
}

/// Incremental reader of the envelope.
pub struct Decompressor {
    limits: DecompressLimits,
    state: DState,
    z: Decompress,
    /// Uncompressed bytes produced by the current envelope.
    total: u64,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("limits", &self.limits)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Default for Decompressor {
    fn default() -> Self {
        Self::new(DecompressLimits::default())
    }
}

impl Decompressor {
    /// A decompressor applying `limits`.
    pub fn new(limits: DecompressLimits) -> Self {
        Self {
            limits,
            state: DState::Chunk,
            z: Decompress::new(true),
            total: 0,
        }
    }

    /// Whether the decompressor sits between envelopes.
    pub fn is_idle(&self) -> bool {
        self.state == DState::Chunk && self.z.total_in() == 0
    }

    /// Consumes every complete chunk in `src`, appending the inflated bytes to `dst`.
    /// Bytes after the end marker stay in `src`.
    ///
    /// # Errors
    /// [`DecodeError::BadMagic`] (no `SYNC`), [`DecodeError::LimitExceeded`] /
    /// [`DecodeError::Negative`] (chunk lengths), [`DecodeError::Zlib`] (corrupt data),
    /// [`DecodeError::ChunkLengthMismatch`], [`DecodeError::TrailingBytes`] (bytes after the
    /// zlib stream inside a chunk), [`DecodeError::BadChunkContinuation`].
    pub fn decode(
        &mut self,
        src: &mut BytesMut,
        dst: &mut BytesMut,
    ) -> Result<DecompressStatus, DecodeError> {
        loop {
            match self.step(src, dst)? {
                StepResult::NeedMore => return Ok(DecompressStatus::NeedMore),
                StepResult::Chunk => {}
                StepResult::Finished => return Ok(DecompressStatus::Finished),
            }
        }
    }

    /// Inflates at most one chunk (or reads one continuation byte).
    pub(crate) fn step(
        &mut self,
        src: &mut BytesMut,
        dst: &mut BytesMut,
    ) -> Result<StepResult, DecodeError> {
        let r = self.step_inner(src, dst);
        if r.is_err() {
            self.state = DState::Chunk;
            self.total = 0;
        }
        r
    }

    fn step_inner(
        &mut self,
        src: &mut BytesMut,
        dst: &mut BytesMut,
    ) -> Result<StepResult, DecodeError> {
        match self.state {
            DState::Continuation => {
                let Some(&b) = src.first() else {
                    return Ok(StepResult::NeedMore);
                };
                src.advance(1);
                match b {
                    END => {
                        self.state = DState::Chunk;
                        self.total = 0;
                        self.z.reset(true);
                        Ok(StepResult::Finished)
                    }
                    MORE => {
                        self.state = DState::Chunk;
                        Ok(StepResult::Chunk)
                    }
                    other => Err(DecodeError::BadChunkContinuation(other)),
                }
            }
            DState::Chunk => {
                if src.len() < 4 {
                    // Fail fast on a wrong prefix instead of waiting for 12 bytes.
                    if !SYNC.starts_with(src) {
                        return Err(DecodeError::BadMagic {
                            expected: &SYNC,
                            found: src.to_vec(),
                        });
                    }
                    return Ok(StepResult::NeedMore);
                }
                if src[..4] != SYNC {
                    return Err(DecodeError::BadMagic {
                        expected: &SYNC,
                        found: src[..4].to_vec(),
                    });
                }
                if src.len() < CHUNK_HEADER_LEN {
                    return Ok(StepResult::NeedMore);
                }
                let raw_len = i32::from_be_bytes([src[4], src[5], src[6], src[7]]);
                let comp_len = i32::from_be_bytes([src[8], src[9], src[10], src[11]]);
                let raw_len = bounded(
                    "chunk uncompressed length",
                    raw_len,
                    self.limits.max_chunk_len,
                )?;
                let comp_len = bounded(
                    "chunk compressed length",
                    comp_len,
                    self.limits.max_compressed_chunk_len,
                )?;
                let total = self.total + raw_len as u64;
                if total > self.limits.max_total_len {
                    return Err(DecodeError::LimitExceeded {
                        field: "envelope uncompressed length",
                        len: total,
                        max: self.limits.max_total_len,
                    });
                }
                if src.len() < CHUNK_HEADER_LEN + comp_len {
                    src.reserve(CHUNK_HEADER_LEN + comp_len - src.len());
                    return Ok(StepResult::NeedMore);
                }
                src.advance(CHUNK_HEADER_LEN);
                let compressed = src.split_to(comp_len);
                self.inflate(&compressed, raw_len, dst)?;
                self.total = total;
                self.state = DState::Continuation;
                Ok(StepResult::Chunk)
            }
        }
    }

    fn inflate(
        &mut self,
        input: &[u8],
        raw_len: usize,
        dst: &mut BytesMut,
    ) -> Result<(), DecodeError> {
        self.z.reset(true);
        // One spare byte detects a stream that inflates to more than announced.
        let mut out = Vec::with_capacity(raw_len + 1);
        let status = self
            .z
            .decompress_vec(input, &mut out, FlushDecompress::Finish)
            .map_err(|e| DecodeError::Zlib(e.to_string()))?;
        if out.len() != raw_len {
            return Err(DecodeError::ChunkLengthMismatch {
                expected: raw_len as u64,
                actual: out.len() as u64,
            });
        }
        if status != Status::StreamEnd {
            return Err(DecodeError::Zlib(
                "zlib stream does not end inside its chunk".into(),
            ));
        }
        let consumed = self.z.total_in() as usize;
        if consumed != input.len() {
            return Err(DecodeError::TrailingBytes(input.len() - consumed));
        }
        dst.extend_from_slice(&out);
        Ok(())
    }
}

fn bounded(field: &'static str, v: i32, max: usize) -> Result<usize, DecodeError> {
    if v < 0 {
        return Err(DecodeError::Negative {
            field,
            value: v.into(),
        });
    }
    let v = v as usize;
    if v > max {
        return Err(DecodeError::LimitExceeded {
            field,
            len: v as u64,
            max: max as u64,
        });
    }
    Ok(v)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::codec::flowfile::{FlowFile, encode};

    /// TV9: F1 (TV4) in the envelope, as NiFi's Java zlib writes it.
    pub(crate) const TV9: &[u8] = b"SYNC\x00\x00\x00\x38\x00\x00\x00\x35\x78\x01\x63\x60\
\x60\x60\x62\x60\x60\xe0\x48\xcb\xcc\x49\xcd\x4b\xcc\x4d\x05\xb2\
\x39\x33\x52\x73\x72\xf2\xf5\x4a\x2a\x4a\x80\x1c\x96\x82\xc4\x92\
\x0c\x20\xcd\xa4\xa7\x0f\x24\x41\x80\x15\x2c\x0d\x00\x38\x70\x0b\
\x20\x00";

    fn f1() -> FlowFile {
        FlowFile::new(&b"hello"[..])
            .with_attribute("filename", "hello.txt")
            .with_attribute("path", "./")
    }

    fn tv4() -> Vec<u8> {
        let mut b = BytesMut::new();
        encode(&f1(), &mut b);
        b.to_vec()
    }

    #[test]
    fn tv9_decompresses_to_tv4() {
        assert_eq!(TV9.len(), 66);
        let mut src = BytesMut::from(TV9);
        src.put_slice(b"RC\x0b");
        let mut dst = BytesMut::new();
        let mut d = Decompressor::default();
        assert_eq!(d.decode(&mut src, &mut dst), Ok(DecompressStatus::Finished));
        assert_eq!(&dst[..], &tv4()[..]);
        assert_eq!(&src[..], b"RC\x0b");
    }

    #[test]
    fn our_envelope_round_trips_and_frames_like_nifi() {
        let mut out = BytesMut::new();
        compress(&tv4(), &mut out);
        assert_eq!(&out[..4], b"SYNC");
        assert_eq!(&out[4..8], &56i32.to_be_bytes());
        assert_eq!(&out[12..14], &[0x78, 0x01], "zlib header of level 1");
        assert_eq!(out[out.len() - 1], 0);
        let mut dst = BytesMut::new();
        assert_eq!(
            Decompressor::default().decode(&mut out, &mut dst),
            Ok(DecompressStatus::Finished)
        );
        assert_eq!(&dst[..], &tv4()[..]);
    }

    #[test]
    fn multi_chunk() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut out = BytesMut::new();
        let mut c = Compressor::new();
        // Odd write sizes exercise the pending buffer.
        for part in data.chunks(10_007) {
            c.write(part, &mut out);
        }
        c.finish(&mut out);
        // 200000 bytes = 3 full chunks + 1 partial: three 01 separators.
        let mut dst = BytesMut::new();
        let mut d = Decompressor::default();
        assert_eq!(d.decode(&mut out, &mut dst), Ok(DecompressStatus::Finished));
        assert_eq!(&dst[..], &data[..]);
        assert!(out.is_empty());
    }

    #[test]
    fn invalid_envelopes_are_typed() {
        let mut dst = BytesMut::new();
        let mut d = Decompressor::default();
        assert!(matches!(
            d.decode(&mut BytesMut::from(&b"SYNX"[..]), &mut dst),
            Err(DecodeError::BadMagic { .. })
        ));
        assert!(matches!(
            d.decode(&mut BytesMut::from(&b"\x00"[..]), &mut dst),
            Err(DecodeError::BadMagic { .. })
        ));
        // Oversize chunk lengths.
        let mut bad = TV9.to_vec();
        bad[4..8].copy_from_slice(&(2_000_000i32).to_be_bytes());
        assert!(matches!(
            d.decode(&mut BytesMut::from(&bad[..]), &mut dst),
            Err(DecodeError::LimitExceeded { .. })
        ));
        let mut bad = TV9.to_vec();
        bad[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(matches!(
            d.decode(&mut BytesMut::from(&bad[..]), &mut dst),
            Err(DecodeError::Negative { .. })
        ));
        // Announced length disagrees with the zlib stream.
        let mut bad = TV9.to_vec();
        bad[7] = 0x37;
        assert!(matches!(
            d.decode(&mut BytesMut::from(&bad[..]), &mut dst),
            Err(DecodeError::ChunkLengthMismatch { expected: 55, .. })
        ));
        // Corrupt zlib data.
        let mut bad = TV9.to_vec();
        bad[12] = 0x00;
        assert!(matches!(
            d.decode(&mut BytesMut::from(&bad[..]), &mut dst),
            Err(DecodeError::Zlib(_))
        ));
        // Bad continuation byte.
        let mut bad = TV9.to_vec();
        *bad.last_mut().unwrap() = 0x02;
        assert_eq!(
            d.decode(&mut BytesMut::from(&bad[..]), &mut dst),
            Err(DecodeError::BadChunkContinuation(2))
        );
    }

    #[test]
    fn envelope_total_is_bounded() {
        let data = vec![7u8; 3 * CHUNK_SIZE];
        let mut env = BytesMut::new();
        compress(&data, &mut env);
        let mut d = Decompressor::new(DecompressLimits {
            max_total_len: 2 * CHUNK_SIZE as u64,
            ..DecompressLimits::default()
        });
        let mut dst = BytesMut::new();
        assert!(matches!(
            d.decode(&mut env, &mut dst),
            Err(DecodeError::LimitExceeded {
                field: "envelope uncompressed length",
                ..
            })
        ));
        assert_eq!(dst.len(), 2 * CHUNK_SIZE);
    }
}
