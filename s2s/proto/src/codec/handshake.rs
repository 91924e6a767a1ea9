//! The handshake request and request types (docs/site-to-site.md §2.3, §2.5, §2.7).

use bytes::{BufMut, BytesMut};

use super::negotiation::encode_codec_proposal;
use super::reader::{self, Reader, Step};
use super::utf::{encode_utf, modified_utf8_len, read_utf};
use super::{DecodeError, EncodeError};

/// Handshake property names (`org.apache.nifi.remote.protocol.HandshakeProperty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandshakeProperty {
    /// `true`/`false`: wrap FlowFiles in the `SYNC` zlib envelope. Mandatory.
    Gzip,
    /// Target port id.
    PortIdentifier,
    /// Server-side socket timeout in milliseconds.
    RequestExpirationMillis,
    /// Max FlowFiles per RECEIVE transaction (protocol >= 5).
    BatchCount,
    /// Max content bytes per RECEIVE transaction (protocol >= 5).
    BatchSize,
    /// Max milliseconds of sending per RECEIVE transaction (protocol >= 5).
    BatchDuration,
}

impl HandshakeProperty {
    /// All properties, in the order [`HandshakeRequest::encode`] writes them.
    pub const ALL: [Self; 6] = [
        Self::Gzip,
        Self::PortIdentifier,
        Self::RequestExpirationMillis,
        Self::BatchCount,
        Self::BatchSize,
        Self::BatchDuration,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Gzip => "GZIP",
            Self::PortIdentifier => "PORT_IDENTIFIER",
            Self::RequestExpirationMillis => "REQUEST_EXPIRATION_MILLIS",
            Self::BatchCount => "BATCH_COUNT",
            Self::BatchSize => "BATCH_SIZE",
            Self::BatchDuration => "BATCH_DURATION",
        }
    }

    /// Parses a wire name (exact, upper-case, like NiFi).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// What the client sends right after protocol negotiation.
///
/// [`encode`](Self::encode) applies the version rules of NiFi's Java client: the transit URI
/// only at protocol >= 3, `BATCH_*` only at protocol >= 5 and only when > 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeRequest {
    /// Communications identifier; Java and MiNiFi send a random UUID.
    pub comms_id: String,
    /// `nifi://host:port` of the peer, sent at protocol >= 3.
    pub transit_uri_prefix: String,
    /// Whether FlowFiles travel in the `SYNC` zlib envelope (both directions).
    pub gzip: bool,
    /// Target port id; `None` for a peer-list-only connection (allowed at protocol >= 5).
    pub port_id: Option<String>,
    /// Server-side read timeout in milliseconds (Java default 30000).
    pub request_expiration_millis: u64,
    /// RECEIVE batch limit in FlowFiles; `0` = not sent.
    pub batch_count: u32,
    /// RECEIVE batch limit in content bytes; `0` = not sent.
    pub batch_size: u64,
    /// RECEIVE batch limit in milliseconds; `0` = not sent.
    pub batch_duration_millis: u64,
}

impl HandshakeRequest {
    /// A request with Java's defaults: no compression, 30 s expiration, no batch limits.
    pub fn new(
        comms_id: impl Into<String>,
        transit_uri_prefix: impl Into<String>,
        port_id: Option<String>,
    ) -> Self {
        Self {
            comms_id: comms_id.into(),
            transit_uri_prefix: transit_uri_prefix.into(),
            gzip: false,
            port_id,
            request_expiration_millis: 30_000,
            batch_count: 0,
            batch_size: 0,
            batch_duration_millis: 0,
        }
    }

