//! Ownership and error shapes: what the client leaves behind when it is closed or dropped,
//! `Signal::wait`'s timer and waiter, and the errors a failed write rejects with.

use std::future::Future;

use js_sys::{Promise, Reflect};
use s2s_wasm::api::signal::Signal;
use wasm_bindgen::{JsCast, JsValue, prelude::Closure};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use super::{open, unique};

#[wasm_bindgen_test]
async fn signal_wait_leaves_no_waiter_behind() {
    let s = Signal::default();
    // Timed out: its waiter is gone (a later notify is remembered for the next wait instead).
    assert!(!s.wait(20.0).await);
    assert_eq!(s.waiting(), 0);
    s.notify();
    assert!(
        s.wait(10_000.0).await,
        "a notify without waiter is remembered"
    );
    assert_eq!(s.waiting(), 0);
    // Dropped before it ends: the waiter is removed with it.
    {
        let fut = s.wait(10_000.0);
        let mut fut = Box::pin(fut);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(s.waiting(), 1);
    }
    assert_eq!(s.waiting(), 0, "a dropped wait leaves no waiter");
}

/// Opens `name` at a higher version from plain JS; resolves to whether `blocked` fired (an open
/// connection of the client that was not closed would block it).
async fn upgrade_blocked(name: &str) -> bool {
    let factory: web_sys::IdbFactory = Reflect::get(&js_sys::global(), &"indexedDB".into())
        .unwrap()
        .unchecked_into();
    let probe = factory.open(name).unwrap();
    JsFuture::from(Promise::new(&mut |resolve, _| {
        probe.set_onsuccess(Some(&resolve))
    }))
    .await
    .unwrap();
    let db: web_sys::IdbDatabase = probe.result().unwrap().unchecked_into();
    let version = db.version() as u32;
    db.close();
    let req = factory.open_with_u32(name, version + 1).unwrap();
    let blocked = std::rc::Rc::new(std::cell::Cell::new(false));
    let b = blocked.clone();
    let on_blocked = Closure::<dyn FnMut()>::new(move || b.set(true));
    req.set_onblocked(Some(on_blocked.as_ref().unchecked_ref()));
    JsFuture::from(Promise::new(&mut |resolve, _| {
        req.set_onsuccess(Some(&resolve))
    }))
    .await
    .unwrap();
    let db: web_sys::IdbDatabase = req.result().unwrap().unchecked_into();
    db.close();
    blocked.get()
}

#[wasm_bindgen_test]
async fn a_dropped_client_releases_its_connection() {
    let name = unique("drop");
    let client = open(&name).await;
    assert!(!client.is_closed());
    drop(client);
    assert!(
        !upgrade_blocked(&name).await,
        "the dropped client's connection blocked an upgrade"
    );
    let name = unique("close");
    let client = open(&name).await;
    client.close();
    assert!(client.is_closed());
    assert!(!upgrade_blocked(&name).await);
}

#[wasm_bindgen_test]
async fn a_failed_write_rejects_with_a_named_error() {
    let name = unique("err");
    let client = open(&name).await;
    let tx = client.begin(&["blobs"]).unwrap();
    let _ = tx
        .put("blobs", &JsValue::from_str("v"), Some(&"k".into()))
        .unwrap();
    let bad = tx
        .add("blobs", &JsValue::from_str("w"), Some(&"k".into()))
        .unwrap();
    let err = JsFuture::from(bad)
        .await
        .expect_err("add of an existing key");
    let err: js_sys::Error = err.dyn_into().expect("rejects with an Error, not an Event");
    assert_eq!(String::from(err.name()), "ConstraintError");
    let message = String::from(err.message());
    assert!(
        message.starts_with("add failed: ConstraintError"),
        "{message}"
    );
    let cause = Reflect::get(&err, &"cause".into()).unwrap();
    assert!(
        cause.is_instance_of::<web_sys::DomException>(),
        "cause is the DOMException"
    );
    assert!(matches!(
        tx.commit().await,
        Err(s2s_wasm::Error::Aborted(_))
    ));
    client.close();
}
