//! FlowFile package v3 (`application/flowfile-v3`, spec §10) unpacking for the ListenHTTP path.
//!
//! Stand-in until `s2s_proto::codec::package_v3` is committed; bounded by the bridge's limits.

use bytes::{Buf, Bytes};

use crate::limits::Limits;
use crate::record::FlowFile;

const MAGIC: &[u8; 7] = b"NiFiFF3";

/// Unpacks concatenated v3 packages; the error says what is wrong and where.
pub fn unpack_all(body: Bytes, limits: &Limits) -> Result<Vec<FlowFile>, String> {
    let total = body.len();
    let mut b = body;
    let mut out = Vec::new();
    while b.has_remaining() {
        let at = total - b.remaining();
        if out.len() >= limits.max_records {
            return Err(format!(
                "more than max_records = {} packages",
                limits.max_records
            ));
        }
        if b.remaining() < MAGIC.len() || &b[..MAGIC.len()] != MAGIC {
            return Err(format!("missing NiFiFF3 magic at byte {at}"));
        }
        b.advance(MAGIC.len());
        let n = len(&mut b, at)?;
        if n == 0 {
            return Err(format!("package at byte {at} has zero attributes"));
        }
        if n > limits.max_attributes {
            return Err(format!(
                "{n} attributes exceed max_attributes = {}",
                limits.max_attributes
            ));
        }
        let mut attributes = Vec::with_capacity(n);
        for _ in 0..n {
            let k = string(&mut b, at, limits)?;
            let v = string(&mut b, at, limits)?;
            attributes.push((k, v));
        }
        if b.remaining() < 8 {
            return Err(format!(
                "package at byte {at} truncated before its content length"
            ));
        }
        let clen = b.get_i64();
        if clen < 0 || clen as u64 > limits.max_content_bytes as u64 {
            return Err(format!(
                "content length {clen} outside 0..={}",
                limits.max_content_bytes
            ));
        }
        let clen = clen as usize;
        if b.remaining() < clen {
            return Err(format!(
                "package at byte {at} truncated: content needs {clen} bytes, {} left",
                b.remaining()
            ));
        }
        let content = b.split_to(clen);
        out.push(FlowFile {
            attributes,
            content,
        });
    }
    Ok(out)
}

fn len(b: &mut Bytes, at: usize) -> Result<usize, String> {
    if b.remaining() < 2 {
        return Err(format!("package at byte {at} truncated"));
    }
    let short = b.get_u16();
    if short < 0xFFFF {
        return Ok(short as usize);
    }
    if b.remaining() < 4 {
        return Err(format!("package at byte {at} truncated"));
    }
    let long = b.get_i32();
    usize::try_from(long).map_err(|_| format!("negative length {long} in package at byte {at}"))
}

fn string(b: &mut Bytes, at: usize, limits: &Limits) -> Result<String, String> {
    let n = len(b, at)?;
    if n > limits.max_attribute_bytes {
        return Err(format!(
            "attribute of {n} bytes exceeds max_attribute_bytes = {}",
            limits.max_attribute_bytes
        ));
    }
    if b.remaining() < n {
        return Err(format!(
            "package at byte {at} truncated inside an attribute"
        ));
    }
    String::from_utf8(b.split_to(n).to_vec())
        .map_err(|_| format!("attribute in package at byte {at} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spec TV10.
    #[test]
    fn tv10() {
        let hex = "4e6946694646330002000866696c656e616d65000968656c6c6f2e74787400047061746800022e2f000000000000000568656c6c6f";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let got = unpack_all(Bytes::from(bytes.clone()), &Limits::default()).expect("unpacks");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].attribute("filename"), Some("hello.txt"));
        assert_eq!(&got[0].content[..], b"hello");
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        assert_eq!(
            unpack_all(Bytes::from(two), &Limits::default())
                .expect("two")
                .len(),
            2
        );
        assert!(
            unpack_all(
                Bytes::from(bytes[..bytes.len() - 1].to_vec()),
                &Limits::default()
            )
            .is_err()
        );
        assert!(unpack_all(Bytes::from_static(b"garbage"), &Limits::default()).is_err());
    }
}
