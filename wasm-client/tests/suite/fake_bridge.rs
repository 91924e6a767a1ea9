//! An in-page fake bridge for fault injection: the page's `WebSocket` constructor is wrapped so
//! that URLs under [`URL_PREFIX`] connect to a scripted peer in this module instead of the
//! network; every other URL still gets the browser's real `WebSocket`. The client under test is
//! unchanged: its real transport (`api::transport`) and uploader talk to the fake through the same
//! `WebSocket` API they use against the real bridge.
//!
//! The fake speaks the bridge protocol through the shared `s2s-bridge-protocol` crate: it sends
//! a `Hello::to_json()`, parses batches with `BatchHeader::parse` and `FlowFileDecoder`, checks
//! that the message is byte-for-byte what `encode_batch` makes of the decoded records (so the CRC
//! and framing are the shared crate's), and answers with `Ack::encode()`. What it answers is up
//! to the test's script ([`Answer`]).

use std::cell::RefCell;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use js_sys::{Function, Reflect, Uint8Array};
use s2s_bridge_protocol::{Ack, AckStatus, BatchHeader, Hello, Limits, TYPE_BATCH, reason};
use s2s_proto::codec::flowfile::FlowFileDecoder;
use s2s_wasm::FlowFile;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

/// URLs the fake serves: `ws://fake-bridge.invalid/<bridge name>`.
pub(crate) const URL_PREFIX: &str = "ws://fake-bridge.invalid/";

/// Installs the `WebSocket` wrapper once per page. The fake socket mimics the browser's: events
/// are delivered asynchronously and in order (one timer task each), `send` throws while
/// connecting and is a no-op once closing, `close` fires `close` later.
const INSTALL: &str = r#"
if (globalThis.__s2sFakeBridges) return;
const Real = globalThis.WebSocket;
const bridges = (globalThis.__s2sFakeBridges = Object.create(null));
function FakeWebSocket(url, protocols) {
  const u = String(url);
  if (!u.startsWith(PREFIX)) return new Real(url, protocols);
  this.url = u;
  this.protocol = Array.isArray(protocols) ? protocols[0] || '' : protocols || '';
  this.extensions = '';
  this.readyState = 0;
  this.bufferedAmount = 0;
  this.binaryType = 'blob';
  this.onopen = this.onmessage = this.onclose = this.onerror = null;
  const connect = bridges[u.slice(PREFIX.length)];
  if (connect) {
    this.__peer = connect(this);
  } else {
    this.__peer = () => {};
    this.serverClose(1006, '');
  }
}
FakeWebSocket.CONNECTING = 0;
FakeWebSocket.OPEN = 1;
FakeWebSocket.CLOSING = 2;
FakeWebSocket.CLOSED = 3;
FakeWebSocket.prototype.send = function (data) {
  if (this.readyState === 0) throw new DOMException("Still in CONNECTING state.", 'InvalidStateError');
  if (this.readyState !== 1) return;
  let msg;
  if (typeof data === 'string') msg = data;
  else if (data instanceof ArrayBuffer) msg = new Uint8Array(data.slice(0));
  else if (ArrayBuffer.isView(data)) msg = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  else throw new TypeError('unsupported message type');
  this.__peer(msg);
};
FakeWebSocket.prototype.close = function (code, reason) {
  if (this.readyState >= 2) return;
  this.readyState = 2;
  const peer = this.__peer;
  setTimeout(() => {
    peer(null);
    this.__closed(code === undefined ? 1005 : code, reason || '', true);
  }, 0);
};
FakeWebSocket.prototype.__closed = function (code, reason, clean) {
  if (this.readyState === 3) return;
  this.readyState = 3;
  if (!clean && this.onerror) this.onerror(new Event('error'));
  if (this.onclose) this.onclose(new CloseEvent('close', { code, reason, wasClean: clean }));
};
FakeWebSocket.prototype.serverOpen = function () {
  setTimeout(() => {
    if (this.readyState !== 0) return;
    this.readyState = 1;
    if (this.onopen) this.onopen(new Event('open'));
  }, 0);
};
FakeWebSocket.prototype.serverText = function (text) {
  setTimeout(() => {
    if (this.readyState === 1 && this.onmessage) this.onmessage(new MessageEvent('message', { data: text }));
  }, 0);
};
FakeWebSocket.prototype.serverBinary = function (view) {
  // `view` points into wasm memory: copy it now.
  const data = view.slice().buffer;
  setTimeout(() => {
    if (this.readyState !== 1) return;
    const ev = new MessageEvent('message', { data: this.binaryType === 'arraybuffer' ? data : new Blob([data]) });
    if (this.onmessage) this.onmessage(ev);
  }, 0);
};
FakeWebSocket.prototype.serverClose = function (code, reason) {
  setTimeout(() => this.__closed(code, reason, code !== 1006), 0);
};
globalThis.WebSocket = FakeWebSocket;
"#;

