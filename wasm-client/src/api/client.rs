//! The client: an open database with the outbox, cross-tab coordination, and the uploader.
//!
//! ```text
//!  tab A: put ─► [data + outbox row, one IDB tx] ─► BroadcastChannel "wake"
//!  tab B: put ─► [data + outbox row, one IDB tx] ─► BroadcastChannel "wake"      ┌─► status to all tabs
//!                                                   ▼                            │
//!        the one tab holding the Web Lock: uploader ─► batch ─► WebSocket ─► ack ─► delete rows
//! ```

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue, prelude::Closure};
use web_sys::{BroadcastChannel, EventTarget, IdbDatabase, MessageEvent};

use crate::api::error::Error;
use crate::api::mapping::Mapper;
use crate::api::outbox::{self, WriteTx};
use crate::api::schema::Schema;
use crate::api::signal::Signal;
use crate::api::snapshot;
use crate::api::uploader;
use crate::sys;

/// Client options (plain values with documented defaults).
#[derive(Debug, Clone)]
pub struct Config {
    /// `ws://…/v1/ws` of the bridge. `None`: capture only, nothing is uploaded.
    pub bridge_url: Option<String>,
    /// Bearer token, sent as the first-message `auth` (never in the URL). Default none.
    pub token: Option<String>,
    /// Attributes added to every FlowFile (`idb.*`, `mime.type` and `filename` win on conflict).
    pub static_attributes: Vec<(String, String)>,
    /// Most records per batch (default 500; the bridge's `max_records` caps it).
    pub batch_records: u32,
    /// Most batches sent and not yet acked (default 4; the bridge's `max_inflight` caps it).
    /// Acks may come back in any order; each deletes exactly its own rows.
    pub max_in_flight: u32,
    /// How long to wait for an ack before giving up on the connection (default 30 s).
    pub ack_timeout_ms: f64,
    /// First backoff ceiling (default 250 ms) and cap (default 30 s).
    pub backoff_base_ms: f64,
    /// See `backoff_base_ms`.
    pub backoff_cap_ms: f64,
    /// An idle uploader re-checks the outbox this often even without a wake-up (default 5 s).
    pub idle_poll_ms: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bridge_url: None,
            token: None,
            static_attributes: Vec::new(),
            batch_records: 500,
            max_in_flight: 4,
            ack_timeout_ms: 30_000.0,
            backoff_base_ms: 250.0,
            backoff_cap_ms: 30_000.0,
            idle_poll_ms: 5_000.0,
        }
    }
}

/// A status event (`type` in JS): what the outbox and the uploader are doing.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Rows committed to the outbox by this tab.
    Queued {
        /// Rows added.
        count: u32,
    },
    /// A batch was sent and waits for its ack.
    InFlight {
        /// Records in the batch.
        count: u32,
        /// First and last `seq`.
        seq: (u64, u64),
    },
    /// The bridge committed a batch; its rows were deleted.
    Delivered {
        /// Records in the batch.
        count: u32,
        /// First and last `seq`.
        seq: (u64, u64),
        /// Rows left in the outbox.
        depth: u32,
        /// Delivered by this uploader since it started.
        total: u64,
    },
    /// Something failed. `fatal` errors set rows aside; the others are retried after `retry_in_ms`.
    Error {
        /// Error kind name.
        kind: &'static str,
        /// Description.
        message: String,
        /// Whether rows were set aside (rejected for good).
        fatal: bool,
        /// When the next attempt happens.
        retry_in_ms: f64,
    },
    /// This tab became the origin's uploader.
    Leader,
}

impl Status {
    pub(crate) fn to_js(&self, source: &str) -> JsValue {
        let o = Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = Reflect::set(&o, &k.into(), &v);
        };
        let ty = match self {
            Self::Queued { count } => {
                set("count", (*count).into());
                "queued"
            }
            Self::InFlight { count, seq } => {
                set("count", (*count).into());
                set("seqFrom", (seq.0 as f64).into());
                set("seqTo", (seq.1 as f64).into());
                "inflight"
            }
            Self::Delivered {
                count,
                seq,
                depth,
                total,
            } => {
                set("count", (*count).into());
                set("seqFrom", (seq.0 as f64).into());
                set("seqTo", (seq.1 as f64).into());
                set("depth", (*depth).into());
                set("total", (*total as f64).into());
                "delivered"
            }
            Self::Error {
                kind,
                message,
                fatal,
                retry_in_ms,
            } => {
                set("kind", (*kind).into());
                set("message", message.as_str().into());
                set("fatal", (*fatal).into());
                set("retryInMs", (*retry_in_ms).into());
                "error"
            }
            Self::Leader => "leader",
        };
        set("type", ty.into());
        set("source", source.into());
        o.into()
    }
}

