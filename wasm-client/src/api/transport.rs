//! One WebSocket connection to the bridge, speaking `PROTOCOL.md` version 1.
//!
//! The connection owns its event handlers and detaches them in `Drop`, so a dropped connection
//! leaves nothing behind in the browser.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::{JsCast, prelude::Closure};
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

use crate::api::error::Error;
use crate::api::protocol::{self, Ack, Hello, SUBPROTOCOL_V1};
use crate::api::signal::Signal;

enum Incoming {
    Text(String),
    Binary(Vec<u8>),
}

#[derive(Default)]
struct State {
    inbox: RefCell<VecDeque<Incoming>>,
    open: Cell<bool>,
    closed: RefCell<Option<String>>,
    signal: Signal,
}

/// An open, greeted connection.
pub struct Connection {
    ws: WebSocket,
    state: Rc<State>,
    hello: Hello,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry an access token: never print it.
        f.debug_struct("Connection")
            .field("hello", &self.hello)
            .finish_non_exhaustive()
    }
}

/// Meaning of a close code, for errors (`PROTOCOL.md` §7).
fn close_reason(code: u16, reason: &str) -> String {
    let what = match code {
        1000 => "normal close",
        1001 => "bridge shutting down",
        1002 => "protocol error",
        1003 => "unsupported data",
        1006 => "connection lost",
        1009 => "message too big",
        1011 => "bridge internal error",
        4003 => "this page's origin is not allowed by the bridge (its --allowed-origin)",
        4401 => "unauthorized (check the token)",
        4406 => "no common protocol version",
        4408 => "no auth message in time",
        _ => "closed",
    };
    format!(
        "{what} (close code {code}{}{reason})",
        if reason.is_empty() { "" } else { ": " }
    )
}

impl Connection {
    /// Connects, authenticates with the first-message `auth` when a token is given (keeping it
    /// out of URLs and logs), and waits for the bridge's `hello`.
    pub async fn connect(url: &str, token: Option<&str>, timeout_ms: f64) -> Result<Self, Error> {
        let ws = WebSocket::new_with_str(url, SUBPROTOCOL_V1)
            .map_err(|e| Error::Connection(crate::api::error::describe(&e)))?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let state = Rc::new(State::default());

        let s = state.clone();
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_| {
            s.open.set(true);
            s.signal.notify();
        });
        let s = state.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            let data = ev.data();
            let msg = if let Some(text) = data.as_string() {
                Incoming::Text(text)
            } else if let Some(buf) = data.dyn_ref::<ArrayBuffer>() {
                Incoming::Binary(Uint8Array::new(buf).to_vec())
            } else {
                return;
            };
            s.inbox.borrow_mut().push_back(msg);
            s.signal.notify();
        });
        let s = state.clone();
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |ev: CloseEvent| {
            s.closed
                .borrow_mut()
                .get_or_insert_with(|| close_reason(ev.code(), &ev.reason()));
            s.signal.notify();
        });
        let s = state.clone();
        let on_error = Closure::<dyn FnMut(Event)>::new(move |_| {
            // The close event that follows has the code; this only makes sure nobody waits.
            s.signal.notify();
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));

        let mut conn = Self {
            ws,
            state,
            hello: Hello {
                version: 1,
                ack_mode: String::new(),
                limits: Default::default(),
            },
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
            _on_error: on_error,
        };
        let deadline = js_sys::Date::now() + timeout_ms;
        while !conn.state.open.get() {
            conn.check_closed()?;
            conn.wait_until(deadline, "connecting").await?;
        }
        if let Some(token) = token {
            let auth = s2s_bridge_protocol::Auth {
                token: token.to_owned(),
            }
            .to_json();
            conn.ws
                .send_with_str(&auth)
                .map_err(|e| Error::Connection(crate::api::error::describe(&e)))?;
        }
        loop {
            let next = conn.state.inbox.borrow_mut().pop_front();
            match next {
                Some(Incoming::Text(text)) => {
                    conn.hello = protocol::decode_hello(&text)?;
                    return Ok(conn);
                }
                Some(Incoming::Binary(_)) => {
                    return Err(Error::Protocol("binary message before hello".into()));
                }
                None => {
                    conn.check_closed()?;
                    conn.wait_until(deadline, "waiting for hello").await?;
                }
            }
        }
    }

    /// The bridge's `hello`.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// Whether the bridge closed the connection (e.g. after 120 s of silence, `PROTOCOL.md` §6).
    pub fn is_closed(&self) -> bool {
        self.state.closed.borrow().is_some()
    }

    fn check_closed(&self) -> Result<(), Error> {
        match &*self.state.closed.borrow() {
            Some(reason) => Err(Error::Connection(reason.clone())),
            None => Ok(()),
        }
    }

    async fn wait_until(&self, deadline: f64, what: &str) -> Result<(), Error> {
        let left = deadline - js_sys::Date::now();
        if left <= 0.0 {
            return Err(Error::Connection(format!("timed out {what}")));
        }
        self.state.signal.wait(left).await;
        Ok(())
    }

    /// Sends one framed batch (from [`protocol::encode_batch`]).
    pub fn send(&self, message: &[u8]) -> Result<(), Error> {
        self.check_closed()?;
        self.ws
            .send_with_u8_array(message)
            .map_err(|e| Error::Connection(crate::api::error::describe(&e)))
    }

    /// Waits for the next ack, at most `timeout_ms`.
    pub async fn next_ack(&self, timeout_ms: f64) -> Result<Ack, Error> {
        let deadline = js_sys::Date::now() + timeout_ms;
        loop {
            let next = self.state.inbox.borrow_mut().pop_front();
            match next {
                Some(Incoming::Binary(bytes)) => return protocol::decode_ack(&bytes),
                Some(Incoming::Text(_)) => {
                    return Err(Error::Protocol(
                        "unexpected text message after hello".into(),
                    ));
                }
                None => {
                    self.check_closed()?;
                    self.wait_until(deadline, "waiting for an ack").await?;
                }
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        let _ = self.ws.close_with_code(1000);
    }
}
