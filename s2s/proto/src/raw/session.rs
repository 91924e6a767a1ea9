//! The client side of one RAW S2S connection as a sans-IO state machine.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::{Event, SessionConfig, SessionError};
use crate::codec::flowfile::{FlowFile, FlowFilePart};
use crate::codec::handshake::{HandshakeRequest, RequestType, encode_codec_negotiation};
use crate::codec::negotiation::{
    NegotiationReply, RAW_PROTOCOL_NAME, ResourceProposal, encode_magic, step_down,
};
use crate::codec::peers::decode_peer_list;
use crate::codec::response_code::{Response, ResponseCode};
use crate::stream::{FlowFileReader, FlowFileWriter};

/// Client side of a RAW S2S connection, from the magic bytes to `SHUTDOWN`.
///
/// # Call order
///
/// 1. [`ClientSession::new`] queues the magic and the first protocol proposal.
/// 2. Repeatedly: write everything [`poll_transmit`](Self::poll_transmit) returns to the
///    socket (flush before waiting for bytes), feed bytes read with
///    [`handle_input`](Self::handle_input) (or end of stream with
///    [`handle_eof`](Self::handle_eof)), then drain [`poll_event`](Self::poll_event).
/// 3. After [`Event::Ready`] the session is idle; start one exchange at a time:
///    [`request_peer_list`](Self::request_peer_list), a SEND (per FlowFile
///    [`start_flowfile`](Self::start_flowfile), [`send_content`](Self::send_content)…,
///    [`end_flowfile`](Self::end_flowfile) — or [`send_flowfile`](Self::send_flowfile) for a
///    small one in memory — then [`finish_send`](Self::finish_send)) or a RECEIVE
///    ([`begin_receive`](Self::begin_receive), then [`Event::FlowFileStart`],
///    [`Event::FlowFileContent`]…, [`Event::FlowFileEnd`] per FlowFile, and after
///    [`Event::ReceiveVerified`] and persisting, [`confirm_receive`](Self::confirm_receive)).
///    A driver bounds its memory by handing content over in chunks and writing what
///    [`poll_transmit`](Self::poll_transmit) returns before the next chunk.
/// 4. [`shutdown`](Self::shutdown) before closing an idle connection.
///
/// Any `Err` poisons the session (its state becomes closed): queued bytes may still be
/// flushed (e.g. `BAD_CHECKSUM`), then the connection must be closed.
#[derive(Debug)]
pub struct ClientSession {
    config: SessionConfig,
    state: State,
    version: i32,
    /// Chunks to transmit, in order (content passed through without copying).
    out: VecDeque<Bytes>,
    scratch: BytesMut,
    events: VecDeque<Event>,
}

#[derive(Debug)]
enum State {
    Negotiating,
    Handshaking,
    NegotiatingCodec,
    Idle,
    AwaitPeerList,
    Sending(Send),
    Receiving(Receive),
    Closed,
}

#[derive(Debug)]
struct Send {
    /// Encodes the FlowFiles and keeps the CRC.
    writer: FlowFileWriter,
    phase: SendPhase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendPhase {
    Streaming,
    AwaitConfirm,
    AwaitFinished,
}

#[derive(Debug)]
struct Receive {
    /// Decodes the FlowFiles (one reader for the transaction: it keeps the CRC).
    reader: FlowFileReader,
    phase: ReceivePhase,
}

#[derive(Debug)]
enum ReceivePhase {
    AwaitStart,
    FlowFile,
    AwaitMarker,
    AwaitConfirmEcho,
    Verified,
}

impl ClientSession {
    /// A new session; the magic and the first proposal (highest configured version) are
    /// queued for transmission.
    ///
    /// # Errors
    /// [`SessionError::InvalidState`] when the config lists no protocol version.
    pub fn new(config: SessionConfig) -> Result<Self, SessionError> {
        let version = config
            .protocol_versions
            .iter()
            .copied()
            .max()
            .ok_or(SessionError::InvalidState("no protocol version configured"))?;
        let mut s = Self {
            config,
            state: State::Negotiating,
            version,
            out: VecDeque::new(),
            scratch: BytesMut::new(),
            events: VecDeque::new(),
        };
        encode_magic(&mut s.scratch);
        ResourceProposal::new(RAW_PROTOCOL_NAME, version).encode(&mut s.scratch)?;
        Ok(s)
    }

