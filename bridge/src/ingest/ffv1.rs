//! FlowFile package v1 (`application/flowfile`, any content type starting with it): a tar archive
//! of two entries, `flowfile.attributes` (a Java properties XML document) then `flowfile.content`,
//! one FlowFile per body — as NiFi's `FlowFilePackagerV1`/`FlowFileUnpackagerV1`.
//!
//! Unpacked incrementally with the same [`Item`]s as the v3 unpacker: the attributes entry is held
//! (bounded by the attribute limits), the content entry streams through. Whatever follows the
//! content entry (padding, the end-of-archive blocks) is ignored, as NiFi does.

use bytes::{Buf, BytesMut};

use crate::ffv3::{Item, UnpackError};
use crate::limits::Limits;

const BLOCK: usize = 512;
const ATTRIBUTES: &str = "flowfile.attributes";
const CONTENT: &str = "flowfile.content";
/// Largest tar extension entry (pax / GNU long name) skipped before an expected entry.
const MAX_EXTENSION: u64 = 1 << 20;

#[derive(Debug)]
enum State {
    /// Waiting for the header of the attributes entry (`false`) or the content entry (`true`).
    Header(bool),
    /// Skipping a tar extension entry (its data and padding), then the header `.1` is expected.
    Skip(u64, bool),
    /// Collecting the attributes entry: bytes left, its padding after.
    Attributes(u64, u64),
    /// Streaming the content: bytes left, its padding after.
    Content(u64, u64),
    /// The content is complete; the rest of the body is ignored.
    Done,
}

/// Incremental unpacker of one flowfile-v1 (tar) package.
#[derive(Debug)]
pub(crate) struct TarUnpacker {
    buf: BytesMut,
    state: State,
    xml: Vec<u8>,
    attributes: Option<Vec<(String, String)>>,
    max_attributes: usize,
    max_attribute_bytes: usize,
    ended: bool,
}

