//! The transaction API: [`SendTransaction`] and [`ReceiveTransaction`].

use std::time::Duration;

use s2s_proto::FlowFile;
use s2s_proto::raw::Event;
use tracing::{Instrument, debug};

use crate::Client;
use crate::connection::{Connection, map_session_error};
use crate::error::Error;
use crate::http::{HttpReceive, HttpSend};

/// What a committed SEND achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendSummary {
    /// FlowFiles NiFi committed.
    pub flowfiles: u64,
    /// Content bytes NiFi committed.
    pub bytes: u64,
    /// Transactions used.
    pub transactions: u64,
    /// NiFi committed but asked to back off (`TRANSACTION_FINISHED_BUT_DESTINATION_FULL`).
    pub destination_full: bool,
}

/// What a confirmed RECEIVE achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceiveSummary {
    /// FlowFiles received and confirmed.
    pub flowfiles: u64,
    /// Content bytes received and confirmed.
    pub bytes: u64,
}

/// An open SEND transaction. Send FlowFiles, then [`commit`](Self::commit).
///
/// Dropping it (or any error) before the commit closes the connection, so NiFi rolls back:
/// a transaction is never half-committed.
#[must_use = "an uncommitted transaction is rolled back when dropped"]
#[derive(Debug)]
pub struct SendTransaction {
    pub(crate) client: Client,
    pub(crate) conn: Option<Connection>,
    pub(crate) port_id: String,
    pub(crate) flowfiles: u64,
    pub(crate) bytes: u64,
    pub(crate) span: tracing::Span,
    /// Set for the HTTP transport (then `conn` is `None`).
    pub(crate) http: Option<HttpSend>,
}

