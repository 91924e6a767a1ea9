//! The transactional outbox: every captured write appends a row to [`OUTBOX_STORE`] in the *same*
//! IndexedDB transaction as the data, so a change is in the outbox if and only if it committed.
//!
//! Rows are keyed by the store's key generator, which gives `seq`: strictly increasing, in commit
//! order (read-write transactions over the outbox are serialized by IndexedDB), and never reused
//! even after rows are deleted or the database is reopened.
//!
//! Row layout (a plain object, so IndexedDB's structured clone captures the value at write time):
//! one change is `{ s: store, k: key, o: op, t: epoch ms, v: value }` (what [`WriteTx`] and
//! `snapshot` write). `instrument()` (`js/instrument.js`) writes ONE row per batch of captured
//! writes of a transaction, `{ b: [change, ...] }` with n > 1 changes: stored at key K it stands for
//! seqs K..K+n-1, which the same transaction reserves (a `put` at K+n-1 advances the key generator
//! past it, then that placeholder is deleted), so keys K+1..K+n-1 stay free and the row is exactly
//! n single rows at K..K+n-1. A batch row also has an index entry, the array key `[K, n]` (array
//! keys sort after every number), so [`depth`] counts changes from keys alone.
//!
//! The functions here work on records (changes), never on rows: [`peek_after`] expands batch rows
//! and may return part of one (the next call continues inside it), [`remove`] and [`set_aside`]
//! split a batch row that is only partly among their seqs into single rows (at their own seqs, in
//! the same transaction), [`last_seq`] is the last change of the last row. A batch row holds at
//! most [`MAX_BATCH_CHANGES`] changes; anything else is an [`Error::Idb`] "not in the client's
//! format".

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Object, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue, prelude::Closure};
use web_sys::{
    Event, IdbDatabase, IdbKeyRange, IdbObjectStore, IdbTransaction, IdbTransactionMode,
};

use crate::api::error::Error;
use crate::api::idb;
use crate::api::schema::{INTERNAL_STORES, META_STORE, OUTBOX_STORE, REJECTED_STORE, Schema};

/// The kind of change a row records (`idb.op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `put`: insert or replace.
    Put,
    /// `add`: insert, failing when the key exists.
    Add,
    /// `delete` of one key.
    Delete,
    /// `clear` of the whole store.
    Clear,
    /// A record exported by `snapshot`.
    Snapshot,
}

impl Op {
    /// The `idb.op` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Put => "put",
            Self::Add => "add",
            Self::Delete => "delete",
            Self::Clear => "clear",
            Self::Snapshot => "snapshot",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "put" => Self::Put,
            "add" => Self::Add,
            "delete" => Self::Delete,
            "clear" => Self::Clear,
            "snapshot" => Self::Snapshot,
            _ => return None,
        })
    }
}

/// One outbox row, read back for upload.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// `idb.seq`.
    pub seq: u64,
    /// Store written.
    pub store: String,
    /// Key written (`undefined` for `clear`).
    pub key: JsValue,
    /// Kind of change.
    pub op: Op,
    /// Time of the write, ms since the epoch.
    pub timestamp: f64,
    /// The record as written (structured clone), `undefined` for delete/clear.
    pub value: JsValue,
}

pub(crate) fn row_object(store: &str, key: &JsValue, op: Op, ts: f64, value: &JsValue) -> Object {
    let row = Object::new();
    // Reflect::set on a fresh plain object cannot fail.
    let _ = Reflect::set(&row, &"s".into(), &store.into());
    let _ = Reflect::set(&row, &"k".into(), key);
    let _ = Reflect::set(&row, &"o".into(), &op.as_str().into());
    let _ = Reflect::set(&row, &"t".into(), &ts.into());
    let _ = Reflect::set(&row, &"v".into(), value);
    row
}

fn parse_row(seq: &JsValue, row: &JsValue) -> Result<OutboxRow, Error> {
    let get = |k: &str| Reflect::get(row, &k.into()).unwrap_or(JsValue::UNDEFINED);
    let seq = seq
        .as_f64()
        .filter(|n| *n >= 0.0 && n.fract() == 0.0)
        .ok_or_else(|| Error::Idb(format!("outbox key {seq:?} is not a sequence number")))?;
    let op = get("o").as_string().and_then(|s| Op::parse(&s));
    let store = get("s").as_string();
    match (op, store) {
        (Some(op), Some(store)) => Ok(OutboxRow {
            seq: seq as u64,
            store,
            key: get("k"),
            op,
            timestamp: get("t").as_f64().unwrap_or(0.0),
            value: get("v"),
        }),
        _ => Err(Error::Idb(format!(
            "outbox row {seq} is not in the client's format"
        ))),
    }
}

