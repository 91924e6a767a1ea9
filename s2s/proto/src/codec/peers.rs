//! The `REQUEST_PEER_LIST` reply (docs/site-to-site.md §2.6): the same layout at every protocol version.
//!
//! ```text
//! i32 count, then per peer: utf hostname, i32 port, u8 secure, i32 flowFileCount
//! ```

use bytes::{BufMut, BytesMut};

use super::reader::{self, Reader, Step};
use super::utf::{encode_utf, read_utf};
use super::{DecodeError, EncodeError};

/// One advertised RAW peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Host name as advertised (`nifi.remote.input.host` or the node's address).
    pub hostname: String,
    /// RAW S2S port of that peer.
    pub port: u16,
    /// Whether the peer requires TLS.
    pub secure: bool,
    /// FlowFiles queued on that node (0 for a standalone NiFi).
    pub flow_file_count: u32,
}

/// Default bound on the peer count accepted by [`decode_peer_list`].
pub const DEFAULT_MAX_PEERS: usize = 10_000;

/// Decodes a peer list of at most `max_peers` entries. `Ok(None)` means more bytes are needed.
///
/// # Errors
/// [`DecodeError::LimitExceeded`]/[`DecodeError::Negative`] for a bad count,
/// [`DecodeError::OutOfRange`] for a port outside 0..=65535 or a negative FlowFile count,
/// [`DecodeError::InvalidModifiedUtf8`] for a bad host name.
pub fn decode_peer_list(
    buf: &mut BytesMut,
    max_peers: usize,
) -> Result<Option<Vec<Peer>>, DecodeError> {
    reader::run(buf, |r| read_peer_list(r, max_peers))
}

fn read_peer_list(r: &mut Reader<'_>, max_peers: usize) -> Step<Vec<Peer>> {
    let n = r.len_i32("peer count", max_peers as u64)?;
    // Each peer takes at least 11 bytes: cap the allocation by what is actually buffered.
    let mut peers = Vec::with_capacity(n.min(r.remaining() / 11 + 1));
    for _ in 0..n {
        let hostname = read_utf(r)?;
        let port = r.i32()?;
        let port = u16::try_from(port).map_err(|_| DecodeError::OutOfRange {
            field: "peer port",
            value: port.into(),
        })?;
        // Java writeBoolean/readBoolean: any non-zero byte is true.
        let secure = r.u8()? != 0;
        let count = r.i32()?;
        let flow_file_count = u32::try_from(count).map_err(|_| DecodeError::OutOfRange {
            field: "peer flowFileCount",
            value: count.into(),
        })?;
        peers.push(Peer {
            hostname,
            port,
            secure,
            flow_file_count,
        });
    }
    Ok(peers)
}

/// Appends a peer list (server side, fake peers).
///
/// # Errors
/// [`EncodeError::StringTooLong`] for a host name over 65535 bytes,
/// [`EncodeError::OutOfRange`] for a count above `i32::MAX`. Nothing is written then.
pub fn encode_peer_list(peers: &[Peer], buf: &mut BytesMut) -> Result<(), EncodeError> {
    if i32::try_from(peers.len()).is_err() {
        return Err(EncodeError::OutOfRange {
            field: "peer count",
            value: peers.len() as u64,
        });
    }
    for p in peers {
        if p.flow_file_count > i32::MAX as u32 {
            return Err(EncodeError::OutOfRange {
                field: "peer flowFileCount",
                value: p.flow_file_count.into(),
            });
        }
        let len = super::utf::modified_utf8_len(&p.hostname);
        if len > super::utf::MAX_UTF_LEN {
            return Err(EncodeError::StringTooLong { len });
        }
    }
    buf.put_i32(peers.len() as i32);
    for p in peers {
        encode_utf(&p.hostname, buf)?;
        buf.put_i32(i32::from(p.port));
        buf.put_u8(u8::from(p.secure));
        buf.put_i32(p.flow_file_count as i32);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TV8: &[u8] = b"\x00\x00\x00\x02\x00\x05nifi1\x00\x00\x28\xcb\x01\x00\x00\x00\x78\
\x00\x05nifi2\x00\x00\x28\xcb\x01\x00\x00\x00\x00";

    fn tv8_peers() -> Vec<Peer> {
        vec![
            Peer {
                hostname: "nifi1".into(),
                port: 10443,
                secure: true,
                flow_file_count: 120,
            },
            Peer {
                hostname: "nifi2".into(),
                port: 10443,
                secure: true,
                flow_file_count: 0,
            },
        ]
    }

    #[test]
    fn tv8_two_peers() {
        assert_eq!(TV8.len(), 36);
        let mut b = BytesMut::from(TV8);
        assert_eq!(
            decode_peer_list(&mut b, DEFAULT_MAX_PEERS),
            Ok(Some(tv8_peers()))
        );
        assert!(b.is_empty());
        let mut b = BytesMut::new();
        encode_peer_list(&tv8_peers(), &mut b).unwrap();
        assert_eq!(&b[..], TV8);
        for cut in 0..TV8.len() {
            let mut b = BytesMut::from(&TV8[..cut]);
            assert_eq!(decode_peer_list(&mut b, DEFAULT_MAX_PEERS), Ok(None));
            assert_eq!(b.len(), cut);
        }
    }

    #[test]
    fn invalid_lists() {
        assert!(matches!(
            decode_peer_list(&mut BytesMut::from(TV8), 1),
            Err(DecodeError::LimitExceeded { len: 2, max: 1, .. })
        ));
        assert!(matches!(
            decode_peer_list(&mut BytesMut::from(&b"\x80\x00\x00\x00"[..]), 10),
            Err(DecodeError::Negative { .. })
        ));
        let mut bad_port = TV8.to_vec();
        bad_port[11..15].copy_from_slice(&70000i32.to_be_bytes());
        assert!(matches!(
            decode_peer_list(&mut BytesMut::from(&bad_port[..]), 10),
            Err(DecodeError::OutOfRange {
                field: "peer port",
                ..
            })
        ));
    }
}
