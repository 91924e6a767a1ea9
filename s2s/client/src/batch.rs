//! [`BatchReport`]: what a batch send committed, transaction by transaction.

use std::ops::Range;

use crate::Error;
use crate::transaction::SendSummary;

/// What [`Client::send_batch_report`](crate::Client::send_batch_report) (or
/// [`send_sources_report`](crate::Client::send_sources_report)) achieved. Items are numbered
/// by their position in the batch (0-based, input order).
///
/// Only what NiFi confirmed (`TRANSACTION_FINISHED`) is in [`committed`](Self::committed).
/// A failed transaction's items are in [`failed`](Self::failed): NiFi rolled them back, or —
/// when the connection was lost after the commit request — the outcome is unknown, so
/// resending them may duplicate but never lose.
///
/// ```no_run
/// # async fn demo(client: s2s::Client, ffs: Vec<s2s::FlowFile>) {
/// let report = client.send_batch_report("in", ffs).await;
/// for r in &report.committed {
///     println!("items {r:?} are in NiFi");
/// }
/// for f in &report.failed {
///     eprintln!("items {:?} not confirmed: {}", f.items, f.error);
/// }
/// if let Some(i) = report.not_attempted_from {
///     eprintln!("items {i}.. were not sent");
/// }
/// # }
/// ```
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct BatchReport {
    /// Sums over the committed transactions.
    pub summary: SendSummary,
    /// The items NiFi confirmed, as sorted, merged ranges.
    pub committed: Vec<Range<usize>>,
    /// Transactions that failed after their retries, in the order they failed.
    pub failed: Vec<BatchFailure>,
    /// The first item never attempted: after a transaction failed no new one starts (those
    /// already running finish). `None` when every item was attempted.
    pub not_attempted_from: Option<usize>,
}

/// One transaction of a batch that NiFi did not confirm.
#[derive(Debug)]
#[non_exhaustive]
pub struct BatchFailure {
    /// The items it carried.
    pub items: Range<usize>,
    /// Why it failed (after retries).
    pub error: Error,
}

impl BatchReport {
    /// Whether every item was committed.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.not_attempted_from.is_none()
    }

    /// How many items NiFi confirmed.
    pub fn committed_items(&self) -> usize {
        self.committed.iter().map(|r| r.len()).sum()
    }

    /// The summary when everything was committed, else the first failure's error (what
    /// [`Client::send_batch`](crate::Client::send_batch) returns).
    pub fn into_result(self) -> Result<SendSummary, Error> {
        match self.failed.into_iter().next() {
            Some(f) => Err(f.error),
            None => Ok(self.summary),
        }
    }

    /// Adds a committed range, keeping the list sorted and merged.
    pub(crate) fn add_committed(&mut self, r: Range<usize>) {
        if r.is_empty() {
            return;
        }
        let at = self.committed.partition_point(|c| c.start < r.start);
        self.committed.insert(at, r);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(self.committed.len());
        for c in self.committed.drain(..) {
            match merged.last_mut() {
                Some(last) if last.end >= c.start => last.end = last.end.max(c.end),
                _ => merged.push(c),
            }
        }
        self.committed = merged;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_ranges_stay_sorted_and_merged() {
        let mut r = BatchReport::default();
        r.add_committed(4..6);
        r.add_committed(0..2);
        r.add_committed(8..9);
        assert_eq!(r.committed, vec![0..2, 4..6, 8..9]);
        r.add_committed(2..4);
        assert_eq!(r.committed, vec![0..6, 8..9]);
        r.add_committed(3..3);
        assert_eq!(r.committed_items(), 7);
        assert!(r.is_complete());
        r.not_attempted_from = Some(9);
        assert!(!r.is_complete());
    }
}