/// Opens (creating or upgrading) the database with the app's stores and the client's stores.
pub async fn open_database(name: &str, schema: &Schema) -> Result<IdbDatabase, Error> {
    schema.validate()?;
    // First look at what exists, so an existing database that lacks our stores (or an app store)
    // gets a version bump instead of a VersionError.
    let probe = idb::open(name, None, |_, _, _| Ok(())).await?;
    let current = probe.version() as u32;
    let names = probe.object_store_names();
    let missing = INTERNAL_STORES
        .iter()
        .copied()
        .chain(schema.stores.iter().map(|s| s.name.as_str()))
        .any(|s| !names.contains(s));
    probe.close();
    let target = if missing {
        schema.version.max(current + 1)
    } else {
        schema.version.max(current)
    };
    let spec = schema.clone();
    let db = idb::open(name, Some(target), move |db, tx, _old| {
        create_stores(db, tx, &spec)
    })
    .await?;
    Ok(db)
}

fn create_stores(db: &IdbDatabase, tx: &IdbTransaction, schema: &Schema) -> Result<(), Error> {
    let names = db.object_store_names();
    for s in &schema.stores {
        let store = if names.contains(&s.name) {
            tx.object_store(&s.name).map_err(|e| Error::idb(&e))?
        } else {
            let params = web_sys::IdbObjectStoreParameters::new();
            params.set_auto_increment(s.auto_increment);
            if let Some(kp) = &s.key_path {
                params.set_key_path(&JsValue::from_str(kp));
            }
            db.create_object_store_with_optional_parameters(&s.name, &params)
                .map_err(|e| Error::idb(&e))?
        };
        let index_names = store.index_names();
        for ix in s
            .indexes
            .iter()
            .filter(|ix| !index_names.contains(&ix.name))
        {
            let params = web_sys::IdbIndexParameters::new();
            params.set_unique(ix.unique);
            params.set_multi_entry(ix.multi_entry);
            store
                .create_index_with_str_and_optional_parameters(&ix.name, &ix.key_path, &params)
                .map_err(|e| Error::idb(&e))?;
        }
    }
    if !names.contains(OUTBOX_STORE) {
        let params = web_sys::IdbObjectStoreParameters::new();
        params.set_auto_increment(true);
        db.create_object_store_with_optional_parameters(OUTBOX_STORE, &params)
            .map_err(|e| Error::idb(&e))?;
    }
    for plain in [META_STORE, REJECTED_STORE] {
        if !names.contains(plain) {
            db.create_object_store(plain).map_err(|e| Error::idb(&e))?;
        }
    }
    Ok(())
}

/// Reads the client id from the meta store, creating it on first use. The id lives in the same
/// database as the outbox whose `seq` it qualifies, so `idb.client.id` + `idb.seq` is unique.
pub async fn client_id(db: &IdbDatabase) -> Result<String, Error> {
    let tx = db
        .transaction_with_str_and_mode(META_STORE, IdbTransactionMode::Readwrite)
        .map_err(|e| Error::idb(&e))?;
    let done = idb::completion(&tx);
    let meta = tx.object_store(META_STORE).map_err(|e| Error::idb(&e))?;
    let existing = idb::request(&meta.get(&"clientId".into()).map_err(|e| Error::idb(&e))?).await?;
    let id = match existing.as_string() {
        Some(id) => id,
        None => {
            let id = new_uuid()?;
            meta.put_with_key(&id.as_str().into(), &"clientId".into())
                .map_err(|e| Error::idb(&e))?;
            id
        }
    };
    idb::finished(&tx, done).await?;
    Ok(id)
}

fn new_uuid() -> Result<String, Error> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into()).map_err(|e| Error::js(&e))?;
    let f = Reflect::get(&crypto, &"randomUUID".into()).map_err(|e| Error::js(&e))?;
    let f: js_sys::Function = f.dyn_into().map_err(|_| {
        Error::Js("crypto.randomUUID is not available (needs a secure context)".into())
    })?;
    f.call0(&crypto)
        .map_err(|e| Error::js(&e))?
        .as_string()
        .ok_or_else(|| Error::Js("randomUUID".into()))
}

