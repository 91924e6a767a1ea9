use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::codec::compression::compress;
use crate::codec::compression::tests::TV9;
use crate::codec::flowfile::encode;

fn f1() -> FlowFile {
    FlowFile::new(&b"hello"[..])
        .with_attribute("filename", "hello.txt")
        .with_attribute("path", "./")
}

/// The whole-buffer encoding of a transaction's FlowFiles: the codec bytes back to back, or
/// each FlowFile's codec bytes in its own envelope.
fn whole(ffs: &[FlowFile], compression: bool) -> Vec<u8> {
    let mut out = BytesMut::new();
    for ff in ffs {
        let mut plain = BytesMut::new();
        encode(ff, &mut plain);
        if compression {
            compress(&plain, &mut out);
        } else {
            out.put_slice(&plain);
        }
    }
    out.to_vec()
}

/// Writes `ffs` with the content handed over in pieces of the given sizes (cycled).
fn write_in_pieces(ffs: &[FlowFile], compression: bool, pieces: &[usize]) -> (Vec<u8>, u32) {
    let mut w = FlowFileWriter::new(compression);
    let mut wire = Vec::new();
    let mut sizes = pieces.iter().copied().cycle();
    for ff in ffs {
        let mut out = BytesMut::new();
        w.start(&ff.attributes, ff.content.len() as u64, &mut out)
            .unwrap();
        let mut at = 0;
        while at < ff.content.len() {
            let n = sizes.next().unwrap_or(1).max(1).min(ff.content.len() - at);
            if let Some(c) = w.content(ff.content.slice(at..at + n), &mut out).unwrap() {
                wire.extend_from_slice(&out);
                out.clear();
                wire.extend_from_slice(&c);
            }
            at += n;
        }
        w.finish(&mut out).unwrap();
        wire.extend_from_slice(&out);
    }
    (wire, w.checksum())
}

/// Reads the stream fed in pieces of the given sizes; reassembles every FlowFile from its parts.
fn read_in_pieces(wire: &[u8], compression: bool, cuts: &[usize]) -> (Vec<FlowFile>, u32) {
    let mut r = FlowFileReader::new(compression, Limits::default());
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    // (attributes, declared length, content so far)
    type Partial = (Vec<(String, String)>, u64, Vec<u8>);
    let mut current: Option<Partial> = None;
    let mut rest = wire;
    let mut sizes = cuts.iter().copied().cycle();
    loop {
        match r.next_part(&mut buf).unwrap() {
            Some(FlowFilePart::Header {
                attributes,
                content_len,
            }) => {
                assert!(current.is_none());
                current = Some((attributes, content_len, Vec::new()));
            }
            Some(FlowFilePart::Content(c)) => {
                assert!(!c.is_empty());
                current.as_mut().unwrap().2.extend_from_slice(&c);
            }
            Some(FlowFilePart::End) => {
                let (attributes, len, content) = current.take().unwrap();
                assert_eq!(len, content.len() as u64);
                got.push(FlowFile {
                    attributes,
                    content: content.into(),
                });
            }
            None if rest.is_empty() => break,
            None => {
                let n = sizes.next().unwrap_or(1).max(1).min(rest.len());
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
            }
        }
    }
    assert!(r.is_idle() && buf.is_empty() && current.is_none());
    (got, r.checksum())
}

#[test]
fn golden_tv4_and_tv9() {
    // TV4: F1 plain; TV9: F1 in the envelope as Java's zlib writes it.
    let tv4 = crate::codec::flowfile::tests::TV4;
    let (wire, crc) = write_in_pieces(&[f1()], false, &[2]);
    assert_eq!(wire, tv4);
    assert_eq!(crc, 4_046_154_554);
    for (compression, golden) in [(false, tv4), (true, TV9)] {
        for cut in [1, 3, 64, usize::MAX] {
            let (got, crc) = read_in_pieces(golden, compression, &[cut]);
            assert_eq!(got, vec![f1()], "compression {compression}, cut {cut}");
            assert_eq!(crc, 4_046_154_554);
        }
        let mut r = FlowFileReader::new(compression, Limits::default());
        assert_eq!(r.next_flowfile(&mut BytesMut::from(golden)), Ok(Some(f1())));
    }
}