#[wasm_bindgen]
extern "C" {
    /// The server side of one fake socket (methods added by [`INSTALL`]).
    #[derive(Debug, Clone)]
    type FakeSocket;

    #[wasm_bindgen(method, js_name = serverOpen)]
    fn server_open(this: &FakeSocket);
    #[wasm_bindgen(method, js_name = serverText)]
    fn server_text(this: &FakeSocket, text: &str);
    #[wasm_bindgen(method, js_name = serverBinary)]
    fn server_binary(this: &FakeSocket, bytes: &[u8]);
    #[wasm_bindgen(method, js_name = serverClose)]
    fn server_close(this: &FakeSocket, code: u16, reason: &str);
}

/// What the fake answers to one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Ack *committed*: the records count as delivered.
    Commit,
    /// Ack *rejected* with this reason code.
    Reject(u16),
    /// Ack *rejected* `BAD_CRC` (as the bridge answers a damaged payload).
    BadCrc,
    /// Keep the batch unanswered until [`FakeBridge::release`].
    Hold,
    /// Close the connection (code 1006: connection lost) without answering.
    Close,
}

/// One batch as the fake received it.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    /// Connection number (0 = the first connection).
    pub(crate) conn: usize,
    /// The client's batch id.
    pub(crate) id: u64,
    /// The decoded records.
    pub(crate) records: Vec<FlowFile>,
}

impl Batch {
    /// `idb.seq` of every record.
    pub(crate) fn seqs(&self) -> Vec<u64> {
        self.records.iter().map(seq_of).collect()
    }
}

/// `idb.seq` of a record.
pub(crate) fn seq_of(ff: &FlowFile) -> u64 {
    ff.attributes
        .iter()
        .find(|(k, _)| k == "idb.seq")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(u64::MAX)
}

/// The record's JSON content as text.
pub(crate) fn content_of(ff: &FlowFile) -> String {
    String::from_utf8_lossy(&ff.content).into_owned()
}

type Script = Box<dyn FnMut(&Batch) -> Answer>;

struct Conn {
    sock: FakeSocket,
    open: bool,
    held: Vec<Batch>,
}

#[derive(Default)]
struct State {
    conns: Vec<Conn>,
    /// Connection attempts refused while `refuse` was set.
    refused: usize,
    refuse: bool,
    /// Every batch received, with the answer given.
    seen: Vec<(Batch, Answer)>,
    /// Records acked *committed*, in ack order.
    delivered: Vec<FlowFile>,
    /// Anything the client sent that the shared crate would not have produced.
    errors: Vec<String>,
    peers: Vec<Closure<dyn FnMut(JsValue)>>,
}

/// A scripted bridge at `ws://fake-bridge.invalid/<name>`; unregistered when dropped.
pub(crate) struct FakeBridge {
    name: String,
    state: Rc<RefCell<State>>,
    _connect: Closure<dyn FnMut(JsValue) -> JsValue>,
}