/// A read-write transaction over application stores plus the outbox.
///
/// Every write issues its data request and, from that request's `success` handler (so that
/// generated keys are known), the outbox row: both in this transaction. Rows therefore follow the
/// order of the writes. Dropping the value without [`WriteTx::commit`] aborts the transaction.
///
/// Never await anything but this transaction's own requests between writes: IndexedDB commits a
/// transaction as soon as it has no pending request at the end of a task.
#[must_use = "a WriteTx aborts when dropped without commit()"]
#[derive(Debug)]
pub struct WriteTx {
    inner: Rc<TxInner>,
}

type SuccessHandler = Closure<dyn FnMut(Event)>;

#[derive(Debug)]
struct TxInner {
    tx: IdbTransaction,
    outbox: IdbObjectStore,
    schema: Rc<Schema>,
    done: RefCell<Option<Promise>>,
    // Success handlers stay alive for the transaction's lifetime; they are freed with it.
    handlers: RefCell<Vec<SuccessHandler>>,
    captured: Cell<u32>,
    finished: Cell<bool>,
}

impl WriteTx {
    /// Starts a read-write transaction over `stores` and the outbox.
    pub fn begin(db: &IdbDatabase, schema: Rc<Schema>, stores: &[&str]) -> Result<Self, Error> {
        if stores.is_empty() {
            return Err(Error::Invalid(
                "a transaction needs at least one store".into(),
            ));
        }
        if let Some(bad) = stores.iter().find(|s| s.starts_with("__s2s_")) {
            return Err(Error::Invalid(format!(
                "store {bad:?} is internal to the client"
            )));
        }
        let mut scope: Vec<&str> = stores.to_vec();
        scope.push(OUTBOX_STORE);
        let tx = db
            .transaction_with_str_sequence_and_mode(
                &idb::names(&scope),
                IdbTransactionMode::Readwrite,
            )
            .map_err(|e| Error::idb(&e))?;
        let done = idb::completion(&tx);
        let outbox = tx.object_store(OUTBOX_STORE).map_err(|e| Error::idb(&e))?;
        Ok(Self {
            inner: Rc::new(TxInner {
                tx,
                outbox,
                schema,
                done: RefCell::new(Some(done)),
                handlers: RefCell::new(Vec::new()),
                captured: Cell::new(0),
                finished: Cell::new(false),
            }),
        })
    }

    /// `put(value, key?)` on `store`; the promise resolves to the record's key.
    pub fn put(
        &self,
        store: &str,
        value: &JsValue,
        key: Option<&JsValue>,
    ) -> Result<Promise, Error> {
        self.write(store, Op::Put, value, key)
    }

    /// `add(value, key?)` on `store`; the promise resolves to the record's key.
    pub fn add(
        &self,
        store: &str,
        value: &JsValue,
        key: Option<&JsValue>,
    ) -> Result<Promise, Error> {
        self.write(store, Op::Add, value, key)
    }

    /// `delete(key)` on `store` (single keys only; a key range would not say what was deleted).
    pub fn delete(&self, store: &str, key: &JsValue) -> Result<Promise, Error> {
        if key.is_instance_of::<IdbKeyRange>() {
            return Err(Error::Invalid(
                "delete by key range is not captured: delete keys one by one".into(),
            ));
        }
        self.write(store, Op::Delete, &JsValue::UNDEFINED, Some(key))
    }

    /// `clear()` of `store`.
    pub fn clear(&self, store: &str) -> Result<Promise, Error> {
        self.write(store, Op::Clear, &JsValue::UNDEFINED, None)
    }

    /// `get(key)` on `store`, inside this transaction.
    pub async fn get(&self, store: &str, key: &JsValue) -> Result<JsValue, Error> {
        let os = self
            .inner
            .tx
            .object_store(store)
            .map_err(|e| Error::idb(&e))?;
        idb::request(&os.get(key).map_err(|e| Error::idb(&e))?).await
    }

    /// Number of outbox rows this transaction has written so far.
    pub fn captured(&self) -> u32 {
        self.inner.captured.get()
    }

