//! Response codes and their `'R' 'C' code [message]` framing (docs/site-to-site.md §2.4).
//!
//! NiFi writes every status during the handshake and transactions as the two bytes `52 43`
//! ("RC"), one code byte, and, only for codes that carry one, a `writeUTF` message. Whether a
//! message follows depends on the code alone, so a reader must know the table below; an
//! unknown code byte leaves the stream unframeable.

use std::fmt;

use bytes::{BufMut, BytesMut};

use super::reader::{self, Reader, Step};
use super::utf::{encode_utf, modified_utf8_len, read_utf};
use super::{DecodeError, EncodeError};

/// The two bytes that start every response code frame.
pub const RC_PREFIX: [u8; 2] = *b"RC";

/// A NiFi S2S response code (`org.apache.nifi.remote.protocol.ResponseCode`).
///
/// A newtype rather than an enum: any byte round-trips, and unknown values print as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResponseCode(pub u8);

macro_rules! response_codes {
    ($( $(#[$doc:meta])* $name:ident = $value:literal, message: $msg:literal; )*) => {
        impl ResponseCode {
            $( $(#[$doc])* pub const $name: Self = Self($value); )*
        }

        /// `(code, name, carries a message)` for every code NiFi defines.
        const TABLE: &[(u8, &str, bool)] = &[ $( ($value, stringify!($name), $msg), )* ];
    };
}

response_codes! {
    /// Reserved; never sent.
    RESERVED = 0, message: false;
    /// Handshake accepted.
    PROPERTIES_OK = 1, message: false;
    /// Another FlowFile follows in this transaction.
    CONTINUE_TRANSACTION = 10, message: false;
    /// No more FlowFiles in this transaction.
    FINISH_TRANSACTION = 11, message: false;
    /// Confirmation; the message is the decimal CRC32 (or empty in the SEND echo).
    CONFIRM_TRANSACTION = 12, message: true;
    /// The server committed the transaction.
    TRANSACTION_FINISHED = 13, message: false;
    /// Committed, but the destination's queues are full: back off.
    TRANSACTION_FINISHED_BUT_DESTINATION_FULL = 14, message: false;
    /// Transaction cancelled; the message explains why.
    CANCEL_TRANSACTION = 15, message: true;
    /// CRC32 mismatch; the transaction is rolled back.
    BAD_CHECKSUM = 19, message: false;
    /// RECEIVE: the port has FlowFiles; the first one follows.
    MORE_DATA = 20, message: false;
    /// RECEIVE: the port has nothing to send.
    NO_MORE_DATA = 21, message: false;
    /// Handshake: no public port with that id.
    UNKNOWN_PORT = 200, message: false;
    /// Handshake: the port is not running or not valid; the message says which.
    PORT_NOT_IN_VALID_STATE = 201, message: true;
    /// Handshake: the port's destination queues are full (protocol >= 2).
    PORTS_DESTINATION_FULL = 202, message: false;
    /// Handshake: unknown property name.
    UNKNOWN_PROPERTY_NAME = 230, message: true;
    /// Handshake: a property value could not be parsed.
    ILLEGAL_PROPERTY_VALUE = 231, message: true;
    /// Handshake: a mandatory property is missing.
    MISSING_PROPERTY = 232, message: true;
    /// The peer is not authorized for the port.
    UNAUTHORIZED = 240, message: true;
    /// Abort (HTTP transport JSON bodies in practice).
    ABORT = 250, message: true;
    /// NiFi's internal placeholder for an unknown code; never on the wire.
    UNRECOGNIZED_RESPONSE_CODE = 254, message: false;
    /// End of stream; never sent.
    END_OF_STREAM = 255, message: false;
}

impl ResponseCode {
    fn entry(self) -> Option<&'static (u8, &'static str, bool)> {
        TABLE.iter().find(|(c, _, _)| *c == self.0)
    }

    /// The code's byte value.
    pub const fn as_u8(self) -> u8 {
        self.0
    }

    /// NiFi's constant name (`"BAD_CHECKSUM"`), or `None` for codes NiFi does not define.
    pub fn name(self) -> Option<&'static str> {
        self.entry().map(|(_, n, _)| *n)
    }

    /// Whether NiFi defines this code.
    pub fn is_known(self) -> bool {
        self.entry().is_some()
    }

    /// Whether a `writeUTF` message follows this code on the wire (`false` for unknown codes).
    pub fn carries_message(self) -> bool {
        self.entry().is_some_and(|(_, _, m)| *m)
    }

    /// Every code NiFi defines, in ascending order.
    pub fn all() -> impl Iterator<Item = Self> {
        TABLE.iter().map(|(c, _, _)| Self(*c))
    }

    /// Appends the 3-byte frame `52 43 code`, plus an empty message (`00 00`) if the code
    /// carries one.
    pub fn encode(self, buf: &mut BytesMut) {
        buf.put_slice(&[RC_PREFIX[0], RC_PREFIX[1], self.0]);
        if self.carries_message() {
            buf.put_u16(0);
        }
    }
}

impl From<u8> for ResponseCode {
    fn from(v: u8) -> Self {
        Self(v)
    }
}

impl From<ResponseCode> for u8 {
    fn from(c: ResponseCode) -> Self {
        c.0
    }
}

impl fmt::Debug for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "ResponseCode({n})"),
            None => write!(f, "ResponseCode({:#04x})", self.0),
        }
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({})", self.0),
            None => write!(f, "{:#04x}", self.0),
        }
    }
}

