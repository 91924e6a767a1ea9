//! The bridge's incremental flowfile-v3 unpacker (ListenHTTP path), fed in two pieces (the first
//! input byte picks the cut), against `s2s_proto`'s whole-package decoder: whenever both accept a
//! body they must agree package by package, and the content must have the announced length.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use s2s_bridge::Limits;
use s2s_proto::codec::flowfile;
use s2s_proto::codec::package_v3::PackageV3Decoder;

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let cut = (usize::from(ctl) * data.len() / 255).min(data.len());
    let limits = Limits {
        max_attributes: 64,
        max_attribute_bytes: 4096,
        ..Limits::default()
    };
    let Ok(unpacked) = s2s_bridge::fuzzing::unpack_ffv3(&[&data[..cut], &data[cut..]], &limits)
    else {
        return;
    };
    for (_, len, content) in &unpacked {
        assert_eq!(*len, content.len() as u64);
    }
    let mut d = PackageV3Decoder::new(flowfile::Limits {
        max_attributes: 64,
        max_attribute_key_len: 4096,
        max_attribute_value_len: 4096,
        max_content_len: 1 << 20,
    });
    let mut buf = BytesMut::from(data);
    let mut whole = Vec::new();
    loop {
        match d.decode_eof(&mut buf) {
            Ok(Some(ff)) => whole.push(ff),
            Ok(None) => break,
            Err(_) => return,
        }
    }
    assert_eq!(whole.len(), unpacked.len(), "package count differs");
    for (ff, (attrs, _, content)) in whole.iter().zip(&unpacked) {
        assert_eq!(&ff.attributes, attrs);
        assert_eq!(&ff.content[..], &content[..]);
    }
});
