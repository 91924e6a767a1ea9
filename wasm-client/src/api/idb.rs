//! Small adapters from IndexedDB's event style to futures.
//!
//! The `resolve`/`reject` functions of a JS promise are installed directly as the request's
//! `onsuccess`/`onerror`, so no Rust closure has to outlive the call. Continuations run as
//! microtasks right after the event, while the transaction is still active.

use js_sys::{Array, Promise};
use wasm_bindgen::{JsCast, JsValue, prelude::Closure};
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbFactory, IdbOpenDbRequest, IdbRequest, IdbTransaction};

use crate::api::error::Error;

/// Awaits a request and returns its `result`.
pub(crate) async fn request(req: &IdbRequest) -> Result<JsValue, Error> {
    let promise = Promise::new(&mut |resolve, reject| {
        req.set_onsuccess(Some(&resolve));
        req.set_onerror(Some(&reject));
    });
    let outcome = JsFuture::from(promise).await;
    req.set_onsuccess(None);
    req.set_onerror(None);
    match outcome {
        Ok(_) => req.result().map_err(|e| Error::idb(&e)),
        Err(_) => Err(request_error(req)),
    }
}

fn request_error(req: &IdbRequest) -> Error {
    match req.error() {
        Ok(Some(e)) => Error::Idb(format!("{}: {}", e.name(), e.message())),
        Ok(None) => Error::Idb("request failed".into()),
        Err(e) => Error::idb(&e),
    }
}

/// A promise that settles when `tx` finishes: it *resolves* with the `complete` or `abort` event
/// (never rejects, so a transaction that aborts before anyone awaits it leaves no unhandled
/// rejection on the page). Create it right after the transaction, before any request can fail.
pub(crate) fn completion(tx: &IdbTransaction) -> Promise {
    Promise::new(&mut |resolve, _reject| {
        tx.set_oncomplete(Some(&resolve));
        tx.set_onabort(Some(&resolve));
    })
}

/// Awaits a completion promise from [`completion`]: `Ok` when the transaction committed.
pub(crate) async fn finished(tx: &IdbTransaction, done: Promise) -> Result<(), Error> {
    let event = JsFuture::from(done).await.unwrap_or(JsValue::UNDEFINED);
    let kind = js_sys::Reflect::get(&event, &"type".into())
        .ok()
        .and_then(|t| t.as_string());
    if kind.as_deref() == Some("complete") {
        return Ok(());
    }
    Err(Error::Aborted(match tx.error() {
        Some(e) => format!("{}: {}", e.name(), e.message()),
        None => "aborted by the application".into(),
    }))
}

/// The `indexedDB` factory of this window or worker.
///
/// When `instrument()` patched IndexedDB's prototypes, the shim leaves the unpatched factory
/// methods in `globalThis.__s2sRawIndexedDB`: the client's own connections use those, so they see
/// the real versions and stores and their writes are never captured twice.
pub(crate) fn factory() -> Result<IdbFactory, Error> {
    let global = js_sys::global();
    if let Ok(raw) = js_sys::Reflect::get(&global, &"__s2sRawIndexedDB".into())
        && raw.is_object()
    {
        return Ok(raw.unchecked_into());
    }
    let value = js_sys::Reflect::get(&global, &"indexedDB".into()).map_err(|e| Error::js(&e))?;
    if value.is_undefined() || value.is_null() {
        return Err(Error::Js(
            "IndexedDB is not available in this context".into(),
        ));
    }
    Ok(value.unchecked_into())
}

/// Opens `name` at `version` (or the current version when `None`), running `upgrade` inside the
/// `versionchange` transaction when the version goes up.
pub(crate) async fn open(
    name: &str,
    version: Option<u32>,
    upgrade: impl FnMut(&IdbDatabase, &IdbTransaction, f64) -> Result<(), Error> + 'static,
) -> Result<IdbDatabase, Error> {
    let factory = factory()?;
    let req: IdbOpenDbRequest = match version {
        Some(v) => factory.open_with_u32(name, v),
        None => factory.open(name),
    }
    .map_err(|e| Error::idb(&e))?;
    let mut upgrade = upgrade;
    let failure = std::rc::Rc::new(std::cell::RefCell::new(None::<Error>));
    let failure_in = failure.clone();
    let req_in = req.clone();
    // Owned here and dropped when `open` returns: the event cannot fire after success/error.
    let on_upgrade = Closure::<dyn FnMut(web_sys::IdbVersionChangeEvent)>::new(
        move |event: web_sys::IdbVersionChangeEvent| {
            let db: IdbDatabase = match req_in.result() {
                Ok(db) => db.unchecked_into(),
                Err(e) => {
                    *failure_in.borrow_mut() = Some(Error::idb(&e));
                    return;
                }
            };
            let Some(tx) = req_in.transaction() else {
                *failure_in.borrow_mut() = Some(Error::Idb("upgrade without a transaction".into()));
                return;
            };
            if let Err(e) = upgrade(&db, &tx, event.old_version()) {
                *failure_in.borrow_mut() = Some(e);
                let _ = tx.abort();
            }
        },
    );
    req.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
    let result = request(&req).await;
    req.set_onupgradeneeded(None);
    drop(on_upgrade);
    if let Some(e) = failure.borrow_mut().take() {
        if let Ok(db) = &result {
            db.clone().unchecked_into::<IdbDatabase>().close();
        }
        return Err(e);
    }
    let db: IdbDatabase = result?.unchecked_into();
    // Until its owner installs its own handler (the client does after reading its id), the new
    // connection must not block another one's upgrade: it closes on `versionchange`.
    let db_in = db.clone();
    let close: JsValue = Closure::<dyn FnMut(JsValue)>::once_into_js(move |_event: JsValue| {
        db_in.close();
        let _ = js_sys::Reflect::set(&db_in, &CLOSED_MARK.into(), &JsValue::TRUE);
    });
    db.set_onversionchange(Some(close.unchecked_ref::<js_sys::Function>()));
    Ok(db)
}

const CLOSED_MARK: &str = "__s2sClosedByVersionChange";

/// Whether a connection from [`open`] was closed because another one upgraded the database
/// (before its owner installed its own handler).
pub(crate) fn closed_by_versionchange(db: &IdbDatabase) -> bool {
    js_sys::Reflect::get(db, &CLOSED_MARK.into()).is_ok_and(|v| v.is_truthy())
}

/// A JS array of store names, for `IDBDatabase.transaction`.
pub(crate) fn names(stores: &[&str]) -> Array {
    stores.iter().map(|s| JsValue::from_str(s)).collect()
}