    /// The `(name, value)` pairs sent at `protocol_version`, in wire order.
    pub fn properties(&self, protocol_version: i32) -> Vec<(HandshakeProperty, String)> {
        let mut props = vec![(HandshakeProperty::Gzip, self.gzip.to_string())];
        if let Some(port) = &self.port_id {
            props.push((HandshakeProperty::PortIdentifier, port.clone()));
        }
        props.push((
            HandshakeProperty::RequestExpirationMillis,
            self.request_expiration_millis.to_string(),
        ));
        if protocol_version >= 5 {
            for (p, v) in [
                (HandshakeProperty::BatchCount, u64::from(self.batch_count)),
                (HandshakeProperty::BatchSize, self.batch_size),
                (HandshakeProperty::BatchDuration, self.batch_duration_millis),
            ] {
                if v > 0 {
                    props.push((p, v.to_string()));
                }
            }
        }
        props
    }

    /// Appends the handshake for the negotiated `protocol_version`.
    ///
    /// # Errors
    /// [`EncodeError::OutOfRange`] for a value NiFi cannot parse (Java `int`/`long`),
    /// [`EncodeError::StringTooLong`] for a string over 65535 bytes. Nothing is written then.
    pub fn encode(&self, protocol_version: i32, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let long_max = i64::MAX as u64;
        for (field, v, max) in [
            ("BATCH_COUNT", u64::from(self.batch_count), i32::MAX as u64),
            ("BATCH_SIZE", self.batch_size, long_max),
            ("BATCH_DURATION", self.batch_duration_millis, long_max),
            (
                "REQUEST_EXPIRATION_MILLIS",
                self.request_expiration_millis,
                long_max,
            ),
        ] {
            if v > max {
                return Err(EncodeError::OutOfRange { field, value: v });
            }
        }
        let props = self.properties(protocol_version);
        let mut strings: Vec<&str> = vec![&self.comms_id];
        if protocol_version >= 3 {
            strings.push(&self.transit_uri_prefix);
        }
        for (p, v) in &props {
            strings.push(p.as_str());
            strings.push(v);
        }
        if let Some(len) = strings
            .iter()
            .map(|s| modified_utf8_len(s))
            .find(|len| *len > super::utf::MAX_UTF_LEN)
        {
            return Err(EncodeError::StringTooLong { len });
        }
        let head = if protocol_version >= 3 { 2 } else { 1 };
        for s in &strings[..head] {
            encode_utf(s, buf)?;
        }
        buf.put_i32(props.len() as i32);
        for s in &strings[head..] {
            encode_utf(s, buf)?;
        }
        Ok(())
    }
}

/// A handshake as read by a server (fake peers, tests): properties are kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedHandshake {
    /// Communications identifier.
    pub comms_id: String,
    /// Transit URI prefix (present at protocol >= 3).
    pub transit_uri_prefix: Option<String>,
    /// `(name, value)` pairs in wire order.
    pub properties: Vec<(String, String)>,
}

impl ReceivedHandshake {
    /// Largest property count accepted by [`decode`](Self::decode).
    pub const MAX_PROPERTIES: u64 = 64;

    /// Decodes a handshake sent at `protocol_version`. `Ok(None)` means more bytes are needed.
    ///
    /// # Errors
    /// [`DecodeError::LimitExceeded`] / [`DecodeError::Negative`] for a bad property count,
    /// [`DecodeError::InvalidModifiedUtf8`] for a bad string.
    pub fn decode(buf: &mut BytesMut, protocol_version: i32) -> Result<Option<Self>, DecodeError> {
        reader::run(buf, |r| read_handshake(r, protocol_version))
    }

    /// The value of property `p`, if present (last one wins, like NiFi's map).
    pub fn property(&self, p: HandshakeProperty) -> Option<&str> {
        self.properties
            .iter()
            .rev()
            .find(|(k, _)| k == p.as_str())
            .map(|(_, v)| v.as_str())
    }
}

fn read_handshake(r: &mut Reader<'_>, protocol_version: i32) -> Step<ReceivedHandshake> {
    let comms_id = read_utf(r)?;
    let transit_uri_prefix = if protocol_version >= 3 {
        Some(read_utf(r)?)
    } else {
        None
    };
    let n = r.len_i32(
        "handshake property count",
        ReceivedHandshake::MAX_PROPERTIES,
    )?;
    let mut properties = Vec::with_capacity(n);
    for _ in 0..n {
        properties.push((read_utf(r)?, read_utf(r)?));
    }
    Ok(ReceivedHandshake {
        comms_id,
        transit_uri_prefix,
        properties,
    })
}

