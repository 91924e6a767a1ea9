//! A wake-up signal for the browser's single thread: `notify` resolves whoever waits, or is
//! remembered for the next `wait` when nobody does. `wait` gives up after a timeout.

use std::cell::{Cell, RefCell};

use js_sys::{Function, Promise};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

use crate::sys;

/// See the module docs.
#[derive(Debug, Default)]
pub struct Signal {
    waiters: RefCell<Vec<Function>>,
    pending: Cell<bool>,
}

impl Signal {
    /// Wakes every waiter, or the next one to wait.
    pub fn notify(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        if waiters.is_empty() {
            self.pending.set(true);
        }
        for w in waiters {
            let _ = w.call1(&JsValue::NULL, &JsValue::TRUE);
        }
    }

    /// Waits for `notify` or `timeout_ms`; returns whether it was notified.
    pub async fn wait(&self, timeout_ms: f64) -> bool {
        if self.pending.replace(false) {
            return true;
        }
        let promise = Promise::new(&mut |resolve, _reject| {
            sys::set_timeout(&resolve, timeout_ms.max(0.0));
            self.waiters.borrow_mut().push(resolve);
        });
        let woken = JsFuture::from(promise).await.is_ok_and(|v| v.is_truthy());
        self.pending.set(false);
        woken
    }
}

/// Sleeps `ms` milliseconds, not interruptible.
pub async fn sleep(ms: f64) {
    let _ = JsFuture::from(sys::sleep_promise(ms)).await;
}