impl SendTransaction {
    #[cfg(test)]
    pub(crate) fn for_test(client: Client, conn: Connection, port_id: &str) -> Self {
        Self {
            client,
            conn: Some(conn),
            port_id: port_id.to_owned(),
            flowfiles: 0,
            bytes: 0,
            span: tracing::Span::none(),
            http: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn client_for_test(&self) -> Client {
        self.client.clone()
    }

    #[cfg(test)]
    pub(crate) async fn flush_for_test(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            c.flush().await.unwrap();
        }
    }

    /// Writes one FlowFile. Large content is written from its `Bytes` without copying
    /// (when compression is off).
    ///
    /// # Cancel safety
    /// Not cancel-safe: a cancelled call leaves a partly written FlowFile; the transaction is
    /// then unusable and must be dropped (NiFi rolls back).
    pub async fn send(&mut self, flowfile: FlowFile) -> Result<(), Error> {
        if let Some(h) = self.http.as_mut() {
            let len = flowfile.content.len() as u64;
            if let Err(e) = h.send(&flowfile).instrument(self.span.clone()).await {
                self.http = None;
                return Err(e);
            }
            self.flowfiles += 1;
            self.bytes += len;
            return Ok(());
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(Error::invalid_input("transaction already failed"));
        };
        let len = flowfile.content.len() as u64;
        let res = async {
            conn.session
                .send_flowfile(&flowfile)
                .map_err(map_session_error)?;
            conn.write_pending().await
        }
        .instrument(self.span.clone())
        .await;
        if let Err(e) = res {
            self.conn = None;
            return Err(e);
        }
        self.flowfiles += 1;
        self.bytes += len;
        Ok(())
    }

    /// FlowFiles written so far.
    pub fn len(&self) -> u64 {
        self.flowfiles
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.flowfiles == 0
    }

    /// Finishes the transaction: CRC check, confirm, and NiFi's commit. Returns once NiFi has
    /// committed; only then may the caller release its copies.
    /// `destination_full` in the summary means "committed, but back off".
    ///
    /// # Cancel safety
    /// Not cancel-safe: if cancelled, NiFi may or may not have committed (as with any I/O
    /// error during commit); keep the data and resend (duplicates are possible).
    pub async fn commit(mut self) -> Result<SendSummary, Error> {
        if let Some(mut h) = self.http.take() {
            if self.flowfiles == 0 {
                // Nothing to commit; dropping cancels the empty transaction on NiFi.
                return Ok(SendSummary::default());
            }
            let destination_full = h.commit().instrument(self.span.clone()).await?;
            return Ok(SendSummary {
                flowfiles: self.flowfiles,
                bytes: self.bytes,
                transactions: 1,
                destination_full,
            });
        }
        let Some(mut conn) = self.conn.take() else {
            return Err(Error::invalid_input("transaction already failed"));
        };
        if self.flowfiles == 0 {
            self.client.checkin(&self.port_id, conn);
            return Ok(SendSummary::default());
        }
        let span = self.span.clone();
        let res = async {
            conn.session.finish_send().map_err(map_session_error)?;
            loop {
                match conn.next_event().await? {
                    Event::SendCommitted {
                        destination_full, ..
                    } => return Ok(destination_full),
                    other => debug!(?other, "event while committing"),
                }
            }
        }
        .instrument(span)
        .await;
        let destination_full = res?;
        if destination_full {
            // Committed, but NiFi asks to back off: skip this peer for this port for a while.
            self.client.penalize(&conn.peer, Some(&self.port_id));
        }
        self.client.checkin(&self.port_id, conn);
        Ok(SendSummary {
            flowfiles: self.flowfiles,
            bytes: self.bytes,
            transactions: 1,
            destination_full,
        })
    }

    /// HTTP transport: ends the upload and verifies the checksum NiFi computed, before
    /// [`commit`](Self::commit) (which does this itself when it was not called). On RAW the
    /// checksum exchange is part of the commit and this does nothing.
    ///
    /// # Cancel safety
    /// Not cancel-safe: drop the transaction if cancelled (NiFi rolls back).
    pub async fn confirm(&mut self) -> Result<(), Error> {
        let Some(h) = self.http.as_mut() else {
            return Ok(());
        };
        let res = h.confirm().instrument(self.span.clone()).await;
        if res.is_err() {
            self.http = None;
        }
        res
    }

    /// Cancels explicitly: tells NiFi (when it can still understand it) and closes the connection.
    ///
    /// # Cancel safety
    /// Cancel-safe: the connection is closed either way.
    pub async fn cancel(mut self) {
        if let Some(mut conn) = self.conn.take()
            && conn.session.cancel_send("cancelled by client").is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.flush()).await;
        }
    }
}

/// An open RECEIVE transaction: read FlowFiles with [`next`](Self::next) until `None`, persist
/// them, then [`confirm`](Self::confirm). Dropping it without confirming makes NiFi roll back
/// and deliver the same FlowFiles again later.
#[must_use = "an unconfirmed receive is rolled back when dropped"]
#[derive(Debug)]
pub struct ReceiveTransaction {
    pub(crate) client: Client,
    pub(crate) conn: Option<Connection>,
    pub(crate) port_id: String,
    pub(crate) summary: ReceiveSummary,
    pub(crate) finished: bool,
    pub(crate) span: tracing::Span,
    /// Set for the HTTP transport (then `conn` is `None`).
    pub(crate) http: Option<HttpReceive>,
}

impl ReceiveTransaction {
    /// Sends `RECEIVE_FLOWFILES` and reads NiFi's first answer; `Ok(true)` = no data.
    pub(crate) async fn begin(conn: &mut Connection) -> Result<bool, Error> {
        conn.session.begin_receive().map_err(map_session_error)?;
        match conn.next_event().await? {
            Event::NoData => Ok(true),
            Event::MoreData => Ok(false),
            other => Err(Error::protocol(format!("unexpected event {other:?}"))),
        }
    }

    #[cfg(test)]
    pub(crate) async fn begin_for_test(
        client: Client,
        mut conn: Connection,
        port_id: &str,
    ) -> Result<Self, Error> {
        let finished = Self::begin(&mut conn).await?;
        Ok(Self {
            client,
            conn: Some(conn),
            port_id: port_id.to_owned(),
            summary: ReceiveSummary::default(),
            finished,
            span: tracing::Span::none(),
            http: None,
        })
    }

