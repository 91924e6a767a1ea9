//! `snapshot(store)`: exports the records that already exist (initial load) through the outbox,
//! in chunks. Each chunk reads the next records after the checkpoint, appends their outbox rows and
//! moves the checkpoint, all in one transaction: a reload in the middle resumes exactly after the
//! last chunk that committed, never exporting a record twice or skipping one.

use std::rc::Rc;

use js_sys::{Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{IdbDatabase, IdbKeyRange, IdbTransactionMode};

use crate::api::error::Error;
use crate::api::idb;
use crate::api::outbox::{Op, row_object};
use crate::api::schema::{META_STORE, OUTBOX_STORE, Schema};

/// Result of one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Records exported by this chunk.
    pub exported: u32,
    /// Whether the store has been exported completely.
    pub done: bool,
    /// Records exported so far by this snapshot, this chunk included.
    pub total: u32,
}

fn checkpoint_key(store: &str) -> JsValue {
    JsValue::from_str(&format!("snapshot:{store}"))
}

/// Exports the next `chunk` records of `store` after its checkpoint. With `restart`, the
/// checkpoint is reset first (a new full export).
pub async fn next_chunk(
    db: &IdbDatabase,
    schema: &Rc<Schema>,
    store: &str,
    chunk: u32,
    restart: bool,
) -> Result<Chunk, Error> {
    if schema.store(store).is_none() {
        return Err(Error::Invalid(format!(
            "store {store:?} is not in the schema"
        )));
    }
    let tx = db
        .transaction_with_str_sequence_and_mode(
            &idb::names(&[store, OUTBOX_STORE, META_STORE]),
            IdbTransactionMode::Readwrite,
        )
        .map_err(|e| Error::idb(&e))?;
    let done_promise = idb::completion(&tx);
    let data = tx.object_store(store).map_err(|e| Error::idb(&e))?;
    let outbox = tx.object_store(OUTBOX_STORE).map_err(|e| Error::idb(&e))?;
    let meta = tx.object_store(META_STORE).map_err(|e| Error::idb(&e))?;

    let cp = if restart {
        JsValue::UNDEFINED
    } else {
        idb::request(
            &meta
                .get(&checkpoint_key(store))
                .map_err(|e| Error::idb(&e))?,
        )
        .await?
    };
    let field = |k: &str| {
        if cp.is_object() {
            Reflect::get(&cp, &k.into()).unwrap_or(JsValue::UNDEFINED)
        } else {
            JsValue::UNDEFINED
        }
    };
    let prev_total = field("total").as_f64().unwrap_or(0.0) as u32;
    if field("done").as_bool() == Some(true) {
        idb::finished(&tx, done_promise).await?;
        return Ok(Chunk {
            exported: 0,
            done: true,
            total: prev_total,
        });
    }
    let last = field("last");
    let range: JsValue = if last.is_undefined() {
        JsValue::UNDEFINED
    } else {
        IdbKeyRange::lower_bound_with_open(&last, true)
            .map_err(|e| Error::idb(&e))?
            .into()
    };
    let keys_req = data
        .get_all_keys_with_key_and_limit(&range, chunk)
        .map_err(|e| Error::idb(&e))?;
    let vals_req = data
        .get_all_with_key_and_limit(&range, chunk)
        .map_err(|e| Error::idb(&e))?;
    let keys: js_sys::Array = idb::request(&keys_req).await?.unchecked_into();
    let vals: js_sys::Array = idb::request(&vals_req).await?.unchecked_into();
    let ts = js_sys::Date::now();
    for (k, v) in keys.iter().zip(vals.iter()) {
        outbox
            .add(&row_object(store, &k, Op::Snapshot, ts, &v))
            .map_err(|e| Error::idb(&e))?;
    }
    let exported = keys.length();
    let done = exported < chunk;
    let next = Object::new();
    let new_last = if exported > 0 {
        keys.get(exported - 1)
    } else {
        last
    };
    let _ = Reflect::set(&next, &"last".into(), &new_last);
    let _ = Reflect::set(&next, &"done".into(), &done.into());
    let _ = Reflect::set(&next, &"total".into(), &(prev_total + exported).into());
    meta.put_with_key(&next, &checkpoint_key(store))
        .map_err(|e| Error::idb(&e))?;
    idb::finished(&tx, done_promise).await?;
    Ok(Chunk {
        exported,
        done,
        total: prev_total + exported,
    })
}