type EventHandler = Closure<dyn FnMut(web_sys::Event)>;
type Listener = (EventTarget, &'static str, EventHandler);
type LockCallback = Closure<dyn FnMut(JsValue) -> Promise>;
type ChannelHandler = Closure<dyn FnMut(MessageEvent)>;

/// Shared state behind a [`Client`]; the uploader and event handlers hold it weakly.
pub(crate) struct Inner {
    pub(crate) db: IdbDatabase,
    pub(crate) name: String,
    pub(crate) schema: Rc<Schema>,
    pub(crate) mapper: Mapper,
    pub(crate) config: Config,
    /// New rows (local commit or another tab's "wake").
    pub(crate) wake: Signal,
    /// Try now, skipping backoff (flush, page hidden, back online).
    pub(crate) urgent: Signal,
    /// Something was delivered or failed (local or another tab): flush re-checks.
    pub(crate) progress: Signal,
    on_status: RefCell<Option<Function>>,
    pub(crate) closed: Cell<bool>,
    pub(crate) leader: Cell<bool>,
    /// Rows this tab saw set aside (own uploader or another tab's): flush reports them.
    pub(crate) rejected_seen: Cell<u64>,
    channel: Option<BroadcastChannel>,
    listeners: RefCell<Vec<Listener>>,
    channel_handler: RefCell<Option<ChannelHandler>>,
    lock_callback: RefCell<Option<LockCallback>>,
    lock_abort: Option<web_sys::AbortController>,
    lock_release: RefCell<Option<Function>>,
    on_versionchange: RefCell<Option<EventHandler>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("database", &self.name)
            .field("client_id", &self.mapper.client_id)
            .field("leader", &self.leader.get())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Sends a status event to this tab's listener and, from the uploader, to the other tabs.
    pub(crate) fn emit(&self, status: Status) {
        if let Status::Error { fatal: true, .. } = status {
            self.rejected_seen.set(self.rejected_seen.get() + 1);
        }
        if let Some(f) = &*self.on_status.borrow() {
            let _ = f.call1(&JsValue::NULL, &status.to_js("local"));
        }
        if let (true, Some(ch)) = (
            self.leader.get() && !matches!(status, Status::Queued { .. }),
            &self.channel,
        ) {
            let msg = status.to_js("remote");
            let _ = Reflect::set(&msg, &"t".into(), &"status".into());
            let _ = ch.post_message(&msg);
        }
        self.progress.notify();
    }

    fn post(&self, t: &str) {
        if let Some(ch) = &self.channel {
            let msg = Object::new();
            let _ = Reflect::set(&msg, &"t".into(), &t.into());
            let _ = ch.post_message(&msg);
        }
    }
}

/// An open client. Cheap to clone; [`Client::close`] stops it.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

impl Client {
    /// Opens `name` with the app's `schema` plus the outbox, and starts competing for the
    /// origin's uploader lock when a bridge URL is configured.
    pub async fn open(name: &str, schema: Schema, config: Config) -> Result<Self, Error> {
        let db = outbox::open_database(name, &schema).await?;
        let client_id = match outbox::client_id(&db).await {
            Ok(id) => id,
            Err(e) => {
                db.close();
                return Err(e);
            }
        };
        let channel = BroadcastChannel::new(&format!("s2s-wasm:{name}")).ok();
        let mapper = Mapper::new(name.to_owned(), client_id, config.static_attributes.clone());
        let inner = Rc::new(Inner {
            db,
            name: name.to_owned(),
            schema: Rc::new(schema),
            mapper,
            config,
            wake: Signal::default(),
            urgent: Signal::default(),
            progress: Signal::default(),
            on_status: RefCell::new(None),
            closed: Cell::new(false),
            leader: Cell::new(false),
            rejected_seen: Cell::new(0),
            channel,
            listeners: RefCell::new(Vec::new()),
            channel_handler: RefCell::new(None),
            lock_callback: RefCell::new(None),
            lock_abort: web_sys::AbortController::new().ok(),
            lock_release: RefCell::new(None),
            on_versionchange: RefCell::new(None),
        });
        let client = Self { inner };
        client.install_handlers();
        if client.inner.config.bridge_url.is_some() {
            client.start_uploader();
        }
        Ok(client)
    }

    fn install_handlers(&self) {
        let weak = Rc::downgrade(&self.inner);
        // Another tab upgrading the schema must not stay blocked by this connection.
        let w = weak.clone();
        let on_vc = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            if let Some(inner) = w.upgrade() {
                inner.db.close();
                inner.closed.set(true);
                inner.urgent.notify();
            }
        });
        self.inner
            .db
            .set_onversionchange(Some(on_vc.as_ref().unchecked_ref()));
        *self.inner.on_versionchange.borrow_mut() = Some(on_vc);

        if let Some(ch) = &self.inner.channel {
            let w = weak.clone();
            let handler = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
                let Some(inner) = w.upgrade() else { return };
                let data = ev.data();
                let t = Reflect::get(&data, &"t".into())
                    .ok()
                    .and_then(|t| t.as_string());
                match t.as_deref() {
                    Some("wake") => inner.wake.notify(),
                    Some("flush") => {
                        inner.wake.notify();
                        inner.urgent.notify();
                    }
                    Some("status") if !inner.leader.get() => {
                        if Reflect::get(&data, &"fatal".into()).is_ok_and(|f| f.is_truthy()) {
                            inner.rejected_seen.set(inner.rejected_seen.get() + 1);
                        }
                        if let Some(f) = &*inner.on_status.borrow() {
                            let _ = f.call1(&JsValue::NULL, &data);
                        }
                        inner.progress.notify();
                    }
                    _ => {}
                }
            });
            ch.set_onmessage(Some(handler.as_ref().unchecked_ref()));
            *self.inner.channel_handler.borrow_mut() = Some(handler);
        }

        // Page hidden (tab switch, navigation, app backgrounded): deliver what is there now.
        // `online` is only a hint, but a cheap one: retry at once instead of after the backoff.
        let global = js_sys::global();
        let document = Reflect::get(&global, &"document".into())
            .ok()
            .filter(|d| d.is_object());
        let mut targets: Vec<(EventTarget, &'static str)> = Vec::new();
        if let Some(doc) = document {
            targets.push((doc.unchecked_into(), "visibilitychange"));
        }
        let global_target: EventTarget = global.unchecked_into();
        targets.push((global_target.clone(), "pagehide"));
        targets.push((global_target, "online"));
        for (target, event) in targets {
            let w = weak.clone();
            let handler = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
                if let Some(inner) = w.upgrade() {
                    inner.wake.notify();
                    inner.urgent.notify();
                    if !inner.leader.get() {
                        inner.post("flush");
                    }
                }
            });
            let _ =
                target.add_event_listener_with_callback(event, handler.as_ref().unchecked_ref());
            self.inner
                .listeners
                .borrow_mut()
                .push((target, event, handler));
        }
    }

    fn start_uploader(&self) {
        let weak = Rc::downgrade(&self.inner);
        let Some(locks) = sys::lock_manager() else {
            // No Web Locks (insecure context): this tab uploads alone. Say so, since two such tabs
            // would both upload (still at-least-once, with more duplicates).
            web_sys::console::warn_1(
                &"s2s-wasm: Web Locks unavailable; this tab uploads without coordination".into(),
            );
            spawn_uploader(weak, None);
            return;
        };
        let w = weak;
        let callback = Closure::<dyn FnMut(JsValue) -> Promise>::new(move |_lock: JsValue| {
            let mut release = None;
            let held = Promise::new(&mut |resolve, _| release = Some(resolve));
            if let Some(inner) = w.upgrade() {
                *inner.lock_release.borrow_mut() = release.clone();
            }
            spawn_uploader(w.clone(), release);
            held
        });
        let lock_name = format!("s2s-wasm:uploader:{}", self.inner.name);
        let options = Object::new();
        let _ = Reflect::set(&options, &"mode".into(), &"exclusive".into());
        // close() aborts a request still waiting behind another tab, so the callback (owned by
        // this client) is never called after the client is gone.
        if let Some(abort) = &self.inner.lock_abort {
            let _ = Reflect::set(&options, &"signal".into(), &abort.signal());
        }
        // The request resolves when the lock is released (close) or fails (rejected on close).
        let _ = locks.request_with_options(&lock_name, &options, callback.as_ref().unchecked_ref());
        *self.inner.lock_callback.borrow_mut() = Some(callback);
    }

    /// Starts a transaction over `stores` and the outbox. Call [`Client::committed`] after a
    /// successful commit so the uploader wakes up.
    pub fn begin(&self, stores: &[&str]) -> Result<WriteTx, Error> {
        if self.inner.closed.get() {
            return Err(Error::Closed);
        }
        WriteTx::begin(&self.inner.db, self.inner.schema.clone(), stores)
    }

    /// Reports `rows` new outbox rows: wakes the uploader (here or in the tab that holds it).
    pub fn committed(&self, rows: u32) {
        if rows == 0 {
            return;
        }
        self.inner.emit(Status::Queued { count: rows });
        if self.inner.leader.get() {
            self.inner.wake.notify();
        } else {
            self.inner.post("wake");
        }
    }

    /// Exports the existing records of `store` (see [`snapshot`]); resumes from its checkpoint
    /// unless `restart`. Returns the number of records exported by this call.
    pub async fn snapshot(&self, store: &str, chunk: u32, restart: bool) -> Result<u32, Error> {
        let mut exported = 0;
        let mut restart = restart;
        loop {
            if self.inner.closed.get() {
                return Err(Error::Closed);
            }
            let c = snapshot::next_chunk(
                &self.inner.db,
                &self.inner.schema,
                store,
                chunk.max(1),
                restart,
            )
            .await?;
            restart = false;
            exported += c.exported;
            self.committed(c.exported);
            if c.done {
                return Ok(exported);
            }
        }
    }

    /// Resolves once every row that was in the outbox when it was called has been delivered.
    /// Fails with `Timeout` after `timeout_ms`, or with `Rejected` when rows were set aside.
    pub async fn flush(&self, timeout_ms: f64) -> Result<(), Error> {
        let Some(target) = outbox::last_seq(&self.inner.db).await? else {
            return Ok(());
        };
        let rejected_before = self.inner.rejected_seen.get();
        let deadline = js_sys::Date::now() + timeout_ms;
        if self.inner.leader.get() {
            self.inner.wake.notify();
            self.inner.urgent.notify();
        } else {
            self.inner.post("flush");
        }
        loop {
            if self.inner.closed.get() {
                return Err(Error::Closed);
            }
            if !outbox::has_rows_upto(&self.inner.db, target).await? {
                if self.inner.rejected_seen.get() != rejected_before {
                    return Err(Error::Rejected {
                        reason: "SET_ASIDE",
                        message: "some records were rejected and set aside (see status events)"
                            .into(),
                    });
                }
                return Ok(());
            }
            let left = deadline - js_sys::Date::now();
            if left <= 0.0 {
                let depth = outbox::depth(&self.inner.db).await.unwrap_or(0);
                return Err(Error::Timeout(format!(
                    "flush: {depth} records still in the outbox"
                )));
            }
            self.inner.progress.wait(left.min(500.0)).await;
        }
    }

    /// Rows waiting in the outbox.
    pub async fn depth(&self) -> Result<u32, Error> {
        outbox::depth(&self.inner.db).await
    }

    /// The oldest `limit` outbox rows (for inspection and tests).
    pub async fn pending(&self, limit: u32) -> Result<Vec<outbox::OutboxRow>, Error> {
        outbox::peek(&self.inner.db, limit).await
    }

    /// The FlowFile a row becomes (for inspection and tests).
    pub async fn flowfile(
        &self,
        row: &outbox::OutboxRow,
    ) -> Result<crate::api::codec::FlowFile, Error> {
        self.inner.mapper.flowfile(row).await
    }

    /// Sets the status listener (one per client; the JS facade fans out).
    pub fn on_status(&self, f: Option<Function>) {
        *self.inner.on_status.borrow_mut() = f;
    }

    /// `idb.client.id` of this database in this browser profile.
    pub fn client_id(&self) -> &str {
        &self.inner.mapper.client_id
    }

    /// Whether this tab is the origin's uploader right now.
    pub fn is_uploader(&self) -> bool {
        self.inner.leader.get()
    }

    /// The underlying database (read access for the app: `get`, `getAll`, indexes).
    pub fn database(&self) -> &IdbDatabase {
        &self.inner.db
    }

    /// Stops the uploader, releases the lock (another tab takes over), detaches every handler
    /// and closes the database. Rows not yet delivered stay in the outbox.
    pub fn close(&self) {
        let inner = &self.inner;
        if inner.closed.replace(true) {
            return;
        }
        inner.urgent.notify();
        inner.wake.notify();
        if let Some(abort) = &inner.lock_abort {
            abort.abort();
        }
        for (target, event, handler) in inner.listeners.borrow_mut().drain(..) {
            let _ =
                target.remove_event_listener_with_callback(event, handler.as_ref().unchecked_ref());
        }
        if let Some(ch) = &inner.channel {
            ch.set_onmessage(None);
            ch.close();
        }
        inner.channel_handler.borrow_mut().take();
        inner.db.set_onversionchange(None);
        inner.on_versionchange.borrow_mut().take();
        inner.db.close();
    }
}

fn spawn_uploader(weak: Weak<Inner>, release: Option<Function>) {
    wasm_bindgen_futures::spawn_local(async move {
        if let Some(inner) = weak.upgrade().filter(|i| !i.closed.get()) {
            inner.leader.set(true);
            inner.emit(Status::Leader);
        }
        uploader::run(weak.clone()).await;
        if let Some(inner) = weak.upgrade() {
            inner.leader.set(false);
            inner.lock_release.borrow_mut().take();
        }
        if let Some(release) = release {
            let _ = release.call0(&JsValue::NULL);
        }
    });
}
