//! Connection magic and resource/codec version negotiation (docs/site-to-site.md §2.1, §2.2, §2.7).
//!
//! A RAW connection starts with the 4 magic bytes, then the client proposes
//! `utf(resource name) + i32(version)` and the server answers with one *bare* status byte
//! (no `RC` prefix): `0x14` accepted, `0x15` + i32 "try this version instead", or `0xFF` abort.
//! The same exchange, without magic, negotiates the FlowFile codec after a
//! `NEGOTIATE_FLOWFILE_CODEC` request.

use bytes::{BufMut, BytesMut};

use super::reader::{self, Reader, Step};
use super::utf::{encode_utf, read_utf};
use super::{DecodeError, EncodeError};

/// The bytes a client writes once, first, on every RAW connection ("NiFi").
pub const MAGIC: [u8; 4] = *b"NiFi";

/// Resource name of the RAW socket protocol.
pub const RAW_PROTOCOL_NAME: &str = "SocketFlowFileProtocol";

/// RAW protocol versions this crate speaks, in order of preference (NiFi 1.x/2.x: the same).
pub const RAW_PROTOCOL_VERSIONS: [i32; 6] = [6, 5, 4, 3, 2, 1];

/// Resource name of the only FlowFile codec NiFi offers.
pub const CODEC_NAME: &str = "StandardFlowFileCodec";

/// The only codec version NiFi accepts; the server cannot step a codec version down.
pub const CODEC_VERSION: i32 = 1;

/// Status byte: proposal accepted.
pub const RESOURCE_OK: u8 = 0x14;
/// Status byte: name accepted, version not; an i32 with the server's preferred version follows.
pub const DIFFERENT_RESOURCE_VERSION: u8 = 0x15;
/// Status byte: negotiation aborted.
pub const ABORT: u8 = 0xFF;

/// Appends the connection magic.
pub fn encode_magic(buf: &mut BytesMut) {
    buf.put_slice(&MAGIC);
}

/// Checks the connection magic (server side). `Ok(None)` means fewer than 4 bytes buffered.
///
/// # Errors
/// [`DecodeError::BadMagic`] if the 4 bytes differ.
pub fn decode_magic(buf: &mut BytesMut) -> Result<Option<()>, DecodeError> {
    reader::run(buf, |r| {
        let m = r.array::<4>()?;
        if m != MAGIC {
            return Err(DecodeError::BadMagic {
                expected: &MAGIC,
                found: m.to_vec(),
            }
            .into());
        }
        Ok(())
    })
}

/// A proposal `utf(name) + i32(version)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceProposal {
    /// Resource name, e.g. [`RAW_PROTOCOL_NAME`] or [`CODEC_NAME`].
    pub name: String,
    /// Proposed version.
    pub version: i32,
}

impl ResourceProposal {
    /// A proposal of `name` at `version`.
    pub fn new(name: impl Into<String>, version: i32) -> Self {
        Self {
            name: name.into(),
            version,
        }
    }

    /// Appends the proposal.
    ///
    /// # Errors
    /// [`EncodeError::StringTooLong`] for a name over 65535 bytes.
    pub fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        encode_utf(&self.name, buf)?;
        buf.put_i32(self.version);
        Ok(())
    }

    /// Decodes a proposal (server side). `Ok(None)` means more bytes are needed.
    ///
    /// # Errors
    /// [`DecodeError::InvalidModifiedUtf8`] for a malformed name.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Self>, DecodeError> {
        reader::run(buf, |r| {
            Ok(Self {
                name: read_utf(r)?,
                version: r.i32()?,
            })
        })
    }
}

/// The server's answer to a [`ResourceProposal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NegotiationReply {
    /// `0x14`: accepted; negotiation is done.
    Ok,
    /// `0x15` + i32: re-propose a version no higher than this one (without magic).
    DifferentVersion(i32),
    /// `0xFF`: the server gave up.
    ///
    /// During *resource* negotiation NiFi sends no message after it, so do not wait for one.
    /// During *codec* negotiation (no port in the handshake) NiFi follows it with a `writeUTF`
    /// explanation, which [`super::utf::decode_utf`] can read.
    Abort,
}

impl NegotiationReply {
    /// Appends the reply (server side).
    pub fn encode(self, buf: &mut BytesMut) {
        match self {
            Self::Ok => buf.put_u8(RESOURCE_OK),
            Self::DifferentVersion(v) => {
                buf.put_u8(DIFFERENT_RESOURCE_VERSION);
                buf.put_i32(v);
            }
            Self::Abort => buf.put_u8(ABORT),
        }
    }

    /// Decodes a reply. `Ok(None)` means more bytes are needed.
    ///
    /// # Errors
    /// [`DecodeError::UnknownNegotiationStatus`] for any other status byte (the Java client
    /// treats those as "unable to negotiate").
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Self>, DecodeError> {
        reader::run(buf, read_reply)
    }
}