/// A request, sent as `utf(name)` between transactions (docs/site-to-site.md §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestType {
    /// `NEGOTIATE_FLOWFILE_CODEC`: followed by a codec proposal.
    NegotiateFlowFileCodec,
    /// `REQUEST_PEER_LIST`: answered by a peer list.
    RequestPeerList,
    /// `SEND_FLOWFILES`: starts a SEND transaction.
    SendFlowFiles,
    /// `RECEIVE_FLOWFILES`: starts a RECEIVE transaction.
    ReceiveFlowFiles,
    /// `SHUTDOWN`: no reply; the server closes.
    Shutdown,
}

impl RequestType {
    const ALL: [Self; 5] = [
        Self::NegotiateFlowFileCodec,
        Self::RequestPeerList,
        Self::SendFlowFiles,
        Self::ReceiveFlowFiles,
        Self::Shutdown,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NegotiateFlowFileCodec => "NEGOTIATE_FLOWFILE_CODEC",
            Self::RequestPeerList => "REQUEST_PEER_LIST",
            Self::SendFlowFiles => "SEND_FLOWFILES",
            Self::ReceiveFlowFiles => "RECEIVE_FLOWFILES",
            Self::Shutdown => "SHUTDOWN",
        }
    }

    /// Appends `utf(name)`.
    pub fn encode(self, buf: &mut BytesMut) {
        encode_utf(self.as_str(), buf).expect("request names are short constants");
    }

    /// Decodes a request (server side). `Ok(None)` means more bytes are needed.
    ///
    /// # Errors
    /// [`DecodeError::UnknownRequestType`] for a name NiFi does not define.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Self>, DecodeError> {
        reader::run(buf, |r| {
            let name = read_utf(r)?;
            Self::ALL
                .into_iter()
                .find(|t| t.as_str() == name)
                .ok_or_else(|| DecodeError::UnknownRequestType(name).into())
        })
    }
}