impl FakeBridge {
    /// A bridge named `name` answering each batch with `script`.
    pub(crate) fn new(name: &str, script: impl FnMut(&Batch) -> Answer + 'static) -> Self {
        install();
        let state = Rc::new(RefCell::new(State::default()));
        let script: Rc<RefCell<Script>> = Rc::new(RefCell::new(Box::new(script)));
        let st = state.clone();
        let connect = Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |sock: JsValue| {
            let sock: FakeSocket = sock.unchecked_into();
            let mut s = st.borrow_mut();
            if s.refuse {
                s.refused += 1;
                sock.server_close(1006, "");
                return Function::new_no_args("").into();
            }
            let conn = s.conns.len();
            s.conns.push(Conn {
                sock: sock.clone(),
                open: true,
                held: Vec::new(),
            });
            let hello = Hello {
                version: 1,
                ack_mode: "nifi".into(),
                limits: Limits::default(),
            };
            sock.server_open();
            sock.server_text(&hello.to_json());
            let (st2, script) = (st.clone(), script.clone());
            let peer = Closure::<dyn FnMut(JsValue)>::new(move |msg: JsValue| {
                on_message(&st2, &script, conn, msg);
            });
            let f: JsValue = peer.as_ref().clone();
            s.peers.push(peer);
            f
        });
        let registry = Reflect::get(&js_sys::global(), &"__s2sFakeBridges".into())
            .expect("fake bridge registry");
        Reflect::set(&registry, &name.into(), connect.as_ref()).expect("register fake bridge");
        Self {
            name: name.to_owned(),
            state,
            _connect: connect,
        }
    }

    /// The URL to configure as the client's `bridge_url`.
    pub(crate) fn url(&self) -> String {
        format!("{URL_PREFIX}{}", self.name)
    }

    /// Refuse (close with 1006 before open) new connections while `on`.
    pub(crate) fn refuse(&self, on: bool) {
        self.state.borrow_mut().refuse = on;
    }

    /// Connection attempts refused so far.
    pub(crate) fn refused(&self) -> usize {
        self.state.borrow().refused
    }

    /// Connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.state.borrow().conns.len()
    }

    /// Every batch received so far, with its answer.
    pub(crate) fn seen(&self) -> Vec<(Batch, Answer)> {
        self.state.borrow().seen.clone()
    }

    /// `idb.seq` of every record acked *committed*, in ack order.
    pub(crate) fn delivered_seqs(&self) -> Vec<u64> {
        self.state.borrow().delivered.iter().map(seq_of).collect()
    }

    /// Records acked *committed*, in ack order.
    pub(crate) fn delivered(&self) -> Vec<FlowFile> {
        self.state.borrow().delivered.clone()
    }

    /// Batch ids held (unanswered) on open connections.
    pub(crate) fn held(&self) -> Vec<u64> {
        let s = self.state.borrow();
        s.conns
            .iter()
            .filter(|c| c.open)
            .flat_map(|c| c.held.iter().map(|b| b.id))
            .collect()
    }

    /// Answers the held batch `id` now with `answer` (not `Hold`).
    pub(crate) fn release(&self, id: u64, answer: Answer) {
        let mut s = self.state.borrow_mut();
        let found = s.conns.iter_mut().enumerate().find_map(|(i, c)| {
            let pos = c.held.iter().position(|b| b.id == id)?;
            Some((i, c.held.remove(pos)))
        });
        let Some((conn, batch)) = found else {
            s.errors
                .push(format!("release of batch {id}, which is not held"));
            return;
        };
        answer_batch(&mut s, conn, batch, answer);
    }

    /// Protocol violations the fake noticed (must be empty).
    pub(crate) fn errors(&self) -> Vec<String> {
        self.state.borrow().errors.clone()
    }
}

