//! The rate limit of rejection log lines: the first rejection of a reason is logged in full,
//! further ones of that reason within [`LOG_WINDOW`] become one summary line at the window's end.
//! A leaf module (no crate imports): [`AppState`](crate::state::AppState) holds a [`RejectLog`],
//! [`admission`](super::admission) uses it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one reason's rejections are summarised instead of logged one by one.
pub(crate) const LOG_WINDOW: Duration = Duration::from_secs(30);

/// The rate limit of rejection log lines (see the module docs). Bounded: one entry per reason.
#[derive(Debug, Default)]
pub(crate) struct RejectLog {
    windows: Mutex<HashMap<&'static str, Window>>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    suppressed: u64,
}

impl RejectLog {
    fn windows(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, Window>> {
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes one rejection of `reason` at `now`: `true` if it is to be logged in full. A window
    /// that ended is summarised first ([`summary`]).
    pub(crate) fn note(&self, reason: &'static str, now: Instant) -> bool {
        let ended = {
            let mut w = self.windows();
            match w.get_mut(reason) {
                Some(win) if now.saturating_duration_since(win.start) < LOG_WINDOW => {
                    win.suppressed += 1;
                    return false;
                }
                Some(win) => {
                    let n = win.suppressed;
                    *win = Window {
                        start: now,
                        suppressed: 0,
                    };
                    n
                }
                None => {
                    w.insert(
                        reason,
                        Window {
                            start: now,
                            suppressed: 0,
                        },
                    );
                    0
                }
            }
        };
        if ended > 0 {
            summary(reason, ended);
        }
        true
    }

    /// Ends the windows older than [`LOG_WINDOW`] at `now`, logging a summary for each that
    /// held suppressed rejections; returns those `(reason, count)`. Called every few seconds.
    pub(crate) fn flush(&self, now: Instant) -> Vec<(&'static str, u64)> {
        let mut ended = Vec::new();
        self.windows().retain(|reason, win| {
            if now.saturating_duration_since(win.start) < LOG_WINDOW {
                return true;
            }
            if win.suppressed > 0 {
                ended.push((*reason, win.suppressed));
            }
            false
        });
        for (reason, n) in &ended {
            summary(reason, *n);
        }
        ended
    }
}

fn summary(reason: &str, n: u64) {
    tracing::warn!(
        reason,
        count = n,
        "{n} more {reason} rejections in the last {} s",
        LOG_WINDOW.as_secs()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_rejection_of_a_reason_is_logged_then_summarised_per_window() {
        let log = RejectLog::default();
        let t0 = Instant::now();
        let logged = (0..200)
            .filter(|i| log.note("UNAUTHORIZED", t0 + Duration::from_millis(*i)))
            .count();
        assert_eq!(logged, 1, "200 identical rejections: one full line");
        assert!(log.note("LIMIT", t0), "another reason has its own window");
        assert!(log.flush(t0 + Duration::from_secs(29)).is_empty());
        let mut ended = log.flush(t0 + LOG_WINDOW);
        ended.sort();
        assert_eq!(
            ended,
            [("UNAUTHORIZED", 199)],
            "LIMIT had nothing suppressed"
        );
        assert!(
            log.note("UNAUTHORIZED", t0 + LOG_WINDOW),
            "a new window logs again"
        );
        assert!(!log.note("UNAUTHORIZED", t0 + LOG_WINDOW + Duration::from_secs(1)));
        // A window that ended without a flush is summarised by the next rejection.
        assert!(log.note("UNAUTHORIZED", t0 + LOG_WINDOW * 3));
        assert!(log.flush(t0 + LOG_WINDOW * 3).is_empty());
    }
}