/// Appends `NEGOTIATE_FLOWFILE_CODEC` and the proposal `("StandardFlowFileCodec", 1)`.
/// The reply is a [`super::negotiation::NegotiationReply`].
pub fn encode_codec_negotiation(buf: &mut BytesMut) {
    RequestType::NegotiateFlowFileCodec.encode(buf);
    encode_codec_proposal(buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMS: &str = "3e1c8a10-2b5d-4c1e-9f00-0123456789ab";
    const PORT: &str = "c56a4180-65aa-42ec-a945-5fd21dec0538";

    fn tv2_request() -> HandshakeRequest {
        let mut h = HandshakeRequest::new(COMMS, "nifi://nifi1:10443", Some(PORT.into()));
        h.batch_count = 5;
        h
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn tv2() -> Vec<u8> {
        hex("00 24 33 65 31 63 38 61 31 30 2d 32 62 35 64 2d
             34 63 31 65 2d 39 66 30 30 2d 30 31 32 33 34 35
             36 37 38 39 61 62 00 12 6e 69 66 69 3a 2f 2f 6e
             69 66 69 31 3a 31 30 34 34 33 00 00 00 04 00 04
             47 5a 49 50 00 05 66 61 6c 73 65 00 0f 50 4f 52
             54 5f 49 44 45 4e 54 49 46 49 45 52 00 24 63 35
             36 61 34 31 38 30 2d 36 35 61 61 2d 34 32 65 63
             2d 61 39 34 35 2d 35 66 64 32 31 64 65 63 30 35
             33 38 00 19 52 45 51 55 45 53 54 5f 45 58 50 49
             52 41 54 49 4f 4e 5f 4d 49 4c 4c 49 53 00 05 33
             30 30 30 30 00 0b 42 41 54 43 48 5f 43 4f 55 4e
             54 00 01 35")
    }

    #[test]
    fn tv2_handshake_v6() {
        let mut b = BytesMut::new();
        tv2_request().encode(6, &mut b).unwrap();
        assert_eq!(b.len(), 180);
        assert_eq!(&b[..], &tv2()[..]);

        let got = ReceivedHandshake::decode(&mut b, 6).unwrap().unwrap();
        assert!(b.is_empty());
        assert_eq!(got.comms_id, COMMS);
        assert_eq!(
            got.transit_uri_prefix.as_deref(),
            Some("nifi://nifi1:10443")
        );
        assert_eq!(got.property(HandshakeProperty::PortIdentifier), Some(PORT));
        assert_eq!(got.property(HandshakeProperty::BatchCount), Some("5"));
    }

    #[test]
    fn version_rules() {
        // v1/v2: no transit URI; v4: no BATCH_*.
        let mut v2 = BytesMut::new();
        tv2_request().encode(2, &mut v2).unwrap();
        let full = tv2();
        // Drop the transit URI (2 + 18 bytes at offset 38) and BATCH_COUNT (2+11+2+1 bytes at the end).
        let mut want: Vec<u8> = full[..38].iter().chain(&full[58..164]).copied().collect();
        want[41] = 3; // property count
        assert_eq!(&v2[..], &want[..]);
        let got = ReceivedHandshake::decode(&mut v2, 2).unwrap().unwrap();
        assert_eq!(got.transit_uri_prefix, None);
        assert_eq!(got.property(HandshakeProperty::BatchCount), None);

        let h = HandshakeRequest::new(COMMS, "nifi://x:1", None);
        let names: Vec<_> = h.properties(6).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            names,
            [
                HandshakeProperty::Gzip,
                HandshakeProperty::RequestExpirationMillis
            ]
        );
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let mut h = tv2_request();
        h.batch_count = u32::MAX;
        let mut b = BytesMut::new();
        assert!(matches!(
            h.encode(6, &mut b),
            Err(EncodeError::OutOfRange { .. })
        ));
        h.batch_count = 0;
        h.comms_id = "é".repeat(40_000);
        assert!(matches!(
            h.encode(6, &mut b),
            Err(EncodeError::StringTooLong { .. })
        ));
        assert!(b.is_empty());
    }

    #[test]
    fn tv3_codec_negotiation_and_request_strings() {
        let mut b = BytesMut::new();
        encode_codec_negotiation(&mut b);
        assert_eq!(
            &b[..],
            &b"\x00\x18NEGOTIATE_FLOWFILE_CODEC\x00\x15StandardFlowFileCodec\x00\x00\x00\x01"[..]
        );
        assert_eq!(b.len(), 53);
        for (t, wire) in [
            (RequestType::SendFlowFiles, &b"\x00\x0eSEND_FLOWFILES"[..]),
            (RequestType::ReceiveFlowFiles, b"\x00\x11RECEIVE_FLOWFILES"),
            (RequestType::RequestPeerList, b"\x00\x11REQUEST_PEER_LIST"),
            (RequestType::Shutdown, b"\x00\x08SHUTDOWN"),
        ] {
            let mut b = BytesMut::new();
            t.encode(&mut b);
            assert_eq!(&b[..], wire);
            assert_eq!(RequestType::decode(&mut b), Ok(Some(t)));
        }
        assert_eq!(
            RequestType::decode(&mut BytesMut::from(&b"\x00\x03FOO"[..])),
            Err(DecodeError::UnknownRequestType("FOO".into()))
        );
    }

    #[test]
    fn hostile_property_count() {
        let mut b = BytesMut::from(&b"\x00\x01a\xff\xff\xff\xff"[..]);
        assert!(matches!(
            ReceivedHandshake::decode(&mut b, 2),
            Err(DecodeError::Negative { .. })
        ));
        let mut b = BytesMut::from(&b"\x00\x01a\x7f\xff\xff\xff"[..]);
        assert!(matches!(
            ReceivedHandshake::decode(&mut b, 2),
            Err(DecodeError::LimitExceeded { .. })
        ));
    }
}
