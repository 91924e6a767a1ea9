//! StandardFlowFileCodec v1 decoder, fed in two slices (the first input byte picks the cut).
//! Whatever decodes must re-encode to exactly the bytes it consumed.
#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use s2s_proto::codec::flowfile::{self, FlowFileDecoder, Limits};

fuzz_target!(|input: &[u8]| {
    let Some((&split, data)) = input.split_first() else {
        return;
    };
    let mut d = FlowFileDecoder::new(Limits {
        max_attributes: 64,
        max_attribute_key_len: 4096,
        max_attribute_value_len: 4096,
        max_content_len: 1 << 20,
    });
    let cut = usize::from(split).min(data.len());
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut start = 0;
    for part in [&data[..cut], &data[cut..]] {
        buf.put_slice(part);
        fed += part.len();
        loop {
            let f = match d.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                // The stream is out of sync after an error: stop, as a driver would.
                Err(_) => return,
            };
            let end = fed - buf.len();
            let mut re = BytesMut::new();
            flowfile::encode(&f, &mut re);
            assert_eq!(re.len(), flowfile::encoded_len(&f));
            assert_eq!(&re[..], &data[start..end]);
            start = end;
        }
    }
    let _ = d.decode_eof(&mut buf);
});
