//! The transaction CRC32 (docs/site-to-site.md §5.3).
//!
//! One CRC-32 (zlib/IEEE) per transaction over the *uncompressed* StandardFlowFileCodec bytes
//! of every FlowFile, in order; markers, request strings and the compression envelope are
//! excluded. It travels as the unsigned decimal message of `CONFIRM_TRANSACTION`.

/// Running CRC32 of a transaction's FlowFiles.
#[derive(Debug, Clone, Default)]
pub struct TransactionChecksum {
    hasher: crc32fast::Hasher,
}

impl TransactionChecksum {
    /// A checksum over nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds raw codec bytes (as written to or read from the wire, before compression).
    pub fn update(&mut self, codec_bytes: &[u8]) {
        self.hasher.update(codec_bytes);
    }

    /// The CRC32 so far.
    pub fn value(&self) -> u32 {
        self.hasher.clone().finalize()
    }

    /// The CRC32 as NiFi sends it: unsigned decimal, no padding.
    pub fn to_decimal(&self) -> String {
        self.value().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::flowfile::{FlowFile, encode};

    fn f1() -> FlowFile {
        FlowFile::new(&b"hello"[..])
            .with_attribute("filename", "hello.txt")
            .with_attribute("path", "./")
    }

    fn f2() -> FlowFile {
        FlowFile::new(&b"world!"[..]).with_attribute("filename", "b.txt")
    }

    #[test]
    fn tv4_tv6_crc() {
        let mut c = TransactionChecksum::new();
        f1().add_to_checksum(&mut c);
        assert_eq!(c.value(), 4_046_154_554);
        assert_eq!(c.to_decimal(), "4046154554");
        f2().add_to_checksum(&mut c);
        assert_eq!(c.to_decimal(), "464261154");

        let mut raw = bytes::BytesMut::new();
        encode(&f1(), &mut raw);
        encode(&f2(), &mut raw);
        assert_eq!(raw.len(), 95);
        let mut c2 = TransactionChecksum::new();
        c2.update(&raw);
        assert_eq!(c2.value(), 464_261_154);
    }
}