impl Drop for FakeBridge {
    fn drop(&mut self) {
        if let Ok(registry) = Reflect::get(&js_sys::global(), &"__s2sFakeBridges".into()) {
            let _ = Reflect::delete_property(
                registry.unchecked_ref::<js_sys::Object>(),
                &self.name.as_str().into(),
            );
        }
        // The sockets must not call the closures dropped with `self`: detach them, then close
        // those still open from the server side.
        let s = self.state.borrow();
        for c in &s.conns {
            let _ = Reflect::set(&c.sock, &"__peer".into(), &Function::new_no_args(""));
            if c.open {
                c.sock.server_close(1001, "fake bridge dropped");
            }
        }
    }
}

fn install() {
    let f = Function::new_with_args("PREFIX", INSTALL);
    f.call1(&JsValue::NULL, &URL_PREFIX.into())
        .expect("install the fake WebSocket");
}

fn on_message(st: &Rc<RefCell<State>>, script: &Rc<RefCell<Script>>, conn: usize, msg: JsValue) {
    if msg.is_null() {
        // The client closed this connection.
        st.borrow_mut().conns[conn].open = false;
        return;
    }
    if msg.is_string() {
        // `auth` (no token in these tests): nothing to check.
        return;
    }
    let Some(bytes) = msg.dyn_ref::<Uint8Array>().map(|a| Bytes::from(a.to_vec())) else {
        st.borrow_mut()
            .errors
            .push("message neither text nor binary".into());
        return;
    };
    let batch = match decode(conn, &bytes) {
        Ok(b) => b,
        Err(e) => {
            st.borrow_mut().errors.push(e);
            return;
        }
    };
    let answer = (script.borrow_mut())(&batch);
    let mut s = st.borrow_mut();
    s.seen.push((batch.clone(), answer));
    answer_batch(&mut s, conn, batch, answer);
}

/// Parses a batch with the shared crate, and checks it is exactly what the shared crate encodes.
fn decode(conn: usize, msg: &Bytes) -> Result<Batch, String> {
    let (h, payload) = BatchHeader::parse(msg).ok_or("batch shorter than its header")?;
    if h.kind != TYPE_BATCH || h.flags != 0 {
        return Err(format!("frame type {:#04x} flags {:#04x}", h.kind, h.flags));
    }
    let mut buf = BytesMut::from(&payload[..]);
    let mut dec = FlowFileDecoder::default();
    let mut records = Vec::with_capacity(h.count as usize);
    for i in 0..h.count {
        match dec.decode_eof(&mut buf) {
            Ok(Some(ff)) => records.push(ff),
            Ok(None) => return Err(format!("payload ends after {i} of {} records", h.count)),
            Err(e) => return Err(format!("record {i}: {e}")),
        }
    }
    let again = s2s_bridge_protocol::encode_batch(h.id, &records).map_err(|e| e.to_string())?;
    if again != *msg {
        return Err(format!(
            "batch {} is not what the shared codec encodes (CRC or framing differs)",
            h.id
        ));
    }
    Ok(Batch {
        conn,
        id: h.id,
        records,
    })
}

fn answer_batch(s: &mut State, conn: usize, batch: Batch, answer: Answer) {
    let c = &mut s.conns[conn];
    if !c.open {
        return;
    }
    let ack = |status, reason: u16, message: &str| {
        Ack {
            status,
            batch_id: batch.id,
            reason,
            retry_after_ms: 0,
            message: message.into(),
        }
        .encode()
    };
    match answer {
        Answer::Commit => {
            c.sock
                .server_binary(&ack(AckStatus::Committed, reason::OK, ""));
            s.delivered.extend(batch.records);
        }
        Answer::Reject(code) => c.sock.server_binary(&ack(
            AckStatus::Rejected,
            code,
            "fake bridge: refused by the test's script",
        )),
        Answer::BadCrc => c.sock.server_binary(&ack(
            AckStatus::Rejected,
            reason::BAD_CRC,
            "CRC32 does not match the payload",
        )),
        Answer::Hold => c.held.push(batch),
        Answer::Close => {
            c.open = false;
            c.held.clear();
            c.sock.server_close(1006, "");
        }
    }
}