/// One decoded response code frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The code.
    pub code: ResponseCode,
    /// The message; `Some` exactly when [`ResponseCode::carries_message`].
    pub message: Option<String>,
}

impl Response {
    /// A frame for `code`; codes that carry a message get an empty one.
    pub fn new(code: ResponseCode) -> Self {
        Self {
            code,
            message: code.carries_message().then(String::new),
        }
    }

    /// A frame for `code` with `message`.
    pub fn with_message(code: ResponseCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: Some(message.into()),
        }
    }

    /// Appends the frame.
    ///
    /// # Errors
    /// [`EncodeError::UnexpectedMessage`] if a message is given for a code that carries
    /// none, [`EncodeError::StringTooLong`] for a message over 65535 bytes; nothing is
    /// written then.
    pub fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        if !self.code.carries_message() {
            if self.message.is_some() {
                return Err(EncodeError::UnexpectedMessage(self.code));
            }
            self.code.encode(buf);
            return Ok(());
        }
        let msg = self.message.as_deref().unwrap_or("");
        let len = modified_utf8_len(msg);
        if len > super::utf::MAX_UTF_LEN {
            return Err(EncodeError::StringTooLong { len });
        }
        buf.put_slice(&[RC_PREFIX[0], RC_PREFIX[1], self.code.0]);
        encode_utf(msg, buf)
    }

    /// Decodes one frame. `Ok(None)` means more bytes are needed (nothing is consumed).
    ///
    /// # Errors
    /// [`DecodeError::MissingResponsePrefix`] when the first two bytes are not `52 43`
    /// (reported as soon as the mismatching byte arrives), [`DecodeError::UnknownResponseCode`]
    /// for a code NiFi does not define, [`DecodeError::InvalidModifiedUtf8`] for a bad message.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Self>, DecodeError> {
        // A wrong first byte is fatal even before the second one arrives.
        if let Some(&b0) = buf.first()
            && b0 != RC_PREFIX[0]
        {
            return Err(DecodeError::MissingResponsePrefix {
                found: [b0, buf.get(1).copied().unwrap_or(0)],
            });
        }
        reader::run(buf, read_response)
    }
}

