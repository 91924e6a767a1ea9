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
use crate::api::idb;
use crate::api::mapping::Mapper;
use crate::api::outbox::{self, WriteTx};
use crate::api::schema::Schema;
use crate::api::signal::Signal;
use crate::api::snapshot;
use crate::api::uploader::{self, Host};
use crate::sys;

pub use crate::api::status::{Config, Status};

type EventHandler = Closure<dyn FnMut(web_sys::Event)>;
type LockCallback = Closure<dyn FnMut(JsValue) -> Promise>;
type ChannelHandler = Closure<dyn FnMut(MessageEvent)>;

/// An event listener that is removed when the guard is dropped (as gloo's `EventListener`), so
/// the browser never calls a closure that no longer exists.
struct ListenerGuard {
    target: EventTarget,
    event: &'static str,
    handler: EventHandler,
}

impl ListenerGuard {
    fn new(target: EventTarget, event: &'static str, handler: EventHandler) -> Self {
        let _ = target.add_event_listener_with_callback(event, handler.as_ref().unchecked_ref());
        Self {
            target,
            event,
            handler,
        }
    }
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        let _ = self
            .target
            .remove_event_listener_with_callback(self.event, self.handler.as_ref().unchecked_ref());
    }
}

/// The `BroadcastChannel`'s message handler: detached and the channel closed on drop.
struct ChannelGuard {
    channel: BroadcastChannel,
    _handler: ChannelHandler,
}

impl Drop for ChannelGuard {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}

/// The Web Lock request: on drop a request still queued behind another tab is withdrawn (its
/// callback is never called afterwards) and a held lock is released.
struct LockGuard {
    abort: Option<web_sys::AbortController>,
    _callback: LockCallback,
    release: Rc<RefCell<Option<Function>>>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(abort) = &self.abort {
            abort.abort();
        }
        if let Some(release) = self.release.borrow_mut().take() {
            let _ = release.call0(&JsValue::NULL);
        }
    }
}

/// The database's `versionchange` handler: detached, and the connection closed, on drop.
struct DbGuard {
    db: IdbDatabase,
    _handler: EventHandler,
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        self.db.set_onversionchange(None);
        self.db.close();
    }
}