    #[cfg(test)]
    pub(crate) fn client_for_test(&self) -> Client {
        self.client.clone()
    }

    /// The next FlowFile, or `None` once NiFi finished sending and the checksum matched.
    ///
    /// # Cancel safety
    /// Not cancel-safe: a cancelled call may lose a FlowFile from this transaction; drop the
    /// transaction (NiFi then redelivers everything).
    pub async fn next(&mut self) -> Result<Option<FlowFile>, Error> {
        if self.finished {
            return Ok(None);
        }
        if let Some(h) = self.http.as_mut() {
            return match h.next().instrument(self.span.clone()).await {
                Ok(Some(ff)) => {
                    self.summary.flowfiles += 1;
                    self.summary.bytes += ff.content.len() as u64;
                    Ok(Some(ff))
                }
                Ok(None) => {
                    self.finished = true;
                    Ok(None)
                }
                Err(e) => {
                    self.http = None;
                    Err(e)
                }
            };
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(Error::invalid_input("transaction already failed"));
        };
        let res = async {
            loop {
                match conn.next_event().await? {
                    Event::FlowFile(ff) => return Ok(Some(ff)),
                    Event::NoData | Event::ReceiveVerified { .. } => return Ok(None),
                    Event::MoreData => {}
                    other => return Err(Error::protocol(format!("unexpected event {other:?}"))),
                }
            }
        }
        .instrument(self.span.clone())
        .await;
        match res {
            Ok(Some(ff)) => {
                self.summary.flowfiles += 1;
                self.summary.bytes += ff.content.len() as u64;
                Ok(Some(ff))
            }
            Ok(None) => {
                self.finished = true;
                Ok(None)
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    /// The FlowFiles as a [`Stream`](futures_core::Stream): yields each FlowFile, ends after
    /// the last one (checksum verified), or yields one error and ends. Then call
    /// [`confirm`](Self::confirm).
    ///
    /// ```no_run
    /// # async fn demo(client: s2s::Client) -> Result<(), s2s::Error> {
    /// use futures_util::StreamExt;
    /// let mut rx = client.receive("out").await?;
    /// let all: Vec<_> = rx.stream().collect().await;
    /// for ff in all {
    ///     let ff = ff?; // persist it
    /// }
    /// rx.confirm().await?;
    /// # Ok(()) }
    /// ```
    pub fn stream(
        &mut self,
    ) -> impl futures_core::Stream<Item = Result<FlowFile, Error>> + Send + '_ {
        futures_util::stream::unfold((self, false), |(rx, done)| async move {
            if done {
                return None;
            }
            match rx.next().await {
                Ok(Some(ff)) => Some((Ok(ff), (rx, false))),
                Ok(None) => None,
                Err(e) => Some((Err(e), (rx, true))),
            }
        })
    }

    /// Tells NiFi the received FlowFiles are safely stored; NiFi then removes them from its
    /// queue. Call only after persisting everything [`next`](Self::next) returned.
    ///
    /// # Cancel safety
    /// Not cancel-safe: if cancelled NiFi may redeliver (at-least-once).
    pub async fn confirm(mut self) -> Result<ReceiveSummary, Error> {
        if !self.finished {
            return Err(Error::invalid_input(
                "confirm() before next() returned None: the transaction is rolled back",
            ));
        }
        if let Some(mut h) = self.http.take() {
            h.confirm().instrument(self.span.clone()).await?;
            return Ok(self.summary);
        }
        let Some(mut conn) = self.conn.take() else {
            return Err(Error::invalid_input("transaction already failed"));
        };
        // After NO_MORE_DATA the exchange is already over: nothing to confirm.
        if !conn.session.is_idle() {
            conn.session.confirm_receive().map_err(map_session_error)?;
            conn.flush().instrument(self.span.clone()).await?;
        }
        self.client.checkin(&self.port_id, conn);
        Ok(self.summary)
    }
}