    fn write(
        &self,
        store: &str,
        op: Op,
        value: &JsValue,
        key: Option<&JsValue>,
    ) -> Result<Promise, Error> {
        if self.inner.finished.get() {
            return Err(Error::Invalid(
                "the transaction has already finished".into(),
            ));
        }
        if store.starts_with("__s2s_") {
            return Err(Error::Invalid(format!(
                "store {store:?} is internal to the client"
            )));
        }
        let os = self
            .inner
            .tx
            .object_store(store)
            .map_err(|e| Error::idb(&e))?;
        let req = match (op, key) {
            (Op::Put, None) => os.put(value),
            (Op::Put, Some(k)) => os.put_with_key(value, k),
            (Op::Add, None) => os.add(value),
            (Op::Add, Some(k)) => os.add_with_key(value, k),
            (Op::Delete, Some(k)) => os.delete(k),
            (Op::Clear, _) => os.clear(),
            (Op::Delete | Op::Snapshot, _) => {
                return Err(Error::Invalid(format!("{} needs a key", op.as_str())));
            }
        }
        .map_err(|e| Error::idb(&e))?;

        let watched = self.inner.schema.is_watched(store);
        let inline_path = self
            .inner
            .schema
            .store(store)
            .filter(|s| s.auto_increment && key.is_none())
            .and_then(|s| s.key_path.clone())
            .filter(|p| !p.contains('.'));
        let ts = js_sys::Date::now();
        let mut settle = None;
        let promise = Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
        let (resolve, reject) = settle.expect("Promise::new runs its executor synchronously");
        // A failed request rejects with an `Error` named after the DOMException (`ConstraintError`,
        // ...) carrying its message, with the DOMException as `cause`; not with the raw `Event`.
        let req_err = req.clone();
        let reject_err = reject.clone();
        let on_error = Closure::<dyn FnMut(Event)>::new(move |_event: Event| {
            let _ = reject_err.call1(&JsValue::NULL, &request_error_value(&req_err, op.as_str()));
        });
        req.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        self.inner.handlers.borrow_mut().push(on_error);

        let inner = Rc::downgrade(&self.inner);
        let req_in = req.clone();
        let store_name = store.to_owned();
        let value = value.clone();
        let given_key = key.cloned();
        let handler = Closure::<dyn FnMut(Event)>::new(move |_event: Event| {
            let result = req_in.result().unwrap_or(JsValue::UNDEFINED);
            let key = match op {
                Op::Put | Op::Add => result,
                _ => given_key.clone().unwrap_or(JsValue::UNDEFINED),
            };
            if let Some(inner) = inner.upgrade().filter(|_| watched) {
                // A generated in-line key was written into IndexedDB's copy only; put it on the
                // captured record too (as Dexie does), so the FlowFile carries it.
                if let Some(path) = &inline_path
                    && value.is_object()
                    && Reflect::get(&value, &path.as_str().into()).is_ok_and(|v| v.is_undefined())
                {
                    let _ = Reflect::set(&value, &path.as_str().into(), &key);
                }
                let row = row_object(&store_name, &key, op, ts, &value);
                if let Err(e) = inner.outbox.add(&row) {
                    // No outbox row means the write must not commit either.
                    let _ = inner.tx.abort();
                    let _ = reject.call1(&JsValue::NULL, &e);
                    return;
                }
                inner.captured.set(inner.captured.get() + 1);
            }
            let _ = resolve.call1(&JsValue::NULL, &key);
        });
        req.set_onsuccess(Some(handler.as_ref().unchecked_ref()));
        self.inner.handlers.borrow_mut().push(handler);
        Ok(promise)
    }

    /// Aborts: neither the data nor the outbox rows are written.
    pub fn abort(&self) {
        if !self.inner.finished.replace(true) {
            let _ = self.inner.tx.abort();
        }
        self.inner.park_handlers();
    }

    /// Waits until IndexedDB reports the transaction complete (it commits by itself once no
    /// request is pending). Returns the number of outbox rows written.
    pub async fn commit(&self) -> Result<u32, Error> {
        let done = self
            .inner
            .done
            .borrow_mut()
            .take()
            .ok_or_else(|| Error::Invalid("commit() called twice".into()))?;
        // No explicit IDBTransaction.commit(): outbox rows are added from success handlers, and
        // commit() forbids new requests. IndexedDB auto-commits once the last request is done.
        self.inner.finished.set(true);
        let outcome = idb::finished(&self.inner.tx, done).await;
        self.inner.handlers.borrow_mut().clear();
        outcome.map(|()| self.inner.captured.get())
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if !self.inner.finished.replace(true) {
            let _ = self.inner.tx.abort();
        }
        self.inner.park_handlers();
    }
}