pub(crate) fn read_response(r: &mut Reader<'_>) -> Step<Response> {
    let prefix = r.array::<2>()?;
    if prefix != RC_PREFIX {
        return Err(DecodeError::MissingResponsePrefix { found: prefix }.into());
    }
    let code = ResponseCode(r.u8()?);
    if !code.is_known() {
        return Err(DecodeError::UnknownResponseCode(code).into());
    }
    let message = if code.carries_message() {
        Some(read_utf(r)?)
    } else {
        None
    };
    Ok(Response { code, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Response) -> Vec<u8> {
        let mut b = BytesMut::new();
        r.encode(&mut b).unwrap();
        b.to_vec()
    }

    #[test]
    fn table_matches_nifi() {
        let with_msg: Vec<u8> = ResponseCode::all()
            .filter(|c| c.carries_message())
            .map(u8::from)
            .collect();
        assert_eq!(with_msg, [12, 15, 201, 230, 231, 232, 240, 250]);
        assert_eq!(ResponseCode::all().count(), 21);
        assert_eq!(ResponseCode::BAD_CHECKSUM.as_u8(), 0x13);
        assert_eq!(ResponseCode::UNAUTHORIZED.as_u8(), 0xF0);
    }

    #[test]
    fn unknown_codes_round_trip_and_print_hex() {
        let c = ResponseCode::from(0x42);
        assert!(!c.is_known());
        assert_eq!(u8::from(c), 0x42);
        assert_eq!(c.to_string(), "0x42");
        assert_eq!(format!("{c:?}"), "ResponseCode(0x42)");
        assert_eq!(ResponseCode::BAD_CHECKSUM.to_string(), "BAD_CHECKSUM (19)");
        let mut b = BytesMut::from(&b"RC\x42rest"[..]);
        assert_eq!(
            Response::decode(&mut b),
            Err(DecodeError::UnknownResponseCode(c))
        );
    }

    #[test]
    fn tv5_confirm_with_crc_and_echo() {
        let wire = b"RC\x0c\x00\x0a4046154554";
        let r = Response::with_message(ResponseCode::CONFIRM_TRANSACTION, "4046154554");
        assert_eq!(enc(&r), wire);
        let mut b = BytesMut::from(&wire[..]);
        assert_eq!(Response::decode(&mut b), Ok(Some(r)));
        assert!(b.is_empty());
        assert_eq!(
            enc(&Response::new(ResponseCode::CONFIRM_TRANSACTION)),
            b"RC\x0c\x00\x00"
        );
        assert_eq!(
            enc(&Response::new(ResponseCode::TRANSACTION_FINISHED)),
            b"RC\x0d"
        );
    }

    #[test]
    fn tv2_error_replies() {
        let mut b = BytesMut::from(&b"RC\xe8\x00\x15Missing Property GZIP"[..]);
        assert_eq!(
            Response::decode(&mut b).unwrap(),
            Some(Response::with_message(
                ResponseCode::MISSING_PROPERTY,
                "Missing Property GZIP"
            ))
        );
        let mut b = BytesMut::from(&b"RC\xc8"[..]);
        assert_eq!(
            Response::decode(&mut b).unwrap().map(|r| r.code),
            Some(ResponseCode::UNKNOWN_PORT)
        );
    }

    #[test]
    fn missing_prefix_is_typed() {
        let mut b = BytesMut::from(&[0x00, 0x00, 0x00, 0x02][..]);
        assert_eq!(
            Response::decode(&mut b),
            Err(DecodeError::MissingResponsePrefix { found: [0, 0] })
        );
        let mut b = BytesMut::from(&b"RX\x0d"[..]);
        assert_eq!(
            Response::decode(&mut b),
            Err(DecodeError::MissingResponsePrefix { found: *b"RX" })
        );
        // A wrong first byte is reported without waiting for the second.
        let mut b = BytesMut::from(&b"X"[..]);
        assert!(matches!(
            Response::decode(&mut b),
            Err(DecodeError::MissingResponsePrefix { .. })
        ));
    }

    #[test]
    fn truncated_frames_need_more() {
        let wire = b"RC\x0f\x00\x06Cancel";
        for cut in 0..wire.len() {
            let mut b = BytesMut::from(&wire[..cut]);
            assert_eq!(Response::decode(&mut b), Ok(None), "cut {cut}");
            assert_eq!(b.len(), cut);
        }
    }

    #[test]
    fn message_on_code_without_message_is_refused() {
        let r = Response::with_message(ResponseCode::TRANSACTION_FINISHED, "x");
        let mut b = BytesMut::new();
        assert_eq!(
            r.encode(&mut b),
            Err(EncodeError::UnexpectedMessage(
                ResponseCode::TRANSACTION_FINISHED
            ))
        );
        assert!(b.is_empty());
    }
}
