//! FlowFile encoding used by the bridge: StandardFlowFileCodec v1 (PROTOCOL.md §4), from
//! `s2s_proto` (the same code the wasm client uses). This module only maps its results onto the
//! bridge's limits and rejection reasons.

use bytes::{Bytes, BytesMut};
use s2s_proto::codec::flowfile::{self, FlowFileDecoder};

use crate::limits::Limits;
use crate::record::FlowFile;

/// Why a payload does not decode, classified for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A length is over a configured limit (reason LIMIT).
    #[error("{0}")]
    Limit(String),
    /// The bytes are not `count` well-formed FlowFiles (reason MALFORMED).
    #[error("{0}")]
    Malformed(String),
}

/// Appends one FlowFile in StandardFlowFileCodec v1.
///
/// Every FlowFile reaching this point passed [`Limits`], far below the codec's `i32` bounds.
pub fn encode(ff: &FlowFile, out: &mut BytesMut) {
    flowfile::encode(ff, out);
}

/// Length of the StandardFlowFileCodec v1 header (attribute count, attributes, content length) of
/// a FlowFile with `attributes`.
pub fn header_len(attributes: &[(String, String)]) -> usize {
    flowfile::header_len_parts(attributes)
}

/// Appends the v1 header of a FlowFile with `attributes` and `content_len` bytes of content (to be
/// written after it by the caller), using the codec of `s2s_proto`.
pub fn encode_header(attributes: &[(String, String)], content_len: u64, out: &mut BytesMut) {
    flowfile::encode_header_parts(attributes, content_len, out);
}

/// Decodes exactly `count` FlowFiles from `payload`, with nothing left over, checking `limits`
/// before allocating.
pub fn decode_all(
    payload: Bytes,
    count: usize,
    limits: &Limits,
) -> Result<Vec<FlowFile>, DecodeError> {
    let mut buf = BytesMut::from(payload);
    let mut dec = FlowFileDecoder::new(flowfile::Limits {
        max_attributes: limits.max_attributes,
        max_attribute_key_len: limits.max_attribute_bytes,
        max_attribute_value_len: limits.max_attribute_bytes,
        max_content_len: limits.max_content_bytes as u64,
    });
    let mut out = Vec::with_capacity(count.min(limits.max_records).min(4096));
    for i in 0..count {
        match dec.decode_eof(&mut buf) {
            Ok(Some(ff)) => out.push(ff),
            Ok(None) => {
                return Err(DecodeError::Malformed(format!(
                    "payload ends after {i} of {count} FlowFiles"
                )));
            }
            Err(e @ s2s_proto::DecodeError::LimitExceeded { field, .. }) => {
                let setting = match field {
                    "attribute count" => "max_attributes",
                    "content length" => "max_content_bytes",
                    _ => "max_attribute_bytes",
                };
                return Err(DecodeError::Limit(format!("FlowFile {i}: {e} ({setting})")));
            }
            Err(e) => return Err(DecodeError::Malformed(format!("FlowFile {i}: {e}"))),
        }
    }
    if !buf.is_empty() {
        return Err(DecodeError::Malformed(format!(
            "{} trailing bytes after {count} FlowFiles",
            buf.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ff(n: usize) -> FlowFile {
        FlowFile::new(vec![b'x'; n]).with_attribute("id", n.to_string())
    }

    fn encode_all(records: &[FlowFile]) -> Bytes {
        let mut b = BytesMut::new();
        records.iter().for_each(|r| encode(r, &mut b));
        b.freeze()
    }

    #[test]
    fn roundtrip() {
        let recs = vec![ff(0), ff(3), ff(100)];
        let got = decode_all(encode_all(&recs), 3, &Limits::default()).expect("decodes");
        assert_eq!(got, recs);
    }

    #[test]
    fn truncated_trailing_and_limits() {
        let recs = vec![ff(5), ff(6)];
        let bytes = encode_all(&recs);
        let l = Limits::default();
        assert!(matches!(
            decode_all(bytes.slice(..bytes.len() - 1), 2, &l),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_all(bytes.clone(), 1, &l),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_all(bytes.clone(), 3, &l),
            Err(DecodeError::Malformed(_))
        ));
        let small = Limits {
            max_content_bytes: 5,
            ..Limits::default()
        };
        assert!(matches!(
            decode_all(bytes, 2, &small),
            Err(DecodeError::Limit(_))
        ));
    }
}