    /// The negotiated (or currently proposed) protocol version.
    pub fn protocol_version(&self) -> i32 {
        self.version
    }

    /// Whether the session is between exchanges and may start a new one (or be pooled).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle) && self.out.is_empty() && self.scratch.is_empty()
    }

    /// Whether the session is closed (after `SHUTDOWN`, a cancel or an error).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The next bytes to write to the peer. Uncompressed FlowFile content comes out as the
    /// caller's own `Bytes` (no copy).
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if let Some(b) = self.out.pop_front() {
            return Some(b);
        }
        (!self.scratch.is_empty()).then(|| self.scratch.split().freeze())
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Queues `b` after whatever is in `scratch`.
    fn push_bytes(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        if !self.scratch.is_empty() {
            self.out.push_back(self.scratch.split().freeze());
        }
        self.out.push_back(b);
    }

    fn fail<T>(&mut self, e: SessionError) -> Result<T, SessionError> {
        self.state = State::Closed;
        Err(e)
    }

    /// Feeds bytes read from the peer. Consumes what it can; an incomplete message stays in
    /// `buf` for the next call.
    ///
    /// # Errors
    /// Any protocol violation, refusal or checksum mismatch; the session is then closed.
    pub fn handle_input(&mut self, buf: &mut BytesMut) -> Result<(), SessionError> {
        loop {
            match self.step(buf) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => return self.fail(e),
            }
        }
    }

    /// Reports end of stream from the peer; `buffered` is whatever was left unconsumed.
    ///
    /// # Errors
    /// [`SessionError::UnexpectedEof`] unless the session was already closed.
    pub fn handle_eof(&mut self, buffered: &[u8]) -> Result<(), SessionError> {
        if matches!(self.state, State::Closed) {
            return Ok(());
        }
        let phase = self.phase_name();
        self.fail(SessionError::UnexpectedEof {
            phase,
            buffered: buffered.len(),
        })
    }

    fn phase_name(&self) -> &'static str {
        match &self.state {
            State::Negotiating => "protocol negotiation",
            State::Handshaking => "handshake",
            State::NegotiatingCodec => "codec negotiation",
            State::Idle => "idle",
            State::AwaitPeerList => "peer list",
            State::Sending(_) => "SEND transaction",
            State::Receiving(_) => "RECEIVE transaction",
            State::Closed => "closed",
        }
    }

    /// One decoding step; `Ok(true)` when something was consumed.
    fn step(&mut self, buf: &mut BytesMut) -> Result<bool, SessionError> {
        match &mut self.state {
            State::Negotiating => {
                let Some(reply) = NegotiationReply::decode(buf)? else {
                    return Ok(false);
                };
                match reply {
                    NegotiationReply::Ok => {
                        let hs = self.handshake_request();
                        hs.encode(self.version, &mut self.scratch)?;
                        self.state = State::Handshaking;
                    }
                    NegotiationReply::DifferentVersion(v) => {
                        // Only strictly lower versions: a peer cannot make us loop forever.
                        match step_down(&self.config.protocol_versions, v)
                            .filter(|n| *n < self.version)
                        {
                            Some(next) => {
                                self.version = next;
                                ResourceProposal::new(RAW_PROTOCOL_NAME, next)
                                    .encode(&mut self.scratch)?;
                            }
                            None => return Err(SessionError::NoCommonVersion { offered: v }),
                        }
                    }
                    // NiFi sends no message after ABORT here: do not wait for one.
                    NegotiationReply::Abort => return Err(SessionError::NegotiationAborted),
                }
                Ok(true)
            }
            State::Handshaking => {
                let Some(resp) = Response::decode(buf)? else {
                    return Ok(false);
                };
                if resp.code != ResponseCode::PROPERTIES_OK {
                    return Err(SessionError::Refused {
                        code: resp.code,
                        message: resp.message,
                    });
                }
                if self.config.port_id.is_some() {
                    encode_codec_negotiation(&mut self.scratch);
                    self.state = State::NegotiatingCodec;
                } else {
                    self.ready();
                }
                Ok(true)
            }
            State::NegotiatingCodec => {
                let Some(reply) = NegotiationReply::decode(buf)? else {
                    return Ok(false);
                };
                match reply {
                    NegotiationReply::Ok => self.ready(),
                    other => return Err(SessionError::CodecRejected(other)),
                }
                Ok(true)
            }
            State::Idle | State::Closed => {
                if buf.is_empty() {
                    return Ok(false);
                }
                Err(SessionError::UnexpectedData {
                    phase: self.phase_name(),
                    len: buf.len(),
                })
            }
            State::AwaitPeerList => {
                let Some(peers) = decode_peer_list(buf, self.config.max_peers)? else {
                    return Ok(false);
                };
                self.state = State::Idle;
                self.events.push_back(Event::PeerList(peers));
                Ok(true)
            }
            State::Sending(send) => {
                if send.phase == SendPhase::Streaming {
                    if buf.is_empty() {
                        return Ok(false);
                    }
                    // NiFi says nothing while we stream; anything here is a protocol error.
                    return Err(SessionError::UnexpectedData {
                        phase: "SEND transaction (streaming)",
                        len: buf.len(),
                    });
                }
                let Some(resp) = Response::decode(buf)? else {
                    return Ok(false);
                };
                match (send.phase, resp.code) {
                    (SendPhase::AwaitConfirm, ResponseCode::CONFIRM_TRANSACTION) => {
                        let local = send.writer.checksum().to_string();
                        let remote = resp.message.unwrap_or_default();
                        // Versions 1-3 exchange the CRC strings without comparing them.
                        if self.version >= 4 && remote != local {
                            Response::new(ResponseCode::BAD_CHECKSUM).encode(&mut self.scratch)?;
                            return Err(SessionError::BadChecksum { local, remote });
                        }
                        send.phase = SendPhase::AwaitFinished;
                        Response::with_message(ResponseCode::CONFIRM_TRANSACTION, "")
                            .encode(&mut self.scratch)?;
                    }
                    (
                        SendPhase::AwaitFinished,
                        code @ (ResponseCode::TRANSACTION_FINISHED
                        | ResponseCode::TRANSACTION_FINISHED_BUT_DESTINATION_FULL),
                    ) => {
                        let ev = Event::SendCommitted {
                            flowfiles: send.writer.flowfiles(),
                            bytes: send.writer.content_bytes(),
                            destination_full: code
                                == ResponseCode::TRANSACTION_FINISHED_BUT_DESTINATION_FULL,
                        };
                        self.state = State::Idle;
                        self.events.push_back(ev);
                    }
                    (phase, code) => {
                        return Err(SessionError::UnexpectedCode {
                            code,
                            expected: if phase == SendPhase::AwaitConfirm {
                                "CONFIRM_TRANSACTION"
                            } else {
                                "TRANSACTION_FINISHED"
                            },
                        });
                    }
                }
                Ok(true)
            }
            State::Receiving(recv) => match &mut recv.phase {
                ReceivePhase::AwaitStart => {
                    let Some(resp) = Response::decode(buf)? else {
                        return Ok(false);
                    };
                    match resp.code {
                        ResponseCode::MORE_DATA => {
                            recv.phase = ReceivePhase::FlowFile;
                            self.events.push_back(Event::MoreData);
                        }
                        ResponseCode::NO_MORE_DATA => {
                            self.state = State::Idle;
                            self.events.push_back(Event::NoData);
                        }
                        code => {
                            return Err(SessionError::UnexpectedCode {
                                code,
                                expected: "MORE_DATA or NO_MORE_DATA",
                            });
                        }
                    }
                    Ok(true)
                }
                ReceivePhase::FlowFile => {
                    let Some(part) = recv.reader.next_part(buf)? else {
                        return Ok(false);
                    };
                    let ev = match part {
                        FlowFilePart::Header {
                            attributes,
                            content_len,
                        } => Event::FlowFileStart {
                            attributes,
                            content_len,
                        },
                        FlowFilePart::Content(chunk) => Event::FlowFileContent(chunk),
                        FlowFilePart::End => {
                            recv.phase = ReceivePhase::AwaitMarker;
                            Event::FlowFileEnd
                        }
                    };
                    self.events.push_back(ev);
                    Ok(true)
                }
                ReceivePhase::AwaitMarker => {
                    let Some(resp) = Response::decode(buf)? else {
                        return Ok(false);
                    };
                    match resp.code {
                        ResponseCode::CONTINUE_TRANSACTION => {
                            recv.phase = ReceivePhase::FlowFile;
                        }
                        ResponseCode::FINISH_TRANSACTION => {
                            Response::with_message(
                                ResponseCode::CONFIRM_TRANSACTION,
                                recv.reader.checksum().to_string(),
                            )
                            .encode(&mut self.scratch)?;
                            recv.phase = ReceivePhase::AwaitConfirmEcho;
                        }
                        code => {
                            return Err(SessionError::UnexpectedCode {
                                code,
                                expected: "CONTINUE_TRANSACTION or FINISH_TRANSACTION",
                            });
                        }
                    }
                    Ok(true)
                }
                ReceivePhase::AwaitConfirmEcho => {
                    let Some(resp) = Response::decode(buf)? else {
                        return Ok(false);
                    };
                    match resp.code {
                        ResponseCode::CONFIRM_TRANSACTION => {
                            let ev = Event::ReceiveVerified {
                                flowfiles: recv.reader.flowfiles(),
                                bytes: recv.reader.content_bytes(),
                            };
                            recv.phase = ReceivePhase::Verified;
                            self.events.push_back(ev);
                        }
                        ResponseCode::BAD_CHECKSUM => {
                            return Err(SessionError::BadChecksum {
                                local: recv.reader.checksum().to_string(),
                                remote: String::new(),
                            });
                        }
                        code => {
                            return Err(SessionError::UnexpectedCode {
                                code,
                                expected: "CONFIRM_TRANSACTION",
                            });
                        }
                    }
                    Ok(true)
                }
                ReceivePhase::Verified => {
                    if buf.is_empty() {
                        return Ok(false);
                    }
                    Err(SessionError::UnexpectedData {
                        phase: "RECEIVE transaction (verified)",
                        len: buf.len(),
                    })
                }
            },
        }
    }

    fn handshake_request(&self) -> HandshakeRequest {
        let c = &self.config;
        let mut hs = HandshakeRequest::new(
            c.comms_id.clone(),
            c.transit_uri_prefix.clone(),
            c.port_id.clone(),
        );
        hs.gzip = c.compression;
        hs.request_expiration_millis = c.request_expiration_millis;
        hs.batch_count = c.batch_count;
        hs.batch_size = c.batch_size;
        hs.batch_duration_millis = c.batch_duration_millis;
        hs
    }

    fn ready(&mut self) {
        self.state = State::Idle;
        self.events.push_back(Event::Ready {
            protocol_version: self.version,
        });
    }

    /// Asks for the peer list; answered by [`Event::PeerList`].
    ///
    /// # Errors
    /// [`SessionError::InvalidState`] unless idle.
    pub fn request_peer_list(&mut self) -> Result<(), SessionError> {
        self.expect_idle("request_peer_list")?;
        RequestType::RequestPeerList.encode(&mut self.scratch);
        self.state = State::AwaitPeerList;
        Ok(())
    }

    /// Starts one FlowFile of a SEND transaction: opens the transaction (the `SEND_FLOWFILES`
    /// request) with the first one, queues a `CONTINUE_TRANSACTION` marker before every later
    /// one, then the FlowFile's header. Its content follows with
    /// [`send_content`](Self::send_content); [`end_flowfile`](Self::end_flowfile) ends it.
    ///
    /// # Errors
    /// [`SessionError::InvalidState`] unless idle or between FlowFiles of a SEND;
    /// [`SessionError::Stream`] for lengths the codec cannot carry (the session is closed).
    pub fn start_flowfile(
        &mut self,
        attributes: &[(String, String)],
        content_len: u64,
    ) -> Result<(), SessionError> {
        match &mut self.state {
            State::Idle => {
                if self.config.port_id.is_none() {
                    return Err(SessionError::InvalidState("no port in the handshake"));
                }
                RequestType::SendFlowFiles.encode(&mut self.scratch);
                self.state = State::Sending(Send {
                    writer: FlowFileWriter::new(self.config.compression),
                    phase: SendPhase::Streaming,
                });
            }
            State::Sending(s) if s.phase == SendPhase::Streaming && !s.writer.is_open() => {
                Response::new(ResponseCode::CONTINUE_TRANSACTION).encode(&mut self.scratch)?;
            }
            _ => {
                return Err(SessionError::InvalidState(
                    "start_flowfile outside a SEND or inside a FlowFile",
                ));
            }
        }
        let r = match &mut self.state {
            State::Sending(s) => s.writer.start(attributes, content_len, &mut self.scratch),
            _ => unreachable!("state set above"),
        };
        r.or_else(|e| self.fail(e.into()))
    }

    /// Queues the next piece of the current FlowFile's content. Uncompressed, `chunk` itself
    /// is queued (no copy); compressed, its deflated envelope chunks are. Write what
    /// [`poll_transmit`](Self::poll_transmit) returns before the next call to bound memory.
    ///
    /// # Errors
    /// [`SessionError::Stream`] past the declared length (the session is closed, nothing is
    /// committed); [`SessionError::InvalidState`] outside a FlowFile.
    pub fn send_content(&mut self, chunk: Bytes) -> Result<(), SessionError> {
        let r = match &mut self.state {
            State::Sending(s) if s.phase == SendPhase::Streaming => {
                s.writer.content(chunk, &mut self.scratch)
            }
            _ => {
                return Err(SessionError::InvalidState(
                    "send_content outside a FlowFile",
                ));
            }
        };
        match r {
            Ok(Some(content)) => {
                self.push_bytes(content);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => self.fail(e.into()),
        }
    }

    /// Ends the current FlowFile.
    ///
    /// # Errors
    /// [`SessionError::Stream`] when less content than declared was sent (the session is
    /// closed, nothing is committed); [`SessionError::InvalidState`] outside a FlowFile.
    pub fn end_flowfile(&mut self) -> Result<(), SessionError> {
        let r = match &mut self.state {
            State::Sending(s) if s.phase == SendPhase::Streaming => {
                s.writer.finish(&mut self.scratch)
            }
            _ => {
                return Err(SessionError::InvalidState(
                    "end_flowfile outside a FlowFile",
                ));
            }
        };
        r.or_else(|e| self.fail(e.into()))
    }

    /// One whole in-memory FlowFile: [`start_flowfile`](Self::start_flowfile),
    /// [`send_content`](Self::send_content), [`end_flowfile`](Self::end_flowfile). Without
    /// compression the content is queued as-is (no copy); with compression all of it is
    /// deflated at once, so hand large content over in chunks instead.
    ///
    /// # Errors
    /// As [`start_flowfile`](Self::start_flowfile).
    pub fn send_flowfile(&mut self, flowfile: &FlowFile) -> Result<(), SessionError> {
        self.start_flowfile(&flowfile.attributes, flowfile.content.len() as u64)?;
        self.send_content(flowfile.content.clone())?;
        self.end_flowfile()
    }

    /// Ends the SEND: queues `FINISH_TRANSACTION`; the CRC exchange and NiFi's commit follow
    /// and end in [`Event::SendCommitted`].
    ///
    /// # Errors
    /// [`SessionError::InvalidState`] unless at least one FlowFile was queued and none is
    /// open (NiFi cannot take an empty SEND).
    pub fn finish_send(&mut self) -> Result<(), SessionError> {
        match &mut self.state {
            State::Sending(s) if s.phase == SendPhase::Streaming && !s.writer.is_open() => {
                s.phase = SendPhase::AwaitConfirm;
                Response::new(ResponseCode::FINISH_TRANSACTION).encode(&mut self.scratch)?;
                Ok(())
            }
            _ => Err(SessionError::InvalidState(
                "finish_send without a FlowFile sent",
            )),
        }
    }

    /// Cancels a SEND: queues `CANCEL_TRANSACTION` + `reason` if NiFi can still read it (between
    /// FlowFiles), and closes the session either way (the connection must then be closed).
    ///
    /// # Errors
    /// [`SessionError::Encode`] if `reason` is too long (the session is closed regardless).
    pub fn cancel_send(&mut self, reason: &str) -> Result<(), SessionError> {
        let streaming = matches!(&self.state, State::Sending(s) if s.phase == SendPhase::Streaming);
        self.state = State::Closed;
        if streaming {
            Response::with_message(ResponseCode::CANCEL_TRANSACTION, reason)
                .encode(&mut self.scratch)?;
        }
        Ok(())
    }

    /// Starts a RECEIVE transaction: answered by [`Event::NoData`], or [`Event::MoreData`]
    /// then per FlowFile [`Event::FlowFileStart`], [`Event::FlowFileContent`]s and
    /// [`Event::FlowFileEnd`], and finally [`Event::ReceiveVerified`].
    ///
    /// # Errors
    /// [`SessionError::InvalidState`] unless idle with a port.
    pub fn begin_receive(&mut self) -> Result<(), SessionError> {
        self.expect_idle("begin_receive")?;
        if self.config.port_id.is_none() {
            return Err(SessionError::InvalidState("no port in the handshake"));
        }
        RequestType::ReceiveFlowFiles.encode(&mut self.scratch);
        self.state = State::Receiving(Receive {
            reader: FlowFileReader::new(self.config.compression, self.config.limits),
            phase: ReceivePhase::AwaitStart,
        });
        Ok(())
    }

    /// After [`Event::ReceiveVerified`] and after the FlowFiles are persisted: queues
    /// `TRANSACTION_FINISHED`, upon which NiFi deletes them from its queue. The session is then
    /// idle again.
    ///
    /// # Errors
    /// [`SessionError::InvalidState`] before [`Event::ReceiveVerified`].
    pub fn confirm_receive(&mut self) -> Result<(), SessionError> {
        match &self.state {
            State::Receiving(Receive {
                phase: ReceivePhase::Verified,
                ..
            }) => {
                Response::new(ResponseCode::TRANSACTION_FINISHED).encode(&mut self.scratch)?;
                self.state = State::Idle;
                Ok(())
            }
            _ => Err(SessionError::InvalidState(
                "confirm_receive before the checksum was verified",
            )),
        }
    }

    /// Queues `SHUTDOWN` (NiFi closes without replying) and closes the session.
    ///
    /// # Errors
    /// [`SessionError::InvalidState`] unless idle (mid-exchange, just close the socket).
    pub fn shutdown(&mut self) -> Result<(), SessionError> {
        self.expect_idle("shutdown")?;
        RequestType::Shutdown.encode(&mut self.scratch);
        self.state = State::Closed;
        Ok(())
    }

    fn expect_idle(&self, what: &'static str) -> Result<(), SessionError> {
        if matches!(self.state, State::Idle) {
            Ok(())
        } else {
            let _ = what;
            Err(SessionError::InvalidState("session is not idle"))
        }
    }
}