#[test]
fn envelope_with_two_flowfiles_or_a_cut_one_is_an_error() {
    let mut two = BytesMut::new();
    encode(&f1(), &mut two);
    encode(&f1(), &mut two);
    let mut env = BytesMut::new();
    compress(&two, &mut env);
    let mut r = FlowFileReader::new(true, Limits::default());
    assert_eq!(
        r.next_flowfile(&mut env),
        Err(DecodeError::TrailingBytes(56))
    );

    let mut env = BytesMut::new();
    compress(&two[..50], &mut env);
    let mut r = FlowFileReader::new(true, Limits::default());
    assert!(matches!(
        r.next_flowfile(&mut env),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn content_must_match_its_declared_length() {
    for compression in [false, true] {
        let mut w = FlowFileWriter::new(compression);
        let mut out = BytesMut::new();
        w.start(&[], 3, &mut out).unwrap();
        assert_eq!(
            w.content(Bytes::from_static(b"abcd"), &mut out),
            Err(StreamError::ContentTooLong { declared: 3 })
        );
        w.content(Bytes::from_static(b"ab"), &mut out).unwrap();
        assert_eq!(
            w.finish(&mut out),
            Err(StreamError::ContentTooShort {
                declared: 3,
                written: 2
            })
        );
        assert!(matches!(
            w.content(Bytes::from_static(b"x"), &mut out),
            Err(StreamError::InvalidState(_))
        ));
    }
}

#[test]
fn large_content_streams_through_bounded_buffers() {
    // 64 MiB through the compressed writer and reader, 1 MiB at a time: the bytes held at
    // any point stay near one piece plus one envelope chunk.
    let piece = Bytes::from(vec![0x5a; 1 << 20]);
    let total = 64u64 << 20;
    let mut w = FlowFileWriter::new(true);
    let mut r = FlowFileReader::new(true, Limits::default());
    let mut wire = BytesMut::new();
    w.start(&[], total, &mut wire).unwrap();
    let (mut seen, mut max_buffered) = (0u64, 0usize);
    let mut drain = |wire: &mut BytesMut, r: &mut FlowFileReader| {
        max_buffered = max_buffered.max(wire.len());
        while let Some(part) = r.next_part(wire).unwrap() {
            if let FlowFilePart::Content(c) = part {
                seen += c.len() as u64;
            }
        }
    };
    for _ in 0..64 {
        assert!(w.content(piece.clone(), &mut wire).unwrap().is_none());
        drain(&mut wire, &mut r);
    }
    w.finish(&mut wire).unwrap();
    drain(&mut wire, &mut r);
    assert_eq!(seen, total);
    assert!(max_buffered < 2 << 20, "buffered {max_buffered}");
    assert_eq!(r.checksum(), w.checksum());
}

fn arb_flowfile() -> impl Strategy<Value = FlowFile> {
    (
        proptest::collection::vec(("[a-zA-Zé.]{0,8}", "[ -~ü]{0,12}"), 0..4),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            // Larger than one envelope chunk, compressible.
            (1usize..200_000).prop_map(|n| (0..n).map(|i| (i % 251) as u8).collect()),
        ],
    )
        .prop_map(|(attributes, content)| FlowFile {
            attributes,
            content: content.into(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The writer's output for any chunking of the content equals the whole-buffer encoding,
    /// and the reader accepts any split of it, with equal CRCs on both sides.
    #[test]
    fn any_chunking_equals_the_whole_buffer_encoding(
        ffs in proptest::collection::vec(arb_flowfile(), 1..4),
        compression in any::<bool>(),
        pieces in proptest::collection::vec(1usize..70_000, 1..5),
        cuts in proptest::collection::vec(1usize..5_000, 1..5),
    ) {
        let (wire, crc) = write_in_pieces(&ffs, compression, &pieces);
        prop_assert_eq!(&wire, &whole(&ffs, compression));
        prop_assert_eq!(crc, checksum(&ffs));
        let (got, rcrc) = read_in_pieces(&wire, compression, &cuts);
        prop_assert_eq!(got, ffs);
        prop_assert_eq!(rcrc, crc);
    }

    /// Garbage never panics the reader, whatever the split.
    #[test]
    fn garbage_is_an_error_not_a_panic(
        data in proptest::collection::vec(any::<u8>(), 0..512),
        compression in any::<bool>(),
        cut in 1usize..64,
    ) {
        let mut r = FlowFileReader::new(compression, Limits::default());
        let mut buf = BytesMut::new();
        for piece in data.chunks(cut) {
            buf.extend_from_slice(piece);
            while let Ok(Some(_)) = r.next_part(&mut buf) {}
        }
    }
}