impl TxInner {
    /// The request handlers must outlive the events IndexedDB still fires (an abort fires `error`
    /// at every pending request before the transaction's `abort`): without `commit()` awaiting
    /// the end, they are kept by a task until the transaction has finished, then dropped.
    fn park_handlers(&self) {
        let Some(done) = self.done.borrow_mut().take() else {
            return; // commit() awaits the end and drops them itself
        };
        let handlers = std::mem::take(&mut *self.handlers.borrow_mut());
        wasm_bindgen_futures::spawn_local(async move {
            let _ = wasm_bindgen_futures::JsFuture::from(done).await;
            drop(handlers);
        });
    }
}

/// The JS `Error` a failed write rejects with: `name` is the DOMException's name, the message
/// says which operation failed and why, `cause` is the DOMException itself.
pub(crate) fn request_error_value(req: &web_sys::IdbRequest, op: &str) -> JsValue {
    let (name, message, cause) = match req.error() {
        Ok(Some(e)) => (e.name(), e.message(), JsValue::from(e)),
        _ => (
            "UnknownError".to_owned(),
            "request failed".to_owned(),
            JsValue::UNDEFINED,
        ),
    };
    let err = js_sys::Error::new(&format!("{op} failed: {name}: {message}"));
    err.set_name(&name);
    let _ = Reflect::set(&err, &"cause".into(), &cause);
    err.into()
}

/// Most changes one batch row may hold; a longer row is not in the client's format.
pub const MAX_BATCH_CHANGES: u32 = 1_000_000;

/// The numeric keys of the outbox (rows), without the batch index entries (array keys).
fn rows_range(after: u64) -> Result<IdbKeyRange, Error> {
    let range = if after == 0 {
        IdbKeyRange::upper_bound(&f64::INFINITY.into())
    } else {
        IdbKeyRange::bound_with_lower_open_and_upper_open(
            &(after as f64).into(),
            &f64::INFINITY.into(),
            true,
            false,
        )
    };
    range.map_err(|e| Error::idb(&e))
}

/// The batch index entries `[K, n]` (array keys sort after every number).
fn index_range() -> Result<IdbKeyRange, Error> {
    IdbKeyRange::lower_bound(&js_sys::Array::new().into()).map_err(|e| Error::idb(&e))
}

fn index_key(first: u64, n: u32) -> JsValue {
    js_sys::Array::of2(&(first as f64).into(), &n.into()).into()
}

fn key_seq(key: &JsValue) -> Result<u64, Error> {
    key.as_f64()
        .filter(|n| *n >= 1.0 && n.fract() == 0.0 && *n < 9_007_199_254_740_992.0)
        .map(|n| n as u64)
        .ok_or_else(|| Error::Idb(format!("outbox key {key:?} is not a sequence number")))
}

/// The changes of a batch row (`{b: [...]}`), `None` for a single row.
fn batch_of(key: u64, row: &JsValue) -> Result<Option<js_sys::Array>, Error> {
    let b = Reflect::get(row, &"b".into()).unwrap_or(JsValue::UNDEFINED);
    if b.is_undefined() {
        return Ok(None);
    }
    let bad = || Error::Idb(format!("outbox row {key} is not in the client's format"));
    let b: js_sys::Array = b.dyn_into().map_err(|_| bad())?;
    let n = b.length();
    if n == 0 || n > MAX_BATCH_CHANGES || key.checked_add(u64::from(n)).is_none() {
        return Err(bad());
    }
    Ok(Some(b))
}

/// Number of changes (seqs) a stored row stands for.
fn row_len(key: u64, row: &JsValue) -> Result<u32, Error> {
    Ok(batch_of(key, row)?.map_or(1, |b| b.length()))
}

