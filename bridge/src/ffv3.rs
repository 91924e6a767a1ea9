//! FlowFile package v3 (`application/flowfile-v3`, spec §10) for the ListenHTTP path: a thin
//! wrapper over `s2s_proto::codec::package_v3` applying the bridge's limits.

use bytes::{Bytes, BytesMut};
use s2s_proto::codec::flowfile::Limits as CodecLimits;
use s2s_proto::codec::package_v3::PackageV3Decoder;

use crate::limits::Limits;
use crate::record::FlowFile;

/// Unpacks concatenated v3 packages; the error says what is wrong and in which package.
pub fn unpack_all(body: Bytes, limits: &Limits) -> Result<Vec<FlowFile>, String> {
    let mut buf = BytesMut::from(body);
    let mut dec = PackageV3Decoder::new(CodecLimits {
        max_attributes: limits.max_attributes,
        max_attribute_key_len: limits.max_attribute_bytes,
        max_attribute_value_len: limits.max_attribute_bytes,
        max_content_len: limits.max_content_bytes as u64,
    });
    let mut out = Vec::new();
    loop {
        match dec.decode_eof(&mut buf) {
            Ok(Some(ff)) => {
                if out.len() >= limits.max_records {
                    return Err(format!(
                        "more than max_records = {} packages",
                        limits.max_records
                    ));
                }
                out.push(ff);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(format!("package {}: {e}", out.len())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spec TV10, twice back to back, then truncated and garbage.
    #[test]
    fn tv10() {
        let hex = "4e6946694646330002000866696c656e616d65000968656c6c6f2e74787400047061746800022e2f000000000000000568656c6c6f";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
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
        let one_record = Limits {
            max_records: 1,
            ..Limits::default()
        };
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        assert!(unpack_all(Bytes::from(two), &one_record).is_err());
    }
}
