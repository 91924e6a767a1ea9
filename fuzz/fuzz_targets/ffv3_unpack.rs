//! The bridge's incremental ListenHTTP unpackers: the first input byte picks the format
//! (`% 3`: 0 flowfile-v3, 1 flowfile-v2, 2 flowfile-v1 tar), the second the cut where the body is
//! split in two pieces, the rest is the body.
//!
//! * The verdict (packages, or the kind of error) does not depend on the cut (same as one piece).
//! * Every package's content has the length its header announced.
//! * v3: whenever both accept a body, `s2s_proto`'s whole-package decoder agrees package by
//!   package.
//! * v2: an accepted body, re-encoded canonically as v2, unpacks to the same packages; as v3
//!   (the magic before each package) `s2s_proto`'s decoder reads the same packages.
//! * v1: an accepted package, written again as NiFi's `FlowFilePackagerV1` writes it (tar of a
//!   properties XML document and the content), unpacks to the same attributes and content.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use s2s_bridge::Limits;
use s2s_bridge::fuzzing::{Format, Unpacked, unpack};
use s2s_proto::codec::flowfile;
use s2s_proto::codec::package_v3::{MAGIC, PackageV3Decoder};

const MAX_ATTRIBUTES: usize = 64;
const MAX_ATTRIBUTE_BYTES: usize = 4096;

fuzz_target!(|input: &[u8]| {
    let [sel, ctl, data @ ..] = input else {
        return;
    };
    let format = match sel % 3 {
        0 => Format::V3,
        1 => Format::V2,
        _ => Format::V1,
    };
    let cut = (usize::from(*ctl) * data.len() / 255).min(data.len());
    let limits = Limits {
        max_attributes: MAX_ATTRIBUTES,
        max_attribute_bytes: MAX_ATTRIBUTE_BYTES,
        ..Limits::default()
    };
    let split = unpack(format, &[&data[..cut], &data[cut..]], &limits);
    let whole = unpack(format, &[data], &limits);
    // Same packages, or the same kind of error (its text may show more or fewer of the bytes
    // that were there when it was found).
    let kind = |r: &Result<Vec<Unpacked>, String>| match r {
        Ok(p) => Ok(p.clone()),
        Err(e) => Err(e.split('(').next().unwrap_or_default().to_owned()),
    };
    assert_eq!(
        kind(&split),
        kind(&whole),
        "the result depends on where the body was cut"
    );
    let Ok(unpacked) = split else {
        return;
    };
    for (_, len, content) in &unpacked {
        assert_eq!(*len, content.len() as u64);
    }
    match format {
        Format::V3 => {
            if let Some(reference) = reference_v3(data) {
                same(&reference, &unpacked);
            }
        }
        Format::V2 => {
            assert!(!unpacked.is_empty(), "an empty v2 body was accepted");
            let again = unpack(Format::V2, &[&encode(&unpacked, false)], &limits)
                .expect("a canonical re-encoding of an accepted v2 body unpacks");
            assert_eq!(again, unpacked);
            let reference = reference_v3(&encode(&unpacked, true))
                .expect("s2s_proto decodes the v3 form of an accepted v2 body");
            same(&reference, &unpacked);
        }
        Format::V1 => {
            assert_eq!(unpacked.len(), 1, "a v1 body holds one package");
            let (attributes, _, content) = &unpacked[0];
            // The writer escapes markup; a document grown past the unpacker's bound for the
            // attributes entry would be refused as over the limits, so it is not compared.
            let xml = properties_xml(attributes);
            if xml.len() <= MAX_ATTRIBUTES * (MAX_ATTRIBUTE_BYTES + 64) + 4096 {
                let again = unpack(Format::V1, &[&package_v1(&xml, content)], &limits)
                    .expect("a package written as FlowFilePackagerV1 does unpacks");
                assert_eq!(again, unpacked);
            }
        }
    }
});

/// `s2s_proto`'s whole-package decoder over a v3 body; `None` if it refuses it.
fn reference_v3(data: &[u8]) -> Option<Vec<flowfile::FlowFile>> {
    let mut d = PackageV3Decoder::new(flowfile::Limits {
        max_attributes: MAX_ATTRIBUTES,
        max_attribute_key_len: MAX_ATTRIBUTE_BYTES,
        max_attribute_value_len: MAX_ATTRIBUTE_BYTES,
        max_content_len: 1 << 20,
    });
    let mut buf = BytesMut::from(data);
    let mut whole = Vec::new();
    loop {
        match d.decode_eof(&mut buf) {
            Ok(Some(ff)) => whole.push(ff),
            Ok(None) => return Some(whole),
            Err(_) => return None,
        }
    }
}

fn same(reference: &[flowfile::FlowFile], unpacked: &[Unpacked]) {
    assert_eq!(reference.len(), unpacked.len(), "package count differs");
    for (ff, (attrs, _, content)) in reference.iter().zip(unpacked) {
        assert_eq!(&ff.attributes, attrs);
        assert_eq!(&ff.content[..], &content[..]);
    }
}

/// v2 (or v3 with `magic`) packages, lengths in their short form where they fit.
fn encode(packages: &[Unpacked], magic: bool) -> Vec<u8> {
    fn len(out: &mut Vec<u8>, n: usize) {
        if n < 0xFFFF {
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            out.extend_from_slice(&[0xFF, 0xFF]);
            out.extend_from_slice(&(n as i32).to_be_bytes());
        }
    }
    let mut out = Vec::new();
    for (attrs, _, content) in packages {
        if magic {
            out.extend_from_slice(&MAGIC);
        }
        len(&mut out, attrs.len());
        for (k, v) in attrs {
            len(&mut out, k.len());
            out.extend_from_slice(k.as_bytes());
            len(&mut out, v.len());
            out.extend_from_slice(v.as_bytes());
        }
        out.extend_from_slice(&(content.len() as i64).to_be_bytes());
        out.extend_from_slice(content);
    }
    out
}

/// The attributes as `java.util.Properties.storeToXML` writes them.
fn properties_xml(attrs: &[(String, String)]) -> Vec<u8> {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n<!DOCTYPE properties SYSTEM \"http://java.sun.com/dtd/properties.dtd\">\n<properties>\n",
    );
    for (k, v) in attrs {
        xml.push_str(&format!("<entry key=\"{}\">{}</entry>\n", esc(k), esc(v)));
    }
    xml.push_str("</properties>\n");
    xml.into_bytes()
}

/// A ustar header block for an entry of `size` bytes.
fn tar_header(name: &str, size: usize) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A flowfile-v1 package: tar of `flowfile.attributes` and `flowfile.content`.
fn package_v1(xml: &[u8], content: &[u8]) -> Vec<u8> {
    let pad = |out: &mut Vec<u8>| out.resize(out.len().div_ceil(512) * 512, 0);
    let mut out = tar_header("flowfile.attributes", xml.len());
    out.extend_from_slice(xml);
    pad(&mut out);
    out.extend(tar_header("flowfile.content", content.len()));
    out.extend_from_slice(content);
    pad(&mut out);
    out.resize(out.len() + 1024, 0);
    out
}