/// The changes of the stored row at `key` with `seq > after`, at most `limit` of them.
fn expand(
    key: u64,
    row: &JsValue,
    after: u64,
    limit: usize,
    out: &mut Vec<OutboxRow>,
) -> Result<(), Error> {
    match batch_of(key, row)? {
        None => {
            if key > after && out.len() < limit {
                out.push(parse_row(&(key as f64).into(), row)?);
            }
        }
        Some(b) => {
            let skip = after.saturating_sub(key - 1).min(u64::from(b.length())) as u32;
            for i in skip..b.length() {
                if out.len() >= limit {
                    break;
                }
                let seq = key + u64::from(i);
                let change = b.get(i);
                if change.is_object() && !Reflect::has(&change, &"b".into()).unwrap_or(false) {
                    out.push(parse_row(&(seq as f64).into(), &change)?);
                } else {
                    return Err(Error::Idb(format!(
                        "outbox row {key} is not in the client's format"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The row with the greatest key in `range` (key, value), read by a backwards cursor.
async fn last_row_in(
    os: &IdbObjectStore,
    range: &IdbKeyRange,
) -> Result<Option<(u64, JsValue)>, Error> {
    let req = os
        .open_cursor_with_range_and_direction(range, web_sys::IdbCursorDirection::Prev)
        .map_err(|e| Error::idb(&e))?;
    let cursor = idb::request(&req).await?;
    if cursor.is_null() || cursor.is_undefined() {
        return Ok(None);
    }
    let key = Reflect::get(&cursor, &"primaryKey".into()).map_err(|e| Error::js(&e))?;
    let value = Reflect::get(&cursor, &"value".into()).map_err(|e| Error::js(&e))?;
    Ok(Some((key_seq(&key)?, value)))
}

/// Reads up to `limit` changes from the head of the outbox (oldest first).
pub async fn peek(db: &IdbDatabase, limit: u32) -> Result<Vec<OutboxRow>, Error> {
    peek_after(db, 0, limit).await
}

/// Reads up to `limit` changes with `seq > after`, oldest first (`after` 0: from the head). The
/// pipelined uploader reads past the changes it already has in flight this way; `after` may lie
/// inside a batch row, whose remaining changes come first then.
pub async fn peek_after(db: &IdbDatabase, after: u64, limit: u32) -> Result<Vec<OutboxRow>, Error> {
    let tx = db
        .transaction_with_str(OUTBOX_STORE)
        .map_err(|e| Error::idb(&e))?;
    let os = tx.object_store(OUTBOX_STORE).map_err(|e| Error::idb(&e))?;
    let limit = limit as usize;
    let mut out = Vec::with_capacity(limit.min(4096));
    if limit == 0 {
        return Ok(out);
    }
    // seq starts at 1 (key generator): with `after == 0` no row lies at or before it.
    if after > 0 {
        let upto = IdbKeyRange::upper_bound(&(after as f64).into()).map_err(|e| Error::idb(&e))?;
        if let Some((key, row)) = last_row_in(&os, &upto).await? {
            expand(key, &row, after, limit, &mut out)?;
        }
    }
    // Rows after `after`, a few at a time: a row holds one change or a whole batch, so ask for
    // about as many rows as changes are still wanted, judged by the longest row seen so far.
    let mut from = after;
    let mut longest: usize = 0;
    while out.len() < limit {
        let want = limit - out.len();
        let chunk = match want.checked_div(longest) {
            None => want.min(4), // nothing seen yet
            Some(rows) => rows.clamp(1, want),
        } as u32;
        let range = rows_range(from)?;
        let keys_req = os
            .get_all_keys_with_key_and_limit(&range, chunk)
            .map_err(|e| Error::idb(&e))?;
        let rows_req = os
            .get_all_with_key_and_limit(&range, chunk)
            .map_err(|e| Error::idb(&e))?;
        let keys: js_sys::Array = idb::request(&keys_req).await?.unchecked_into();
        let rows: js_sys::Array = idb::request(&rows_req).await?.unchecked_into();
        if keys.length() != rows.length() {
            return Err(Error::Idb("outbox keys and rows disagree".into()));
        }
        for (k, r) in keys.iter().zip(rows.iter()) {
            if out.len() >= limit {
                break; // rows read past the limit are not looked at
            }
            let key = key_seq(&k)?;
            longest = longest.max(row_len(key, &r)? as usize);
            expand(key, &r, after, limit, &mut out)?;
            from = key;
        }
        if keys.length() < chunk {
            break; // the end of the outbox
        }
    }
    Ok(out)
}

/// Number of changes waiting in the outbox (a batch row counts its changes).
pub async fn depth(db: &IdbDatabase) -> Result<u32, Error> {
    let tx = db
        .transaction_with_str(OUTBOX_STORE)
        .map_err(|e| Error::idb(&e))?;
    let os = tx.object_store(OUTBOX_STORE).map_err(|e| Error::idb(&e))?;
    let rows_req = os
        .count_with_key(&rows_range(0)?.into())
        .map_err(|e| Error::idb(&e))?;
    let index_req = os
        .get_all_keys_with_key(&index_range()?.into())
        .map_err(|e| Error::idb(&e))?;
    let rows = idb::request(&rows_req).await?.as_f64().unwrap_or(0.0) as u64;
    let index: js_sys::Array = idb::request(&index_req).await?.unchecked_into();
    let mut n = rows;
    for entry in index.iter() {
        let len = js_sys::Array::from(&entry)
            .get(1)
            .as_f64()
            .filter(|n| *n >= 1.0 && n.fract() == 0.0 && *n <= f64::from(MAX_BATCH_CHANGES))
            .ok_or_else(|| {
                Error::Idb(format!(
                    "outbox index entry {entry:?} is not in the client's format"
                ))
            })?;
        n += len as u64 - 1;
    }
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Whether any change with `seq <= upto` is still in the outbox (a batch row's key is its first
/// seq, so counting rows by key is exact).
pub async fn has_rows_upto(db: &IdbDatabase, upto: u64) -> Result<bool, Error> {
    let tx = db
        .transaction_with_str(OUTBOX_STORE)
        .map_err(|e| Error::idb(&e))?;
    let os = tx.object_store(OUTBOX_STORE).map_err(|e| Error::idb(&e))?;
    let range = IdbKeyRange::upper_bound(&(upto as f64).into()).map_err(|e| Error::idb(&e))?;
    let n = idb::request(&os.count_with_key(&range).map_err(|e| Error::idb(&e))?).await?;
    Ok(n.as_f64().unwrap_or(0.0) > 0.0)
}

/// The `seq`s in `from..=to` that are in [`REJECTED_STORE`] (set aside).
pub async fn set_aside_between(db: &IdbDatabase, from: u64, to: u64) -> Result<Vec<u64>, Error> {
    let tx = db
        .transaction_with_str(REJECTED_STORE)
        .map_err(|e| Error::idb(&e))?;
    let os = tx
        .object_store(REJECTED_STORE)
        .map_err(|e| Error::idb(&e))?;
    let range = IdbKeyRange::bound(&(from as f64).into(), &(to as f64).into())
        .map_err(|e| Error::idb(&e))?;
    let req = os
        .get_all_keys_with_key(&range)
        .map_err(|e| Error::idb(&e))?;
    let keys: js_sys::Array = idb::request(&req).await?.unchecked_into();
    Ok(keys
        .iter()
        .filter_map(|k| k.as_f64())
        .map(|k| k as u64)
        .collect())
}

/// Highest `seq` currently in the outbox (the last change of the last row), if any.
pub async fn last_seq(db: &IdbDatabase) -> Result<Option<u64>, Error> {
    let tx = db
        .transaction_with_str(OUTBOX_STORE)
        .map_err(|e| Error::idb(&e))?;
    let os = tx.object_store(OUTBOX_STORE).map_err(|e| Error::idb(&e))?;
    match last_row_in(&os, &rows_range(0)?).await? {
        None => Ok(None),
        Some((key, row)) => Ok(Some(key + u64::from(row_len(key, &row)?) - 1)),
    }
}

/// Deletes delivered changes. Called only after the bridge's *committed* ack.
pub async fn remove(db: &IdbDatabase, seqs: &[u64]) -> Result<(), Error> {
    let tx = db
        .transaction_with_str_and_mode(OUTBOX_STORE, IdbTransactionMode::Readwrite)
        .map_err(|e| Error::idb(&e))?;
    let done = idb::completion(&tx);
    let os = tx.object_store(OUTBOX_STORE).map_err(|e| Error::idb(&e))?;
    let outcome = remove_in(&os, seqs).await;
    if outcome.is_err() {
        let _ = tx.abort();
    }
    let finished = idb::finished(&tx, done).await;
    outcome.and(finished)
}

/// Removes the changes `seqs` from the outbox, inside the caller's read-write transaction:
/// contiguous runs of seqs are deleted as key ranges (one request per run). A batch row only
/// partly among them is split: it is deleted and its other changes are written back as single
/// rows at their own seqs (those keys were reserved for them, so they are free).
async fn remove_in(os: &IdbObjectStore, seqs: &[u64]) -> Result<(), Error> {
    let mut seqs = seqs.to_vec();
    seqs.sort_unstable();
    seqs.dedup();
    let mut i = 0;
    while i < seqs.len() {
        let mut j = i;
        while j + 1 < seqs.len() && seqs[j + 1] == seqs[j] + 1 {
            j += 1;
        }
        let (a, b) = (seqs[i], seqs[j]);
        i = j + 1;
        // A batch row that starts before the run and reaches into it.
        let before = IdbKeyRange::upper_bound_with_open(&(a as f64).into(), true)
            .map_err(|e| Error::idb(&e))?;
        if let Some((key, row)) = last_row_in(os, &before).await? {
            split(os, key, &row, a, b)?;
        }
        // The last row that starts inside the run may reach past it; rows before it end in it.
        let inside = IdbKeyRange::bound(&(a as f64).into(), &(b as f64).into())
            .map_err(|e| Error::idb(&e))?;
        if let Some((key, row)) = last_row_in(os, &inside).await? {
            split(os, key, &row, a, b)?;
        }
        os.delete(&inside).map_err(|e| Error::idb(&e))?;
        let index = IdbKeyRange::bound(
            &js_sys::Array::of1(&(a as f64).into()).into(),
            &js_sys::Array::of2(&(b as f64).into(), &f64::INFINITY.into()).into(),
        )
        .map_err(|e| Error::idb(&e))?;
        os.delete(&index).map_err(|e| Error::idb(&e))?;
    }
    Ok(())
}

/// If the batch row at `key` has changes outside `a..=b` as well as inside, replaces it by single
/// rows for the changes outside: the row at `key` is overwritten when its first change stays (the
/// caller deletes it otherwise), the other keys are free.
fn split(os: &IdbObjectStore, key: u64, row: &JsValue, a: u64, b: u64) -> Result<(), Error> {
    let Some(batch) = batch_of(key, row)? else {
        return Ok(());
    };
    let n = batch.length();
    let end = key + u64::from(n) - 1;
    if end < a || key > b {
        return Ok(()); // no change of it is in the run
    }
    let mut changes = Vec::with_capacity(n as usize);
    expand(key, row, 0, n as usize, &mut changes)?;
    os.delete(&index_key(key, n)).map_err(|e| Error::idb(&e))?;
    for c in changes.iter().filter(|c| c.seq < a || c.seq > b) {
        let obj = row_object(&c.store, &c.key, c.op, c.timestamp, &c.value);
        os.put_with_key(&obj, &(c.seq as f64).into())
            .map_err(|e| Error::idb(&e))?;
    }
    Ok(())
}

/// Moves changes the bridge rejected for good into [`REJECTED_STORE`] (same seq as key), in one
/// transaction, so they stop blocking the queue and are still there for the app to inspect.
pub async fn set_aside(db: &IdbDatabase, rows: &[OutboxRow], reason: &str) -> Result<(), Error> {
    let tx = db
        .transaction_with_str_sequence_and_mode(
            &idb::names(&[OUTBOX_STORE, REJECTED_STORE]),
            IdbTransactionMode::Readwrite,
        )
        .map_err(|e| Error::idb(&e))?;
    let done = idb::completion(&tx);
    let outbox = tx.object_store(OUTBOX_STORE).map_err(|e| Error::idb(&e))?;
    let rejected = tx
        .object_store(REJECTED_STORE)
        .map_err(|e| Error::idb(&e))?;
    for row in rows {
        let obj = row_object(&row.store, &row.key, row.op, row.timestamp, &row.value);
        let _ = Reflect::set(&obj, &"reason".into(), &reason.into());
        rejected
            .put_with_key(&obj, &(row.seq as f64).into())
            .map_err(|e| Error::idb(&e))?;
    }
    let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
    let outcome = remove_in(&outbox, &seqs).await;
    if outcome.is_err() {
        let _ = tx.abort();
    }
    let finished = idb::finished(&tx, done).await;
    outcome.and(finished)
}
