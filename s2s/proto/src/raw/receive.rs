//! Reading one FlowFile of a RECEIVE transaction, with or without the compression envelope.

use bytes::BytesMut;

use crate::codec::DecodeError;
use crate::codec::checksum::TransactionChecksum;
use crate::codec::compression::{CompressedFlowFileDecoder, DecompressLimits};
use crate::codec::flowfile::{FlowFile, FlowFileDecoder, Limits};

/// Decodes exactly one FlowFile from the transaction stream and adds it to the CRC.
#[derive(Debug)]
pub(crate) enum FlowFileReader {
    Plain(FlowFileDecoder),
    Compressed(Box<CompressedFlowFileDecoder>),
}

impl FlowFileReader {
    pub(crate) fn new(compressed: bool, limits: Limits) -> Self {
        if compressed {
            Self::Compressed(Box::new(CompressedFlowFileDecoder::new(
                limits,
                DecompressLimits::default(),
            )))
        } else {
            Self::Plain(FlowFileDecoder::new(limits))
        }
    }

    /// `Ok(None)` = need more bytes (progress is kept).
    pub(crate) fn decode(
        &mut self,
        buf: &mut BytesMut,
        crc: &mut TransactionChecksum,
    ) -> Result<Option<FlowFile>, DecodeError> {
        match self {
            // Hashes the bytes as they arrive, while they are cache-hot.
            Self::Plain(d) => d.decode_with_checksum(buf, crc),
            Self::Compressed(d) => {
                let Some(ff) = d.decode(buf)? else {
                    return Ok(None);
                };
                // The decoder consumed exactly the inflated codec bytes; re-encoding the
                // header reproduces them byte for byte (lengths and UTF-8 round-trip), so the
                // CRC covers what NiFi sent.
                crc.add_flowfile(&ff);
                Ok(Some(ff))
            }
        }
    }
}
