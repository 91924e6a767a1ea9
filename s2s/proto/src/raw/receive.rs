//! Reading one FlowFile of a RECEIVE transaction, with or without the compression envelope.

use bytes::BytesMut;

use crate::codec::DecodeError;
use crate::codec::checksum::TransactionChecksum;
use crate::codec::flowfile::{FlowFile, FlowFileDecoder, Limits};

/// Decodes exactly one FlowFile from the transaction stream and adds it to the CRC.
#[derive(Debug)]
pub(crate) struct FlowFileReader {
    decoder: FlowFileDecoder,
    compressed: bool,
}

impl FlowFileReader {
    pub(crate) fn new(compressed: bool, limits: Limits) -> Self {
        Self {
            decoder: FlowFileDecoder::new(limits),
            compressed,
        }
    }

    /// `Ok(None)` = need more bytes (progress is kept).
    pub(crate) fn decode(
        &mut self,
        buf: &mut BytesMut,
        crc: &mut TransactionChecksum,
    ) -> Result<Option<FlowFile>, DecodeError> {
        if self.compressed {
            return Err(DecodeError::Truncated {
                buffered: buf.len(),
            });
        }
        let Some(ff) = self.decoder.decode(buf)? else {
            return Ok(None);
        };
        // The decoder consumed exactly the codec bytes; re-encoding the header reproduces them
        // byte for byte (lengths and UTF-8 round-trip), so the CRC covers what NiFi sent.
        crc.add_flowfile(&ff);
        Ok(Some(ff))
    }
}
