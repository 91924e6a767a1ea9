//! FlowFile Package v3 decoder over a body of concatenated packages; decoded packages must
//! re-encode to the bytes consumed.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use s2s_proto::codec::flowfile::Limits;
use s2s_proto::codec::package_v3::{self, PackageV3Decoder};

fuzz_target!(|data: &[u8]| {
    let mut d = PackageV3Decoder::new(Limits {
        max_attributes: 64,
        max_attribute_key_len: 1 << 17,
        max_attribute_value_len: 1 << 17,
        max_content_len: 1 << 20,
    });
    let mut buf = BytesMut::from(data);
    let mut start = 0;
    while let Ok(Some(f)) = d.decode_eof(&mut buf) {
        let end = data.len() - buf.len();
        let mut re = BytesMut::new();
        package_v3::encode(&f, &mut re);
        // The 6-byte length form may encode values below 65535 too; only compare lengths then.
        if re.len() == end - start {
            assert_eq!(&re[..], &data[start..end]);
        }
        start = end;
    }
});
