//! FlowFile package v3 (`application/flowfile-v3`, spec §10) for the ListenHTTP path, unpacked
//! incrementally: a package's header is parsed as soon as it is complete and its content is passed
//! through in the pieces it arrives in, so a body of any size is never held whole.
//!
//! ```text
//! "NiFiFF3" len(attributeCount) { len(keyLen) key len(valueLen) value } i64 contentLength content
//! len(n) := n < 65535 ? u16 n : FF FF i32 n
//! ```
//! (Layout and magic as in `s2s_proto::codec::package_v3`, whose whole-package decoder buffers the
//! content and therefore does not fit here.)

use bytes::{Buf, Bytes, BytesMut};
use s2s_proto::codec::package_v3::MAGIC;

use crate::limits::Limits;

/// What the unpacker found next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// A package starts: its attributes and content length.
    Begin {
        attributes: Vec<(String, String)>,
        len: u64,
    },
    /// The next piece of the current package's content.
    Data(Bytes),
    /// The current package's content is complete.
    End,
}

/// Why a body does not unpack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnpackError {
    /// Over a configured limit (attribute count or size).
    Limit(String),
    /// Not a well-formed sequence of packages.
    Malformed(String),
}

/// Incremental unpacker of concatenated v3 packages.
#[derive(Debug)]
pub(crate) struct Unpacker {
    max_attributes: usize,
    max_attribute_bytes: usize,
    buf: BytesMut,
    /// Content bytes still to come of the current package; `None` between packages.
    left: Option<u64>,
    packages: u64,
    /// flowfile-v3 (`NiFiFF3` before every package); else flowfile-v2: the same layout without
    /// the magic, and at least one attribute per package (as NiFi's `FlowFileUnpackagerV2`).
    v3: bool,
}

