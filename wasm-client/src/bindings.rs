//! The only `#[wasm_bindgen]` exports: thin wrappers that convert JS values to the Rust API's
//! types and its `Error` into JS errors (`err.name` is the error kind). The hand-written facade in
//! `js/index.js` builds the documented JS API on top of these.

use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;

use crate::api::client::{Client, Config};
use crate::api::error::Error;
use crate::api::outbox::{OutboxRow, WriteTx};
use crate::api::schema::{IndexSpec, Schema, StoreSpec};

fn to_js(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    err.set_name(e.kind());
    err.into()
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    if obj.is_object() {
        Reflect::get(obj, &key.into()).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    }
}

fn opt_string(obj: &JsValue, key: &str) -> Option<String> {
    get(obj, key).as_string()
}

fn parse_schema(value: &JsValue) -> Result<Schema, Error> {
    let version = get(value, "version").as_f64().unwrap_or(1.0);
    if !(1.0..=f64::from(u32::MAX)).contains(&version) || version.fract() != 0.0 {
        return Err(Error::Invalid(format!(
            "schema.version {version} is not a positive integer"
        )));
    }
    let stores_obj = get(value, "stores");
    if !stores_obj.is_object() {
        return Err(Error::Invalid(
            "schema.stores must be an object { storeName: options }".into(),
        ));
    }
    let mut stores = Vec::new();
    for entry in Object::entries(stores_obj.unchecked_ref()).iter() {
        let entry: Array = entry.unchecked_into();
        let name = entry.get(0).as_string().unwrap_or_default();
        let opts = entry.get(1);
        let mut indexes = Vec::new();
        let ix = get(&opts, "indexes");
        if ix.is_object() {
            for e in Object::entries(ix.unchecked_ref()).iter() {
                let e: Array = e.unchecked_into();
                let spec = e.get(1);
                let key_path = spec
                    .as_string()
                    .or_else(|| opt_string(&spec, "keyPath"))
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "index {:?} of {name:?} needs a keyPath",
                            e.get(0).as_string()
                        ))
                    })?;
                indexes.push(IndexSpec {
                    name: e.get(0).as_string().unwrap_or_default(),
                    key_path,
                    unique: get(&spec, "unique").is_truthy(),
                    multi_entry: get(&spec, "multiEntry").is_truthy(),
                });
            }
        }
        stores.push(StoreSpec {
            name,
            key_path: opt_string(&opts, "keyPath"),
            auto_increment: get(&opts, "autoIncrement").is_truthy(),
            indexes,
            watched: get(&opts, "watch").as_bool().unwrap_or(true),
        });
    }
    Ok(Schema {
        version: version as u32,
        stores,
    })
}

fn parse_config(value: &JsValue) -> Result<Config, Error> {
    let mut c = Config {
        bridge_url: opt_string(value, "bridgeUrl"),
        token: opt_string(value, "token"),
        ..Config::default()
    };
    let attrs = get(value, "attributes");
    if attrs.is_object() {
        for e in Object::entries(attrs.unchecked_ref()).iter() {
            let e: Array = e.unchecked_into();
            let (k, v) = (e.get(0).as_string().unwrap_or_default(), e.get(1));
            let v = v
                .as_string()
                .ok_or_else(|| Error::Invalid(format!("attribute {k:?} must be a string")))?;
            c.static_attributes.push((k, v));
        }
    }
    let num = |k: &str| get(value, k).as_f64().filter(|n| *n > 0.0);
    if let Some(n) = num("batchSize") {
        c.batch_records = n as u32;
    }
    if let Some(n) = num("maxInFlight") {
        c.max_in_flight = n as u32;
    }
    if let Some(n) = num("ackTimeoutMs") {
        c.ack_timeout_ms = n;
    }
    if let Some(n) = num("backoffBaseMs") {
        c.backoff_base_ms = n;
    }
    if let Some(n) = num("backoffCapMs") {
        c.backoff_cap_ms = n;
    }
    if let Some(n) = num("idlePollMs") {
        c.idle_poll_ms = n;
    }
    Ok(c)
}

fn row_to_js(row: &OutboxRow) -> JsValue {
    let o = Object::new();
    let _ = Reflect::set(&o, &"seq".into(), &(row.seq as f64).into());
    let _ = Reflect::set(&o, &"store".into(), &row.store.as_str().into());
    let _ = Reflect::set(&o, &"key".into(), &row.key);
    let _ = Reflect::set(&o, &"op".into(), &row.op.as_str().into());
    let _ = Reflect::set(&o, &"timestamp".into(), &row.timestamp.into());
    let _ = Reflect::set(&o, &"value".into(), &row.value);
    o.into()
}

/// Low-level client handle; use the `open()` facade from `index.js`.
#[wasm_bindgen(js_name = RawClient)]
#[derive(Debug)]
pub struct JsClient {
    client: Client,
}

#[wasm_bindgen(js_class = RawClient)]
impl JsClient {
    /// Opens `name` with `schema` (`{version, stores}`) and `options`.
    pub async fn open(
        name: String,
        schema: JsValue,
        options: JsValue,
    ) -> Result<JsClient, JsValue> {
        let schema = parse_schema(&schema).map_err(to_js)?;
        let config = parse_config(&options).map_err(to_js)?;
        let client = Client::open(&name, schema, config).await.map_err(to_js)?;
        Ok(Self { client })
    }

    /// Starts a transaction over `stores` plus the outbox.
    pub fn begin(&self, stores: Vec<String>) -> Result<JsWriteTx, JsValue> {
        let names: Vec<&str> = stores.iter().map(String::as_str).collect();
        let tx = self.client.begin(&names).map_err(to_js)?;
        Ok(JsWriteTx {
            tx: Some(tx),
            client: self.client.clone(),
        })
    }

