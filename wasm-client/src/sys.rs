//! Imports of browser APIs that web-sys only offers behind `--cfg=web_sys_unstable_apis` (Web Locks)
//! or only on `Window` (timers): declared here so the client also runs in workers and needs no
//! unstable cfg.

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks` (Web Locks API).
    #[derive(Debug, Clone)]
    pub(crate) type LockManager;

    /// `locks.request(name, options, callback)`: the lock is held until the promise the callback
    /// returns settles.
    #[wasm_bindgen(method, js_name = request)]
    pub(crate) fn request_with_options(
        this: &LockManager,
        name: &str,
        options: &JsValue,
        callback: &Function,
    ) -> Promise;

    /// The global `setTimeout` (window or worker).
    #[wasm_bindgen(js_name = setTimeout)]
    pub(crate) fn set_timeout(callback: &Function, ms: f64) -> JsValue;

    /// The global `clearTimeout`.
    #[wasm_bindgen(js_name = clearTimeout)]
    pub(crate) fn clear_timeout(id: &JsValue);
}

/// `navigator.locks`, if this context has it (secure contexts only).
pub(crate) fn lock_manager() -> Option<LockManager> {
    let navigator = js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let locks = js_sys::Reflect::get(&navigator, &"locks".into()).ok()?;
    if locks.is_undefined() || locks.is_null() {
        None
    } else {
        Some(locks.unchecked_into())
    }
}

/// A promise that resolves after `ms` milliseconds.
pub(crate) fn sleep_promise(ms: f64) -> Promise {
    Promise::new(&mut |resolve, _reject| {
        set_timeout(&resolve, ms);
    })
}