impl Unpacker {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            max_attributes: limits.max_attributes,
            max_attribute_bytes: limits.max_attribute_bytes,
            buf: BytesMut::new(),
            left: None,
            packages: 0,
            v3: true,
        }
    }

    /// An unpacker of flowfile-v2 packages (`application/flowfile-v2`).
    pub(crate) fn v2(limits: &Limits) -> Self {
        Self {
            v3: false,
            ..Self::new(limits)
        }
    }

    /// The format's name for error messages.
    pub(crate) fn format(&self) -> &'static str {
        if self.v3 {
            "flowfile-v3"
        } else {
            "flowfile-v2"
        }
    }

    /// Adds received bytes.
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next item, `Ok(None)` when more bytes are needed.
    pub(crate) fn next(&mut self) -> Result<Option<Item>, UnpackError> {
        match self.left {
            Some(0) => {
                self.left = None;
                Ok(Some(Item::End))
            }
            Some(left) => {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let n = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                self.left = Some(left - n as u64);
                Ok(Some(Item::Data(self.buf.split_to(n).freeze())))
            }
            None => {
                let at = self.packages;
                let Some((used, attributes, len)) = self.header().map_err(|e| match e {
                    UnpackError::Limit(m) => UnpackError::Limit(format!("package {at}: {m}")),
                    UnpackError::Malformed(m) => {
                        UnpackError::Malformed(format!("package {at}: {m}"))
                    }
                })?
                else {
                    return Ok(None);
                };
                self.buf.advance(used);
                self.left = Some(len);
                self.packages += 1;
                Ok(Some(Item::Begin { attributes, len }))
            }
        }
    }

    /// Checks that the body ended at a package boundary.
    pub(crate) fn finish(&self) -> Result<(), UnpackError> {
        match self.left {
            Some(left) => Err(UnpackError::Malformed(format!(
                "body ends {left} bytes before the end of package {}",
                self.packages - 1
            ))),
            None if !self.buf.is_empty() => Err(UnpackError::Malformed(format!(
                "body ends inside the header of package {} ({} bytes)",
                self.packages,
                self.buf.len()
            ))),
            None if !self.v3 && self.packages == 0 => {
                Err(UnpackError::Malformed("empty flowfile-v2 body".into()))
            }
            None => Ok(()),
        }
    }

    /// Parses a complete header at the start of the buffer: (bytes used, attributes, content length).
    #[allow(clippy::type_complexity)]
    fn header(&self) -> Result<Option<(usize, Vec<(String, String)>, u64)>, UnpackError> {
        let b = &self.buf[..];
        let n = if self.v3 { b.len().min(MAGIC.len()) } else { 0 };
        if b[..n] != MAGIC[..n] {
            return Err(UnpackError::Malformed(format!(
                "does not start with NiFiFF3 (found {:02x?})",
                &b[..n]
            )));
        }
        let mut r = Cursor { b, at: n };
        if self.v3 && n < MAGIC.len() {
            return Ok(None);
        }
        let Some(count) = r.len()? else {
            return Ok(None);
        };
        if count == 0 && !self.v3 {
            return Err(UnpackError::Malformed(
                "a flowfile-v2 package has zero attributes".into(),
            ));
        }
        if count > self.max_attributes {
            return Err(UnpackError::Limit(format!(
                "{count} attributes exceed max_attributes = {}",
                self.max_attributes
            )));
        }
        let mut attributes = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let Some(k) = r.string(self.max_attribute_bytes)? else {
                return Ok(None);
            };
            let Some(v) = r.string(self.max_attribute_bytes.saturating_sub(k.len()))? else {
                return Ok(None);
            };
            attributes.push((k, v));
        }
        let Some(raw) = r.take(8) else {
            return Ok(None);
        };
        let len = i64::from_be_bytes(raw.try_into().expect("8 bytes"));
        let len = u64::try_from(len)
            .map_err(|_| UnpackError::Malformed(format!("negative content length {len}")))?;
        Ok(Some((r.at, attributes, len)))
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn len(&mut self) -> Result<Option<usize>, UnpackError> {
        let Some(s) = self.take(2) else {
            return Ok(None);
        };
        let short = u16::from_be_bytes([s[0], s[1]]);
        if short < 0xFFFF {
            return Ok(Some(usize::from(short)));
        }
        let Some(s) = self.take(4) else {
            return Ok(None);
        };
        let n = i32::from_be_bytes([s[0], s[1], s[2], s[3]]);
        usize::try_from(n)
            .map(Some)
            .map_err(|_| UnpackError::Malformed(format!("negative length {n}")))
    }

    fn string(&mut self, max: usize) -> Result<Option<String>, UnpackError> {
        let Some(n) = self.len()? else {
            return Ok(None);
        };
        if n > max {
            return Err(UnpackError::Limit(format!(
                "an attribute of {n}+ bytes exceeds max_attribute_bytes"
            )));
        }
        let Some(s) = self.take(n) else {
            return Ok(None);
        };
        String::from_utf8(s.to_vec())
            .map(Some)
            .map_err(|_| UnpackError::Malformed("attribute is not valid UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use s2s_proto::codec::package_v3;

    fn package(attrs: &[(&str, &str)], content: &[u8]) -> Vec<u8> {
        let ff = s2s_proto::FlowFile {
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            content: Bytes::copy_from_slice(content),
        };
        let mut b = BytesMut::new();
        package_v3::encode(&ff, &mut b);
        b.to_vec()
    }

    /// Unpacks `body` fed in pieces of `step` bytes into (attributes, content) pairs.
    #[allow(clippy::type_complexity)]
    fn unpack(
        body: &[u8],
        step: usize,
        limits: &Limits,
    ) -> Result<Vec<(Vec<(String, String)>, Vec<u8>)>, UnpackError> {
        let mut u = Unpacker::new(limits);
        let mut out: Vec<(Vec<(String, String)>, Vec<u8>)> = Vec::new();
        for piece in body.chunks(step.max(1)) {
            u.push(piece);
            while let Some(item) = u.next()? {
                match item {
                    Item::Begin { attributes, .. } => out.push((attributes, Vec::new())),
                    Item::Data(d) => out.last_mut().expect("begun").1.extend_from_slice(&d),
                    Item::End => {}
                }
            }
        }
        u.finish()?;
        Ok(out)
    }

    /// flowfile-v2: v3's layout without the magic, at any split; zero attributes and an empty
    /// body are malformed (as NiFi's `FlowFileUnpackagerV2`); a v3 body is not v2.
    #[test]
    #[allow(clippy::type_complexity)]
    fn v2_packages() {
        let p1 = package(&[("filename", "a.txt"), ("path", "./")], b"hello");
        let p2 = package(&[("k", "v")], &[7u8; 3000]);
        let mut body = p1[MAGIC.len()..].to_vec();
        body.extend_from_slice(&p2[MAGIC.len()..]);
        let l = Limits::default();
        for step in [1, 3, 64, 10_000] {
            let mut u = Unpacker::v2(&l);
            let mut out: Vec<(Vec<(String, String)>, Vec<u8>)> = Vec::new();
            for piece in body.chunks(step) {
                u.push(piece);
                while let Some(item) = u.next().expect("unpacks") {
                    match item {
                        Item::Begin { attributes, .. } => out.push((attributes, Vec::new())),
                        Item::Data(d) => out.last_mut().expect("begun").1.extend_from_slice(&d),
                        Item::End => {}
                    }
                }
            }
            u.finish().expect("complete");
            assert_eq!(out.len(), 2);
            assert_eq!(out[0].0[0], ("filename".into(), "a.txt".into()));
            assert_eq!(out[0].1, b"hello");
            assert_eq!(out[1].1, vec![7u8; 3000]);
        }
        let mut u = Unpacker::v2(&l);
        assert!(matches!(u.finish(), Err(UnpackError::Malformed(_))));
        u.push(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(u.next(), Err(UnpackError::Malformed(_))));
        let mut u = Unpacker::v2(&l);
        u.push(&p1);
        // "Ni" read as a count of 0x4e69 attributes: over max_attributes.
        assert!(u.next().is_err());
    }

    /// Spec TV10, twice, at every split; then truncated, garbage and over the limits.
    #[test]
    fn tv10_any_split() {
        let hex = "4e6946694646330002000866696c656e616d65000968656c6c6f2e74787400047061746800022e2f000000000000000568656c6c6f";
        let one: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let mut two = one.clone();
        two.extend_from_slice(&package(&[("k", &"v".repeat(70_000))], &[]));
        two.extend_from_slice(&one);
        let l = Limits {
            max_attribute_bytes: 100_000,
            ..Limits::default()
        };
        for step in [1, 2, 7, 64, 100_000] {
            let got = unpack(&two, step, &l).expect("unpacks");
            assert_eq!(got.len(), 3, "step {step}");
            assert_eq!(got[0].0[0], ("filename".into(), "hello.txt".into()));
            assert_eq!(got[0].1, b"hello");
            assert_eq!(got[1].0[0].1.len(), 70_000);
            assert!(got[1].1.is_empty());
            assert_eq!(got[2].1, b"hello");
        }
        assert!(matches!(
            unpack(&one[..one.len() - 1], 3, &l),
            Err(UnpackError::Malformed(_))
        ));
        assert!(matches!(
            unpack(&one[..10], 3, &l),
            Err(UnpackError::Malformed(_))
        ));
        assert!(matches!(
            unpack(b"garbage", 1, &l),
            Err(UnpackError::Malformed(_))
        ));
        assert!(matches!(
            unpack(&two, 5, &Limits::default()),
            Err(UnpackError::Limit(_))
        ));
        let few = Limits {
            max_attributes: 1,
            ..Limits::default()
        };
        assert!(matches!(unpack(&one, 5, &few), Err(UnpackError::Limit(_))));
    }
}
