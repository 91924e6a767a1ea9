//! The streaming FlowFile decoder (`s2s_proto::stream::FlowFileReader`), plain or in the SYNC
//! zlib envelope, fed in two slices, read part by part or FlowFile by FlowFile (the first input
//! byte picks the mode and the cut). What decodes must be consistent: content parts add up to the
//! announced length, whole FlowFiles re-encode to the bytes consumed (plain) and the running CRC
//! equals `stream::checksum` of what was decoded.
#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use s2s_proto::FlowFile;
use s2s_proto::codec::flowfile::{self, FlowFilePart, Limits};
use s2s_proto::stream::{self, FlowFileReader};

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let compression = ctl & 1 == 1;
    let whole = ctl & 2 == 2;
    let cut = (usize::from(ctl >> 2) * data.len() / 63).min(data.len());
    let mut r = FlowFileReader::new(
        compression,
        Limits {
            max_attributes: 64,
            max_attribute_key_len: 4096,
            max_attribute_value_len: 4096,
            max_content_len: 1 << 20,
        },
    );
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut start = 0;
    let mut decoded: Vec<FlowFile> = Vec::new();
    // Part mode: the announced length and the content seen so far of the current FlowFile.
    let mut current: Option<(u64, u64)> = None;
    for piece in [&data[..cut], &data[cut..]] {
        buf.put_slice(piece);
        fed += piece.len();
        loop {
            if whole {
                let ff = match r.next_flowfile(&mut buf) {
                    Ok(Some(ff)) => ff,
                    Ok(None) => break,
                    Err(_) => return,
                };
                let end = fed - buf.len();
                if !compression {
                    let mut re = BytesMut::new();
                    flowfile::encode(&ff, &mut re);
                    assert_eq!(&re[..], &data[start..end]);
                }
                start = end;
                decoded.push(ff);
                assert_eq!(r.checksum(), stream::checksum(&decoded));
                assert_eq!(r.flowfiles(), decoded.len() as u64);
            } else {
                match r.next_part(&mut buf) {
                    Ok(Some(FlowFilePart::Header { content_len, .. })) => {
                        assert!(current.is_none(), "a header inside a FlowFile");
                        assert!(content_len <= 1 << 20, "over the content limit");
                        current = Some((content_len, 0));
                    }
                    Ok(Some(FlowFilePart::Content(c))) => {
                        let cur = current.as_mut().expect("content outside a FlowFile");
                        cur.1 += c.len() as u64;
                        assert!(cur.1 <= cur.0, "more content than announced");
                    }
                    Ok(Some(FlowFilePart::End)) => {
                        let (want, got) = current.take().expect("end outside a FlowFile");
                        assert_eq!(want, got);
                    }
                    // Parts added later (the enum is non-exhaustive) carry no length.
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
    }
});