/// Shared state behind a [`Client`]; the uploader and event handlers hold it weakly.
pub(crate) struct Inner {
    pub(crate) db: IdbDatabase,
    pub(crate) name: String,
    pub(crate) schema: Rc<Schema>,
    pub(crate) mapper: Mapper,
    pub(crate) config: Config,
    /// New rows (local commit or another tab's "wake").
    pub(crate) wake: Rc<Signal>,
    /// Try now, skipping backoff (flush, page hidden, back online).
    pub(crate) urgent: Rc<Signal>,
    /// Something was delivered or failed (local or another tab): flush re-checks.
    pub(crate) progress: Signal,
    on_status: RefCell<Option<Function>>,
    pub(crate) closed: Cell<bool>,
    pub(crate) leader: Cell<bool>,
    channel: Option<BroadcastChannel>,
    // Guards: whatever the browser holds a callback of is released when the client is closed or
    // dropped (fields drop with `Inner`).
    listeners: RefCell<Vec<ListenerGuard>>,
    channel_guard: RefCell<Option<ChannelGuard>>,
    lock: RefCell<Option<LockGuard>>,
    lock_release: Rc<RefCell<Option<Function>>>,
    db_guard: RefCell<Option<DbGuard>>,
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

/// The uploader's narrow view of the client: the database, the mapping, the settings, its two
/// signals and where status events go; nothing else of the client's state.
impl Host for Inner {
    fn db(&self) -> &IdbDatabase {
        &self.db
    }
    fn mapper(&self) -> &Mapper {
        &self.mapper
    }
    fn config(&self) -> &Config {
        &self.config
    }
    fn is_closed(&self) -> bool {
        self.closed.get()
    }
    fn wake(&self) -> Rc<Signal> {
        self.wake.clone()
    }
    fn urgent(&self) -> Rc<Signal> {
        self.urgent.clone()
    }
    fn emit(&self, status: Status) {
        Inner::emit(self, status);
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
        // Another connection's upgrade can close ours while it is being set up (before the
        // client's own `versionchange` handler is there): open again, a few times.
        let mut attempt = 0;
        let (db, client_id) = loop {
            attempt += 1;
            let db = outbox::open_database(name, &schema).await?;
            let id = outbox::client_id(&db).await;
            if idb::closed_by_versionchange(&db) && attempt < 5 {
                continue;
            }
            match id {
                Ok(id) if !idb::closed_by_versionchange(&db) => break (db, id),
                Ok(_) => {
                    return Err(Error::Idb(
                        "the database kept being upgraded by another connection".into(),
                    ));
                }
                Err(e) => {
                    db.close();
                    return Err(e);
                }
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
            wake: Rc::default(),
            urgent: Rc::default(),
            progress: Signal::default(),
            on_status: RefCell::new(None),
            closed: Cell::new(false),
            leader: Cell::new(false),
            channel,
            listeners: RefCell::new(Vec::new()),
            channel_guard: RefCell::new(None),
            lock: RefCell::new(None),
            lock_release: Rc::default(),
            db_guard: RefCell::new(None),
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
        *self.inner.db_guard.borrow_mut() = Some(DbGuard {
            db: self.inner.db.clone(),
            _handler: on_vc,
        });

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
                        if let Some(f) = &*inner.on_status.borrow() {
                            let _ = f.call1(&JsValue::NULL, &data);
                        }
                        inner.progress.notify();
                    }
                    _ => {}
                }
            });
            ch.set_onmessage(Some(handler.as_ref().unchecked_ref()));
            *self.inner.channel_guard.borrow_mut() = Some(ChannelGuard {
                channel: ch.clone(),
                _handler: handler,
            });
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
            self.inner
                .listeners
                .borrow_mut()
                .push(ListenerGuard::new(target, event, handler));
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
        // Dropping the guard (close() or the client dropped) aborts a request still waiting behind
        // another tab, so the callback (owned by the guard) is never called after it is gone.
        let abort = web_sys::AbortController::new().ok();
        if let Some(abort) = &abort {
            let _ = Reflect::set(&options, &"signal".into(), &abort.signal());
        }
        // The request's promise settles when the lock is released, or rejects with AbortError
        // when the request is withdrawn: expected, so handled here (no unhandled rejection).
        let settled =
            locks.request_with_options(&lock_name, &options, callback.as_ref().unchecked_ref());
        wasm_bindgen_futures::spawn_local(async move {
            let _ = wasm_bindgen_futures::JsFuture::from(settled).await;
        });
        *self.inner.lock.borrow_mut() = Some(LockGuard {
            abort,
            _callback: callback,
            release: self.inner.lock_release.clone(),
        });
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

    /// Resolves once every row that was in the outbox when it was called has left it: delivered
    /// or set aside. Returns the `seq`s of those rows that were set aside (in [`REJECTED_STORE`]:
    /// by the bridge's rejection or the client's own refusal), empty when all were delivered.
    /// Fails with `Timeout` after `timeout_ms`, `Closed` when the client closes meanwhile.
    ///
    /// [`REJECTED_STORE`]: crate::api::schema::REJECTED_STORE
    pub async fn flush(&self, timeout_ms: f64) -> Result<Vec<u64>, Error> {
        let Some(target) = outbox::last_seq(&self.inner.db).await? else {
            return Ok(Vec::new());
        };
        let head = outbox::peek(&self.inner.db, 1)
            .await?
            .first()
            .map_or(target, |r| r.seq);
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
                return outbox::set_aside_between(&self.inner.db, head, target).await;
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

    /// Whether the client is closed ([`Client::close`], or another connection upgraded the
    /// database).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
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
        inner.lock.borrow_mut().take();
        inner.listeners.borrow_mut().clear();
        inner.channel_guard.borrow_mut().take();
        inner.db_guard.borrow_mut().take();
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