impl TarUnpacker {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            buf: BytesMut::new(),
            state: State::Header(false),
            xml: Vec::new(),
            attributes: None,
            max_attributes: limits.max_attributes,
            max_attribute_bytes: limits.max_attribute_bytes,
            ended: false,
        }
    }

    /// Adds received bytes (ignored once the package is complete).
    pub(crate) fn push(&mut self, data: &[u8]) {
        if !matches!(self.state, State::Done) {
            self.buf.extend_from_slice(data);
        }
    }

    /// Largest attributes document accepted: every attribute at its limit, plus XML markup.
    fn max_xml(&self) -> u64 {
        (self.max_attributes as u64)
            .saturating_mul(self.max_attribute_bytes as u64 + 64)
            .saturating_add(4096)
            .min(64 << 20)
    }

    /// The next item, `Ok(None)` when more bytes are needed (or the package is complete).
    pub(crate) fn next(&mut self) -> Result<Option<Item>, UnpackError> {
        loop {
            match self.state {
                State::Done => {
                    self.buf.clear();
                    return Ok(None);
                }
                State::Header(content) => {
                    if self.buf.len() < BLOCK {
                        return Ok(None);
                    }
                    let header = self.buf.split_to(BLOCK);
                    let (name, size, kind) = parse_header(&header)?;
                    let pad = padding(size);
                    if matches!(kind, b'x' | b'g' | b'L' | b'K') {
                        if size > MAX_EXTENSION {
                            return Err(UnpackError::Malformed(format!(
                                "tar extension entry of {size} bytes"
                            )));
                        }
                        self.state = State::Skip(size + pad, content);
                        continue;
                    }
                    let want = if content { CONTENT } else { ATTRIBUTES };
                    if name != want {
                        return Err(UnpackError::Malformed(format!(
                            "expected the tar entries {ATTRIBUTES} and {CONTENT}, found {name:?}"
                        )));
                    }
                    if content {
                        self.state = State::Content(size, pad);
                        let attributes = self.attributes.take().unwrap_or_default();
                        return Ok(Some(Item::Begin {
                            attributes,
                            len: size,
                        }));
                    }
                    if size > self.max_xml() {
                        return Err(UnpackError::Limit(format!(
                            "{ATTRIBUTES} of {size} bytes exceeds the attribute limits"
                        )));
                    }
                    self.state = State::Attributes(size, pad);
                }
                State::Skip(left, content) => {
                    let n = left.min(self.buf.len() as u64);
                    self.buf.advance(n as usize);
                    if n < left {
                        self.state = State::Skip(left - n, content);
                        return Ok(None);
                    }
                    self.state = State::Header(content);
                }
                State::Attributes(left, pad) => {
                    let n = left.min(self.buf.len() as u64) as usize;
                    self.xml.extend_from_slice(&self.buf.split_to(n));
                    let left = left - n as u64;
                    if left > 0 {
                        self.state = State::Attributes(left, pad);
                        return Ok(None);
                    }
                    let attributes = parse_properties(&std::mem::take(&mut self.xml))
                        .map_err(|m| UnpackError::Malformed(format!("{ATTRIBUTES}: {m}")))?;
                    if attributes.len() > self.max_attributes {
                        return Err(UnpackError::Limit(format!(
                            "{} attributes exceed max_attributes = {}",
                            attributes.len(),
                            self.max_attributes
                        )));
                    }
                    if let Some((k, _)) = attributes
                        .iter()
                        .find(|(k, v)| k.len() + v.len() > self.max_attribute_bytes)
                    {
                        return Err(UnpackError::Limit(format!(
                            "attribute {k:?} exceeds max_attribute_bytes = {}",
                            self.max_attribute_bytes
                        )));
                    }
                    self.attributes = Some(attributes);
                    self.state = State::Skip(pad, true);
                }
                State::Content(left, pad) => {
                    if left == 0 {
                        self.state = State::Done;
                        self.ended = true;
                        let _ = pad;
                        return Ok(Some(Item::End));
                    }
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    let n = left.min(self.buf.len() as u64) as usize;
                    self.state = State::Content(left - n as u64, pad);
                    return Ok(Some(Item::Data(self.buf.split_to(n).freeze())));
                }
            }
        }
    }

    /// Checks that the body held a complete package.
    pub(crate) fn finish(&self) -> Result<(), UnpackError> {
        match self.state {
            State::Done if self.ended => Ok(()),
            State::Content(left, _) => Err(UnpackError::Malformed(format!(
                "body ends {left} bytes before the end of {CONTENT}"
            ))),
            _ => Err(UnpackError::Malformed(format!(
                "body ends before the tar entries {ATTRIBUTES} and {CONTENT}"
            ))),
        }
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn field_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A tar header block: (name, size, type flag).
fn parse_header(h: &[u8]) -> Result<(String, u64, u8), UnpackError> {
    if h.iter().all(|&b| b == 0) {
        return Err(UnpackError::Malformed(format!(
            "tar archive ends before {ATTRIBUTES} and {CONTENT}"
        )));
    }
    let stored: u64 = {
        let f = field_str(&h[148..156]);
        u64::from_str_radix(f.trim_matches(|c: char| c == ' ' || c == '\0'), 8)
            .map_err(|_| UnpackError::Malformed("not a tar archive (bad header checksum)".into()))?
    };
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    if sum != stored {
        return Err(UnpackError::Malformed(
            "not a tar archive (header checksum mismatch)".into(),
        ));
    }
    let size_field = &h[124..136];
    let size = if size_field[0] & 0x80 != 0 {
        // GNU base-256: big-endian in the remaining bytes.
        let mut n: u64 = u64::from(size_field[0] & 0x7f);
        for &b in &size_field[1..] {
            n = n
                .checked_mul(256)
                .and_then(|n| n.checked_add(u64::from(b)))
                .ok_or_else(|| UnpackError::Malformed("tar entry size overflows".into()))?;
        }
        n
    } else {
        let f = field_str(size_field);
        let f = f.trim_matches(|c: char| c == ' ' || c == '\0');
        if f.is_empty() {
            0
        } else {
            u64::from_str_radix(f, 8)
                .map_err(|_| UnpackError::Malformed(format!("bad tar entry size {f:?}")))?
        }
    };
    let mut name = field_str(&h[0..100]);
    if &h[257..262] == b"ustar" {
        let prefix = field_str(&h[345..500]);
        if !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
    }
    Ok((name, size, h[156]))
}

/// The entries of a Java properties XML document (`Properties.storeToXML`):
/// `<entry key="k">v</entry>` (or `<entry key="k"/>`), with XML entities and character references.
pub(crate) fn parse_properties(xml: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text = std::str::from_utf8(xml).map_err(|_| "not UTF-8".to_owned())?;
    if !text.contains("<properties") {
        return Err("not a properties document".into());
    }
    let mut out: Vec<(String, String)> = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("<entry") {
        rest = &rest[at + "<entry".len()..];
        let close = rest.find('>').ok_or("unterminated <entry> tag")?;
        let tag = &rest[..close];
        let empty = tag.trim_end().ends_with('/');
        let key = attr_value(tag, "key").ok_or("<entry> without key")?;
        let key = unescape(&key)?;
        rest = &rest[close + 1..];
        let value = if empty {
            String::new()
        } else {
            let end = rest.find("</entry>").ok_or("unterminated <entry>")?;
            let v = unescape(&rest[..end])?;
            rest = &rest[end + "</entry>".len()..];
            v
        };
        // Properties: a later entry with the same key replaces the earlier one.
        out.retain(|(k, _)| *k != key);
        out.push((key, value));
    }
    Ok(out)
}

fn attr_value(tag: &str, name: &str) -> Option<String> {
    let mut rest = tag;
    loop {
        let at = rest.find(name)?;
        let before_ok = at == 0 || rest[..at].ends_with(char::is_whitespace);
        let after = rest[at + name.len()..].trim_start();
        if before_ok && let Some(after) = after.strip_prefix('=') {
            let after = after.trim_start();
            let quote = after.chars().next()?;
            if quote != '"' && quote != '\'' {
                return None;
            }
            let body = &after[1..];
            let end = body.find(quote)?;
            return Some(body[..end].to_owned());
        }
        rest = &rest[at + name.len()..];
    }
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(['&', '<']) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(cdata) = rest.strip_prefix("<![CDATA[") {
            let end = cdata.find("]]>").ok_or("unterminated CDATA")?;
            out.push_str(&cdata[..end]);
            rest = &cdata[end + 3..];
            continue;
        }
        if rest.starts_with('<') {
            return Err("markup inside an entry".into());
        }
        let end = rest.find(';').ok_or("unterminated entity")?;
        let entity = &rest[1..end];
        let c = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity &{entity};"))?
            }
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn header(name: &str, size: u64) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    /// A flowfile-v1 package as NiFi's `FlowFilePackagerV1` writes it.
    pub(crate) fn package_v1(attrs: &[(&str, &str)], content: &[u8]) -> Vec<u8> {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let mut xml = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n<!DOCTYPE properties SYSTEM \"http://java.sun.com/dtd/properties.dtd\">\n<properties>\n",
        );
        for (k, v) in attrs {
            xml.push_str(&format!("<entry key=\"{}\">{}</entry>\n", esc(k), esc(v)));
        }
        xml.push_str("</properties>\n");
        let mut out = header(ATTRIBUTES, xml.len() as u64);
        out.extend_from_slice(xml.as_bytes());
        out.resize(out.len() + padding(xml.len() as u64) as usize, 0);
        out.extend(header(CONTENT, content.len() as u64));
        out.extend_from_slice(content);
        out.resize(out.len() + padding(content.len() as u64) as usize, 0);
        out.resize(out.len() + 2 * BLOCK, 0);
        out
    }

    #[allow(clippy::type_complexity)]
    fn unpack(
        body: &[u8],
        step: usize,
        l: &Limits,
    ) -> Result<(Vec<(String, String)>, Vec<u8>), UnpackError> {
        let mut u = TarUnpacker::new(l);
        let mut attrs = None;
        let mut content = Vec::new();
        for piece in body.chunks(step) {
            u.push(piece);
            while let Some(item) = u.next()? {
                match item {
                    Item::Begin { attributes, .. } => attrs = Some(attributes),
                    Item::Data(d) => content.extend_from_slice(&d),
                    Item::End => {}
                }
            }
        }
        u.finish()?;
        Ok((attrs.expect("begun"), content))
    }

    #[test]
    fn v1_tar_at_any_split() {
        let content: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let body = package_v1(
            &[("filename", "a <b> & \"c\".txt"), ("nf.file.path", "./in")],
            &content,
        );
        for step in [1, 7, 512, 513, 100_000] {
            let (attrs, got) = unpack(&body, step, &Limits::default()).expect("unpacks");
            assert_eq!(
                attrs,
                vec![
                    ("filename".to_owned(), "a <b> & \"c\".txt".to_owned()),
                    ("nf.file.path".to_owned(), "./in".to_owned())
                ]
            );
            assert_eq!(got, content, "step {step}");
        }
        // Empty content, no end-of-archive blocks.
        let mut short = package_v1(&[("k", "v")], b"");
        short.truncate(short.len() - 2 * BLOCK);
        let (a, c) = unpack(&short, 100, &Limits::default()).expect("unpacks");
        assert_eq!(a, vec![("k".to_owned(), "v".to_owned())]);
        assert!(c.is_empty());
    }

    #[test]
    fn v1_errors_are_typed() {
        let l = Limits::default();
        let body = package_v1(&[("k", "v")], b"hello world");
        // Cut inside the content, inside a header, empty.
        let content_at = body.len() - 2 * BLOCK - BLOCK;
        for cut in [content_at + 5, BLOCK + 100, 10, 0] {
            assert!(
                matches!(unpack(&body[..cut], 64, &l), Err(UnpackError::Malformed(_))),
                "cut at {cut}"
            );
        }
        assert!(matches!(
            unpack(&[b'x'; 2048], 64, &l),
            Err(UnpackError::Malformed(_))
        ));
        assert!(matches!(
            unpack(&vec![0u8; 2048], 64, &l),
            Err(UnpackError::Malformed(_))
        ));
        // Entries in the wrong order.
        let mut wrong = header(CONTENT, 0);
        wrong.extend(header(ATTRIBUTES, 0));
        assert!(matches!(
            unpack(&wrong, 64, &l),
            Err(UnpackError::Malformed(_))
        ));
        // Over the attribute limits.
        let few = Limits {
            max_attributes: 1,
            ..Limits::default()
        };
        let two = package_v1(&[("a", "1"), ("b", "2")], b"");
        assert!(matches!(unpack(&two, 64, &few), Err(UnpackError::Limit(_))));
        let big = package_v1(&[("a", &"x".repeat(70_000))], b"");
        assert!(matches!(unpack(&big, 4096, &l), Err(UnpackError::Limit(_))));
        // Bad XML.
        assert!(parse_properties(b"<properties><entry key=\"a\">x").is_err());
        assert!(parse_properties(b"<properties><entry>x</entry>").is_err());
        assert!(parse_properties(b"<properties><entry key=\"a\">&bogus;</entry>").is_err());
        assert_eq!(
            parse_properties(b"<properties><entry key='a'/><entry key=\"b\">&#x41;&#66;</entry>")
                .expect("parses"),
            vec![("a".into(), String::new()), ("b".into(), "AB".into())]
        );
    }
}