    /// Exports `store`'s existing records; resolves to the number exported.
    pub async fn snapshot(&self, store: String, chunk: u32, restart: bool) -> Result<u32, JsValue> {
        self.client
            .snapshot(&store, chunk, restart)
            .await
            .map_err(to_js)
    }

    /// Resolves when everything queued so far has left the outbox, to the `seq`s of the rows
    /// among them that were set aside instead of delivered.
    pub async fn flush(&self, timeout_ms: f64) -> Result<Array, JsValue> {
        let seqs = self.client.flush(timeout_ms).await.map_err(to_js)?;
        Ok(seqs.iter().map(|s| JsValue::from(*s as f64)).collect())
    }

    /// Rows waiting in the outbox.
    pub async fn depth(&self) -> Result<u32, JsValue> {
        self.client.depth().await.map_err(to_js)
    }

    /// Oldest `limit` outbox rows: `{seq, store, key, op, timestamp, value}`.
    pub async fn pending(&self, limit: u32) -> Result<Array, JsValue> {
        let rows = self.client.pending(limit).await.map_err(to_js)?;
        Ok(rows.iter().map(row_to_js).collect())
    }

    /// The FlowFiles the oldest `limit` rows become: `{attributes, content: Uint8Array}`.
    #[wasm_bindgen(js_name = pendingFlowFiles)]
    pub async fn pending_flowfiles(&self, limit: u32) -> Result<Array, JsValue> {
        let rows = self.client.pending(limit).await.map_err(to_js)?;
        let out = Array::new();
        for row in &rows {
            let ff = self.client.flowfile(row).await.map_err(to_js)?;
            let attrs = Object::new();
            for (k, v) in &ff.attributes {
                let _ = Reflect::set(&attrs, &k.as_str().into(), &v.as_str().into());
            }
            let o = Object::new();
            let _ = Reflect::set(&o, &"attributes".into(), &attrs);
            let _ = Reflect::set(
                &o,
                &"content".into(),
                &js_sys::Uint8Array::from(&ff.content[..]),
            );
            out.push(&o);
        }
        Ok(out)
    }

    /// Sets the status listener.
    #[wasm_bindgen(js_name = onStatus)]
    pub fn on_status(&self, f: Option<Function>) {
        self.client.on_status(f);
    }

    /// `idb.client.id`.
    #[wasm_bindgen(getter, js_name = clientId)]
    pub fn client_id(&self) -> String {
        self.client.client_id().to_owned()
    }

    /// Whether this tab is the uploader.
    #[wasm_bindgen(getter, js_name = isUploader)]
    pub fn is_uploader(&self) -> bool {
        self.client.is_uploader()
    }

    /// The `IDBDatabase`, for reads.
    #[wasm_bindgen(getter)]
    pub fn db(&self) -> web_sys::IdbDatabase {
        self.client.database().clone()
    }

    /// Reports `rows` outbox rows committed by someone else (the `instrument()` shim): wakes the
    /// uploader, here or in the tab that holds it.
    #[wasm_bindgen(js_name = notifyCommitted)]
    pub fn notify_committed(&self, rows: u32) {
        self.client.committed(rows);
    }

    /// Whether the client is closed (by `close()`, or because another tab upgraded the database).
    #[wasm_bindgen(getter)]
    pub fn closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Stops the uploader and closes the database.
    pub fn close(&self) {
        self.client.close();
    }
}

/// Low-level transaction handle; the facade's `transaction(stores, fn)` drives it.
#[wasm_bindgen(js_name = RawTx)]
#[derive(Debug)]
pub struct JsWriteTx {
    tx: Option<WriteTx>,
    client: Client,
}

impl JsWriteTx {
    fn tx(&self) -> Result<&WriteTx, JsValue> {
        self.tx
            .as_ref()
            .ok_or_else(|| to_js(Error::Invalid("the transaction has finished".into())))
    }
}

fn opt_key(key: &JsValue) -> Option<&JsValue> {
    if key.is_undefined() { None } else { Some(key) }
}

#[wasm_bindgen(js_class = RawTx)]
impl JsWriteTx {
    /// `put(store, value, key?)` → Promise of the key.
    pub fn put(&self, store: &str, value: &JsValue, key: &JsValue) -> Result<Promise, JsValue> {
        self.tx()?.put(store, value, opt_key(key)).map_err(to_js)
    }

    /// `add(store, value, key?)` → Promise of the key.
    pub fn add(&self, store: &str, value: &JsValue, key: &JsValue) -> Result<Promise, JsValue> {
        self.tx()?.add(store, value, opt_key(key)).map_err(to_js)
    }

    /// `delete(store, key)` → Promise of the key.
    pub fn delete(&self, store: &str, key: &JsValue) -> Result<Promise, JsValue> {
        self.tx()?.delete(store, key).map_err(to_js)
    }

    /// `clear(store)`.
    pub fn clear(&self, store: &str) -> Result<Promise, JsValue> {
        self.tx()?.clear(store).map_err(to_js)
    }

    /// Aborts: nothing of the transaction is written.
    pub fn abort(&mut self) {
        if let Some(tx) = self.tx.take() {
            tx.abort();
        }
    }

    /// Commits; resolves to the number of outbox rows written, rejects with `AbortError`.
    pub async fn commit(&mut self) -> Result<u32, JsValue> {
        let tx = self
            .tx
            .take()
            .ok_or_else(|| to_js(Error::Invalid("the transaction has finished".into())))?;
        let rows = tx.commit().await.map_err(to_js)?;
        self.client.committed(rows);
        Ok(rows)
    }
}
