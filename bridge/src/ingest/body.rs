//! Streaming HTTP request bodies: one reader for the JSON and ListenHTTP paths that enforces
//! `max_body_bytes`, gunzips on the fly, and tells a clean end from a connection cut off mid-way.

use std::io::Write;
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::limits::ByteLimit;

/// Compressed bytes fed to the gunzipper at a time: bounds one decompressed piece to about
/// 1000 × this (deflate's best ratio), whatever the compression.
const GZ_SLICE: usize = 4 << 10;

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// More than `max_body_bytes` (the size read so far).
    TooLarge(u64),
    /// The connection ended or failed before the body did.
    Cut(String),
    /// The gzip stream is invalid or incomplete.
    Gzip(String),
}

/// Reads a request body piece by piece.
pub(crate) struct BodyReader {
    stream: BodyDataStream,
    limit: ByteLimit,
    /// Bytes received from the wire.
    raw: u64,
    /// Bytes produced (after gunzip).
    decoded: u64,
    gunzip: Option<flate2::write::MultiGzDecoder<Vec<u8>>>,
    pending: Bytes,
    ended: bool,
    /// Most time between two reads of the body (`limits.body_timeout_ms`); `None`: no limit.
    idle: Option<Duration>,
}

impl std::fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyReader")
            .field("raw", &self.raw)
            .field("decoded", &self.decoded)
            .finish_non_exhaustive()
    }
}

impl BodyReader {
    pub(crate) fn new(body: Body, limit: ByteLimit, gzip: bool) -> Self {
        Self {
            stream: body.into_data_stream(),
            limit,
            raw: 0,
            decoded: 0,
            gunzip: gzip.then(|| flate2::write::MultiGzDecoder::new(Vec::new())),
            pending: Bytes::new(),
            ended: false,
            idle: None,
        }
    }

    /// Cuts the body ([`BodyError::Cut`]) when no bytes arrive for `idle` (a slow-body client).
    pub(crate) fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = Some(idle);
        self
    }

    /// Bytes received so far (before gunzip).
    pub(crate) fn received(&self) -> u64 {
        self.raw
    }

    fn produce(&mut self, b: Bytes) -> Result<Option<Bytes>, BodyError> {
        self.decoded += b.len() as u64;
        if self.limit.exceeded_by(self.decoded) {
            return Err(BodyError::TooLarge(self.decoded));
        }
        Ok(Some(b))
    }

    /// The next piece of the (gunzipped) body; `Ok(None)` once it ended cleanly.
    ///
    /// # Cancel safety
    /// Not cancel safe: a piece being decompressed is lost if the future is dropped.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, BodyError> {
        loop {
            if let Some(gz) = &mut self.gunzip
                && !self.pending.is_empty()
            {
                let slice = self.pending.split_to(self.pending.len().min(GZ_SLICE));
                gz.write_all(&slice)
                    .map_err(|e| BodyError::Gzip(e.to_string()))?;
                let out = std::mem::take(gz.get_mut());
                if !out.is_empty() {
                    return self.produce(Bytes::from(out));
                }
                continue;
            }
            if self.ended {
                return Ok(None);
            }
            let next = match self.idle {
                Some(idle) => match tokio::time::timeout(idle, self.stream.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        return Err(BodyError::Cut(format!(
                            "no body bytes for {} ms (body_timeout_ms)",
                            idle.as_millis()
                        )));
                    }
                },
                None => self.stream.next().await,
            };
            match next {
                None => {
                    self.ended = true;
                    if let Some(gz) = &mut self.gunzip {
                        gz.try_finish()
                            .map_err(|e| BodyError::Gzip(format!("incomplete gzip stream: {e}")))?;
                        let out = std::mem::take(gz.get_mut());
                        if !out.is_empty() {
                            return self.produce(Bytes::from(out));
                        }
                    }
                    return Ok(None);
                }
                Some(Err(e)) => return Err(BodyError::Cut(error_chain(&e))),
                Some(Ok(b)) => {
                    self.raw += b.len() as u64;
                    if self.limit.exceeded_by(self.raw) {
                        return Err(BodyError::TooLarge(self.raw));
                    }
                    if self.gunzip.is_some() {
                        self.pending = b;
                    } else if !b.is_empty() {
                        return self.produce(b);
                    }
                }
            }
        }
    }

    /// Reads and drops the rest of the body (at most `max` more bytes, for at most `time`), so the
    /// client reads our answer instead of a broken pipe; `true` if the body ended.
    pub(crate) async fn discard(&mut self, max: u64, time: Duration) -> bool {
        if self.ended {
            return true;
        }
        let until = self.raw.saturating_add(max);
        let drain = async {
            while let Some(Ok(b)) = self.stream.next().await {
                self.raw += b.len() as u64;
                if self.raw > until {
                    return false;
                }
            }
            true
        };
        let ended = tokio::time::timeout(time, drain).await.unwrap_or(false);
        self.ended = ended;
        ended
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        src = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn body(pieces: Vec<Result<Bytes, std::io::Error>>) -> Body {
        Body::from_stream(futures_util::stream::iter(pieces))
    }

    async fn read_all(r: &mut BodyReader) -> Result<Vec<u8>, BodyError> {
        let mut out = Vec::new();
        while let Some(b) = r.next().await? {
            out.extend_from_slice(&b);
        }
        Ok(out)
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[tokio::test]
    async fn plain_gzip_limit_and_cut() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
        let mut r = BodyReader::new(
            body(vec![Ok(Bytes::from(data.clone()))]),
            ByteLimit::Unlimited,
            false,
        );
        assert_eq!(read_all(&mut r).await.unwrap(), data);
        assert!(r.ended);

        // Two gzip members, split at odd places; decompressed pieces stay small.
        let mut z = gz(&data);
        z.extend(gz(b"tail"));
        let pieces = z
            .chunks(3001)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut r = BodyReader::new(body(pieces), ByteLimit::Unlimited, true);
        let mut want = data.clone();
        want.extend_from_slice(b"tail");
        assert_eq!(read_all(&mut r).await.unwrap(), want);

        let truncated = z[..z.len() / 2].to_vec();
        let mut r = BodyReader::new(
            body(vec![Ok(Bytes::from(truncated))]),
            ByteLimit::Unlimited,
            true,
        );
        assert!(matches!(read_all(&mut r).await, Err(BodyError::Gzip(_))));

        let mut r = BodyReader::new(
            body(vec![Ok(Bytes::from(gz(&data)))]),
            ByteLimit::Bytes(1000),
            true,
        );
        assert!(matches!(
            read_all(&mut r).await,
            Err(BodyError::TooLarge(_))
        ));

        let mut r = BodyReader::new(
            body(vec![
                Ok(Bytes::from_static(b"abc")),
                Err(std::io::Error::other("connection reset")),
            ]),
            ByteLimit::Unlimited,
            false,
        );
        assert!(matches!(read_all(&mut r).await, Err(BodyError::Cut(_))));
    }
}