fn read_reply(r: &mut Reader<'_>) -> Step<NegotiationReply> {
    match r.u8()? {
        RESOURCE_OK => Ok(NegotiationReply::Ok),
        DIFFERENT_RESOURCE_VERSION => Ok(NegotiationReply::DifferentVersion(r.i32()?)),
        ABORT => Ok(NegotiationReply::Abort),
        other => Err(DecodeError::UnknownNegotiationStatus(other).into()),
    }
}

/// The version to re-propose after `DIFFERENT_RESOURCE_VERSION(server_preferred)`: the
/// highest of `supported` that is `<= server_preferred`, or `None` (give up).
pub fn step_down(supported: &[i32], server_preferred: i32) -> Option<i32> {
    supported
        .iter()
        .copied()
        .filter(|v| *v <= server_preferred)
        .max()
}

/// What a NiFi server answers to a proposal of `proposed` when it supports `supported`:
/// accept a supported version, else offer the highest supported version below it, else abort.
/// Useful for fake peers in tests.
pub fn server_reply(supported: &[i32], proposed: i32) -> NegotiationReply {
    if supported.contains(&proposed) {
        NegotiationReply::Ok
    } else {
        match supported.iter().copied().filter(|v| *v < proposed).max() {
            Some(v) => NegotiationReply::DifferentVersion(v),
            None => NegotiationReply::Abort,
        }
    }
}

/// Appends the codec proposal `utf("StandardFlowFileCodec") + i32(1)`.
///
/// It must follow the `NEGOTIATE_FLOWFILE_CODEC` request type (see
/// [`super::handshake::RequestType`]); [`super::handshake::encode_codec_negotiation`] writes both.
pub fn encode_codec_proposal(buf: &mut BytesMut) {
    ResourceProposal::new(CODEC_NAME, CODEC_VERSION)
        .encode(buf)
        .expect("the codec name is a short constant");
}

#[cfg(test)]
mod tests {
    use super::*;

    const TV1: &[u8] = b"NiFi\x00\x16SocketFlowFileProtocol\x00\x00\x00\x06";

    #[test]
    fn tv1_magic_and_proposal() {
        let mut b = BytesMut::new();
        encode_magic(&mut b);
        ResourceProposal::new(RAW_PROTOCOL_NAME, 6)
            .encode(&mut b)
            .unwrap();
        assert_eq!(&b[..], TV1);
        assert_eq!(b.len(), 32);

        let mut b = BytesMut::from(TV1);
        assert_eq!(decode_magic(&mut b), Ok(Some(())));
        assert_eq!(
            ResourceProposal::decode(&mut b),
            Ok(Some(ResourceProposal::new(RAW_PROTOCOL_NAME, 6)))
        );
        assert!(b.is_empty());
    }

    #[test]
    fn tv1_step_down_to_5() {
        let mut b = BytesMut::from(&[0x15, 0, 0, 0, 5][..]);
        let reply = NegotiationReply::decode(&mut b).unwrap().unwrap();
        assert_eq!(reply, NegotiationReply::DifferentVersion(5));
        assert_eq!(step_down(&RAW_PROTOCOL_VERSIONS, 5), Some(5));
        let mut b = BytesMut::new();
        ResourceProposal::new(RAW_PROTOCOL_NAME, 5)
            .encode(&mut b)
            .unwrap();
        assert_eq!(
            &b[..],
            &TV1[4..28]
                .iter()
                .chain(&[0, 0, 0, 5])
                .copied()
                .collect::<Vec<_>>()[..]
        );
        // A proposal of 7 to NiFi gets 6 back.
        assert_eq!(
            server_reply(&RAW_PROTOCOL_VERSIONS, 7),
            NegotiationReply::DifferentVersion(6)
        );
        assert_eq!(server_reply(&[5, 4], 3), NegotiationReply::Abort);
        assert_eq!(step_down(&[6, 5], 4), None);
    }

    #[test]
    fn replies_decode_incrementally() {
        for (wire, want) in [
            (&[0x14][..], NegotiationReply::Ok),
            (
                &[0x15, 0, 0, 0, 6][..],
                NegotiationReply::DifferentVersion(6),
            ),
            (&[0xFF][..], NegotiationReply::Abort),
        ] {
            for cut in 0..wire.len() {
                assert_eq!(
                    NegotiationReply::decode(&mut BytesMut::from(&wire[..cut])),
                    Ok(None)
                );
            }
            let mut enc = BytesMut::new();
            want.encode(&mut enc);
            assert_eq!(&enc[..], wire);
            assert_eq!(
                NegotiationReply::decode(&mut BytesMut::from(wire)),
                Ok(Some(want))
            );
        }
        assert_eq!(
            NegotiationReply::decode(&mut BytesMut::from(&b"RC"[..])),
            Err(DecodeError::UnknownNegotiationStatus(b'R'))
        );
    }

    #[test]
    fn bad_magic_is_typed() {
        assert!(matches!(
            decode_magic(&mut BytesMut::from(&b"NiFx"[..])),
            Err(DecodeError::BadMagic { .. })
        ));
        assert_eq!(decode_magic(&mut BytesMut::from(&b"NiF"[..])), Ok(None));
    }
}
