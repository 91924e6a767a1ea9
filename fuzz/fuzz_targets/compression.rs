//! SYNC-chunked zlib envelope: the raw decompressor and the stream layer's compressed reader.
//! Anything the decompressor accepts must survive a compress/decompress round trip.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use s2s_proto::codec::compression::{DecompressLimits, DecompressStatus, Decompressor, compress};
use s2s_proto::codec::flowfile::{FlowFilePart, Limits};
use s2s_proto::stream::FlowFileReader;

fuzz_target!(|data: &[u8]| {
    let limits = DecompressLimits {
        max_chunk_len: 1 << 20,
        max_compressed_chunk_len: 1 << 20,
        max_total_len: 1 << 24,
    };
    let mut src = BytesMut::from(data);
    let mut plain = BytesMut::new();
    if let Ok(DecompressStatus::Finished) = Decompressor::new(limits).decode(&mut src, &mut plain)
        && !plain.is_empty()
    {
        let mut again = BytesMut::new();
        compress(&plain, &mut again);
        let mut back = BytesMut::new();
        assert_eq!(
            Decompressor::new(limits).decode(&mut again, &mut back),
            Ok(DecompressStatus::Finished)
        );
        assert_eq!(back, plain);
    }

    // The stream layer's reader, compressed, whole FlowFiles and in parts.
    let limits = Limits {
        max_content_len: 1 << 20,
        ..Limits::default()
    };
    let mut d = FlowFileReader::new(true, limits);
    let mut src = BytesMut::from(data);
    while let Ok(Some(_)) = d.next_flowfile(&mut src) {}
    let mut d = FlowFileReader::new(true, limits);
    let mut src = BytesMut::from(data);
    let mut content = 0u64;
    while let Ok(Some(part)) = d.next_part(&mut src) {
        if let FlowFilePart::Content(c) = part {
            content += c.len() as u64;
            assert!(content <= limits.max_content_len);
        }
    }
});
