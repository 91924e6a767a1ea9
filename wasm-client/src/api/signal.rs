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

    /// Waits for `notify` or `timeout_ms`; returns whether it was notified. However it ends
    /// (notified, timed out, or the future dropped), its timer is cleared and its waiter removed.
    pub async fn wait(&self, timeout_ms: f64) -> bool {
        if self.pending.replace(false) {
            return true;
        }
        let mut registered = None;
        let promise = Promise::new(&mut |resolve, _reject| {
            let timer = sys::set_timeout(&resolve, timeout_ms.max(0.0));
            self.waiters.borrow_mut().push(resolve.clone());
            registered = Some((timer, resolve));
        });
        let guard = registered.map(|(timer, waiter)| WaitGuard {
            signal: self,
            timer,
            waiter,
        });
        let woken = JsFuture::from(promise).await.is_ok_and(|v| v.is_truthy());
        drop(guard);
        self.pending.set(false);
        woken
    }

    /// Waiters currently registered (for tests).
    pub fn waiting(&self) -> usize {
        self.waiters.borrow().len()
    }
}

/// Clears a wait's timer and removes its waiter when the wait ends or is dropped.
struct WaitGuard<'a> {
    signal: &'a Signal,
    timer: JsValue,
    waiter: Function,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        sys::clear_timeout(&self.timer);
        let waiter: &JsValue = self.waiter.as_ref();
        self.signal
            .waiters
            .borrow_mut()
            .retain(|w| !js_sys::Object::is(w.as_ref(), waiter));
    }
}

/// Sleeps `ms` milliseconds, not interruptible.
pub async fn sleep(ms: f64) {
    let _ = JsFuture::from(sys::sleep_promise(ms)).await;
}
