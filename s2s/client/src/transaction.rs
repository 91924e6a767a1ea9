//! The transaction API: [`SendTransaction`] and [`ReceiveTransaction`].

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use s2s_proto::FlowFile;
use s2s_proto::codec::flowfile::FlowFilePart;
use s2s_proto::raw::Event;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{Instrument, debug};

use crate::Client;
use crate::connection::{Connection, map_session_error};
use crate::error::{Error, Kind};
use crate::http::{HttpReceive, HttpSend};
use crate::metrics::{Dir, Labels};

/// Largest piece of content handed to the transport at once: content of any size is read,
/// hashed, (compressed) and written in pieces of at most this many bytes.
pub(crate) const CONTENT_CHUNK: usize = 1024 * 1024;

/// Read-ahead of [`SendTransaction::send_file`]: chunks read from disk while the previous
/// ones are written to the network.
const FILE_READ_AHEAD: usize = 2;

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

/// A FlowFile to send: its content in memory or in a file. See [`Client::send_sources`] and
/// [`SendTransaction::send_source`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Source {
    /// Attributes and content in memory.
    FlowFile(FlowFile),
    /// Attributes, and the file at `path` as the content, streamed (see
    /// [`SendTransaction::send_file`]).
    File {
        /// Attributes in wire order.
        attributes: Vec<(String, String)>,
        /// The content's file.
        path: std::path::PathBuf,
    },
}

impl Source {
    /// A FlowFile whose content is the file at `path`.
    pub fn file(attributes: Vec<(String, String)>, path: impl Into<std::path::PathBuf>) -> Self {
        Self::File {
            attributes,
            path: path.into(),
        }
    }

    /// The content length: known for memory, read from the file's metadata (0 if unreadable:
    /// sending it then reports the error).
    pub fn content_len(&self) -> u64 {
        match self {
            Self::FlowFile(ff) => ff.content.len() as u64,
            Self::File { path, .. } => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        }
    }
}

impl From<FlowFile> for Source {
    fn from(ff: FlowFile) -> Self {
        Self::FlowFile(ff)
    }
}

/// Called with the content bytes written so far in the transaction, as pieces go out.
pub(crate) type Progress = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// How a transaction reaches NiFi: one RAW connection or one HTTP transaction (`H` is its SEND
/// or RECEIVE half), until an error leaves it `Failed`.
#[derive(Debug)]
pub(crate) enum Transport<H> {
    /// A RAW connection (pooled again after the commit or confirm).
    Raw(Box<Connection>),
    /// An HTTP transaction with its streamed body.
    Http(Box<H>),
    /// An error left the transaction unusable; NiFi rolls it back.
    Failed,
}

/// How a SEND transaction reaches NiFi.
pub(crate) type SendTransport = Transport<HttpSend>;
/// How a RECEIVE transaction reaches NiFi.
pub(crate) type ReceiveTransport = Transport<HttpReceive>;

impl<H: crate::http::OnNode> Transport<H> {
    /// `raw` or `http` (metrics label).
    fn name(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            _ => "raw",
        }
    }

    /// The NiFi node (`host:port`) the transaction runs on.
    fn peer(&self) -> String {
        match self {
            Self::Raw(c) => c.peer.clone(),
            Self::Http(h) => h.node(),
            Self::Failed => String::new(),
        }
    }
}

/// An open SEND transaction. Send FlowFiles, then [`commit`](Self::commit).
///
/// Content comes from memory ([`send`](Self::send)), a file ([`send_file`](Self::send_file)),
/// any reader of known length ([`send_reader`](Self::send_reader)), or pushed piece by piece
/// ([`begin_flowfile`](Self::begin_flowfile), [`write_content`](Self::write_content),
/// [`end_flowfile`](Self::end_flowfile)). Whatever the source, content travels in pieces of at
/// most 1 MiB straight to the socket, so memory stays bounded for content of any size.
///
/// Dropping it (or any error) before the commit closes the connection, so NiFi rolls back:
/// a transaction is never half-committed.
///
/// ```no_run
/// # async fn demo(client: s2s::Client) -> Result<(), s2s::Error> {
/// let mut tx = client.send_transaction("in").await?;
/// tx.send_file(vec![("filename".into(), "clip.mp4".into())], "/data/clip.mp4").await?;
/// tx.send(s2s::FlowFile::new("small").with_attribute("kind", "note")).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
#[must_use = "an uncommitted transaction is rolled back when dropped"]
pub struct SendTransaction {
    client: Client,
    transport: SendTransport,
    port_id: String,
    flowfiles: u64,
    bytes: u64,
    /// Declared length and bytes written of the FlowFile being pushed.
    open: Option<(u64, u64)>,
    progress: Option<Progress>,
    labels: Labels,
    opened: Instant,
    span: tracing::Span,
    /// A call was in flight on the transport; still set when the next call starts means that
    /// call was cancelled mid-way, leaving the stream in an unknown state.
    in_call: bool,
}

impl std::fmt::Debug for SendTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendTransaction")
            .field("transport", &self.transport)
            .field("port_id", &self.port_id)
            .field("flowfiles", &self.flowfiles)
            .field("bytes", &self.bytes)
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

impl SendTransaction {
    /// `port` is the port as the caller named it (metrics label), `port_id` its id.
    pub(crate) fn new(
        client: Client,
        transport: SendTransport,
        port: &str,
        port_id: String,
        span: tracing::Span,
    ) -> Self {
        let labels = Labels {
            dir: Dir::Send,
            port: port.to_owned(),
            transport: transport.name(),
            peer: transport.peer(),
        };
        Self {
            client,
            transport,
            port_id,
            flowfiles: 0,
            bytes: 0,
            open: None,
            progress: None,
            labels,
            opened: Instant::now(),
            span,
            in_call: false,
        }
    }

    /// Calls `f` with the content bytes written so far in this transaction after each piece
    /// goes out (for progress bars).
    pub fn on_progress(&mut self, f: impl Fn(u64) + Send + Sync + 'static) {
        self.progress = Some(std::sync::Arc::new(f));
    }

    pub(crate) fn set_progress(&mut self, p: Option<Progress>) {
        self.progress = p;
    }

    /// Writes one FlowFile from a [`Source`]: [`send`](Self::send) or
    /// [`send_file`](Self::send_file).
    ///
    /// # Cancel safety
    /// Not cancel-safe (as [`send`](Self::send)).
    pub async fn send_source(&mut self, source: &Source) -> Result<(), Error> {
        match source {
            Source::FlowFile(ff) => self.send(ff.clone()).await,
            Source::File { attributes, path } => self.send_file(attributes.clone(), path).await,
        }
    }

    #[cfg(test)]
    pub(crate) fn for_test(client: Client, conn: Connection, port_id: &str) -> Self {
        Self::new(
            client,
            SendTransport::Raw(Box::new(conn)),
            port_id,
            port_id.to_owned(),
            tracing::Span::none(),
        )
    }

    #[cfg(test)]
    pub(crate) fn client_for_test(&self) -> Client {
        self.client.clone()
    }

    #[cfg(test)]
    pub(crate) async fn flush_for_test(&mut self) {
        if let SendTransport::Raw(c) = &mut self.transport {
            c.flush().await.unwrap();
        }
    }

    /// Runs `f` on the transport; any error marks the transaction failed.
    async fn on_transport<T>(
        &mut self,
        f: impl AsyncFnOnce(&mut SendTransport) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.check_not_cancelled()?;
        if matches!(self.transport, SendTransport::Failed) {
            return Err(Error::invalid_input("transaction already failed"));
        }
        let span = self.span.clone();
        self.in_call = true;
        let res = f(&mut self.transport).instrument(span).await;
        self.in_call = false;
        res.map_err(|e| self.fail(e))
    }

    /// Fails the transaction if a previous call was cancelled while writing: part of a
    /// FlowFile may have gone out, so nothing more may be written, committed or pooled.
    fn check_not_cancelled(&mut self) -> Result<(), Error> {
        if self.in_call {
            self.in_call = false;
            return Err(self.fail(Error::invalid_input(
                "a previous call on this transaction was cancelled mid-way; rolled back",
            )));
        }
        Ok(())
    }

    /// Marks the transaction failed because of `e` (counted in the metrics): the connection
    /// is closed, NiFi rolls back.
    fn fail(&mut self, e: Error) -> Error {
        self.labels.failed(&e);
        self.transport = SendTransport::Failed;
        self.open = None;
        e
    }

    /// Writes one FlowFile from memory. Uncompressed content is written from its `Bytes`
    /// without copying.
    ///
    /// # Cancel safety
    /// Not cancel-safe: a cancelled call leaves a partly written FlowFile; the transaction is
    /// then unusable and must be dropped (NiFi rolls back).
    pub async fn send(&mut self, flowfile: FlowFile) -> Result<(), Error> {
        self.begin_flowfile(flowfile.attributes, flowfile.content.len() as u64)
            .await?;
        self.write_content(flowfile.content).await?;
        self.end_flowfile().await
    }

    /// Writes one FlowFile whose content is the file at `path`: its length comes from the
    /// file's metadata and it is read in pieces of at most 1 MiB (a little ahead, on a
    /// blocking thread, while the previous pieces are written), so a file of any size passes
    /// through bounded memory. A file that changes size while it is read fails the
    /// transaction.
    ///
    /// # Cancel safety
    /// Not cancel-safe (as [`send`](Self::send)).
    pub async fn send_file(
        &mut self,
        attributes: Vec<(String, String)>,
        path: impl AsRef<Path>,
    ) -> Result<(), Error> {
        let path = path.as_ref().to_owned();
        let file = std::fs::File::open(&path)
            .map_err(|e| content_error(format!("cannot open {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| content_error(format!("cannot read {}", path.display()), e))?
            .len();
        let (sender, mut chunks) = tokio::sync::mpsc::channel(FILE_READ_AHEAD);
        let reader = tokio::task::spawn_blocking(move || read_file(file, &path, len, &sender));
        self.begin_flowfile(attributes, len).await?;
        let mut res = Ok(());
        while let Some(chunk) = chunks.recv().await {
            res = match chunk {
                Ok(chunk) => self.write_content(chunk).await,
                Err(e) => Err(e),
            };
            if res.is_err() {
                break;
            }
        }
        drop(chunks); // stops the reader if we stopped early
        let read = reader
            .await
            .map_err(|e| Error::with_source(Kind::Content("file reader failed".into()), e))?;
        match res.and(read) {
            Ok(()) => self.end_flowfile().await,
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Writes one FlowFile whose content is exactly `len` bytes read from `reader`, in pieces
    /// of at most 1 MiB. A reader that ends before `len` bytes or has more than `len` fails
    /// the transaction (nothing is committed) with an error saying so.
    ///
    /// # Cancel safety
    /// Not cancel-safe (as [`send`](Self::send)).
    pub async fn send_reader<R: AsyncRead + Send + Unpin>(
        &mut self,
        attributes: Vec<(String, String)>,
        len: u64,
        mut reader: R,
    ) -> Result<(), Error> {
        self.begin_flowfile(attributes, len).await?;
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(CONTENT_CHUNK);
            let mut buf = BytesMut::with_capacity(want);
            while buf.len() < want {
                let n = match reader.read_buf(&mut buf).await {
                    Ok(n) => n,
                    Err(e) => {
                        return Err(self.fail(content_error("reading the content failed", e)));
                    }
                };
                if n == 0 {
                    let got = len - left + buf.len() as u64;
                    return Err(self.fail(Error::new(Kind::Content(format!(
                        "the content source ended after {got} of its declared {len} bytes"
                    )))));
                }
            }
            left -= buf.len() as u64;
            self.write_content(buf.freeze()).await?;
        }
        let mut probe = [0u8; 1];
        match reader.read(&mut probe).await {
            Ok(0) => self.end_flowfile().await,
            Ok(_) => Err(self.fail(Error::new(Kind::Content(format!(
                "the content source has more than its declared {len} bytes"
            ))))),
            Err(e) => Err(self.fail(content_error("reading the content failed", e))),
        }
    }

    /// Starts a FlowFile whose content will be pushed with [`write_content`](Self::write_content)
    /// and must add up to `content_len` bytes; [`end_flowfile`](Self::end_flowfile) ends it.
    /// For content that arrives in pieces (an HTTP body, a pipe).
    ///
    /// # Cancel safety
    /// Not cancel-safe (as [`send`](Self::send)).
    pub async fn begin_flowfile(
        &mut self,
        attributes: Vec<(String, String)>,
        content_len: u64,
    ) -> Result<(), Error> {
        if self.open.is_some() {
            return Err(Error::invalid_input(
                "begin_flowfile() before the previous FlowFile ended",
            ));
        }
        self.on_transport(async |t| match t {
            SendTransport::Raw(conn) => {
                conn.session
                    .start_flowfile(&attributes, content_len)
                    .map_err(map_session_error)?;
                conn.write_pending().await
            }
            SendTransport::Http(h) => h.start(&attributes, content_len).await,
            SendTransport::Failed => unreachable!("checked by on_transport"),
        })
        .await?;
        self.open = Some((content_len, 0));
        Ok(())
    }

    /// Writes the next piece of the current FlowFile's content (any size: it goes out in
    /// pieces of at most 1 MiB). More content than declared fails the transaction.
    ///
    /// # Cancel safety
    /// Not cancel-safe (as [`send`](Self::send)).
    pub async fn write_content(&mut self, mut chunk: Bytes) -> Result<(), Error> {
        let Some((declared, written)) = self.open else {
            return Err(Error::invalid_input(
                "write_content() outside a FlowFile (call begin_flowfile first)",
            ));
        };
        if chunk.len() as u64 > declared - written {
            return Err(self.fail(Error::new(Kind::Content(format!(
                "content is longer than its declared {declared} bytes"
            )))));
        }
        while !chunk.is_empty() {
            let piece = chunk.split_to(chunk.len().min(CONTENT_CHUNK));
            let n = piece.len() as u64;
            self.on_transport(async |t| match t {
                SendTransport::Raw(conn) => {
                    conn.session
                        .send_content(piece)
                        .map_err(map_session_error)?;
                    conn.write_pending().await
                }
                SendTransport::Http(h) => h.content(piece).await,
                SendTransport::Failed => unreachable!("checked by on_transport"),
            })
            .await?;
            if let Some((_, w)) = self.open.as_mut() {
                *w += n;
            }
            if let (Some(p), Some((_, w))) = (&self.progress, self.open) {
                p(self.bytes + w);
            }
        }
        Ok(())
    }

    /// Ends the current FlowFile. Less content than declared fails the transaction.
    ///
    /// # Cancel safety
    /// Not cancel-safe (as [`send`](Self::send)).
    pub async fn end_flowfile(&mut self) -> Result<(), Error> {
        let Some((declared, written)) = self.open else {
            return Err(Error::invalid_input("end_flowfile() outside a FlowFile"));
        };
        if written != declared {
            return Err(self.fail(Error::new(Kind::Content(format!(
                "content ended after {written} of its declared {declared} bytes"
            )))));
        }
        self.on_transport(async |t| match t {
            SendTransport::Raw(conn) => {
                conn.session.end_flowfile().map_err(map_session_error)?;
                conn.write_pending().await
            }
            SendTransport::Http(h) => h.finish().await,
            SendTransport::Failed => unreachable!("checked by on_transport"),
        })
        .await?;
        self.open = None;
        self.flowfiles += 1;
        self.bytes += declared;
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
        self.check_not_cancelled()?;
        if self.open.is_some() {
            return Err(self.fail(Error::invalid_input(
                "commit() inside a FlowFile: its content is incomplete; rolled back",
            )));
        }
        if self.flowfiles == 0 {
            // Nothing to commit: a RAW connection goes back to the pool; dropping an HTTP
            // transaction cancels the empty transaction on NiFi.
            if let SendTransport::Raw(conn) =
                std::mem::replace(&mut self.transport, SendTransport::Failed)
            {
                self.client.checkin(&self.port_id, *conn);
            }
            return Ok(SendSummary::default());
        }
        let commit_started = Instant::now();
        let res = self.finish().await;
        let destination_full = res.map_err(|e| self.fail(e))?;
        self.labels.committed(
            self.flowfiles,
            self.bytes,
            commit_started.elapsed(),
            self.opened.elapsed(),
            destination_full,
        );
        Ok(SendSummary {
            flowfiles: self.flowfiles,
            bytes: self.bytes,
            transactions: 1,
            destination_full,
        })
    }

    /// The commit exchange; `Ok(destination_full)`. Leaves the transport `Failed` (a RAW
    /// connection goes back to the pool on success).
    async fn finish(&mut self) -> Result<bool, Error> {
        let span = self.span.clone();
        match std::mem::replace(&mut self.transport, SendTransport::Failed) {
            SendTransport::Failed => Err(Error::invalid_input("transaction already failed")),
            SendTransport::Http(mut h) => h.commit().instrument(span).await,
            SendTransport::Raw(mut conn) => {
                let client = self.client.clone();
                let port_id = self.port_id.clone();
                // A fresh handshake says whether the port is still running (see first_reply).
                // The probe's connection is closed, not pooled: pooled, every slow commit would
                // leave one more idle connection to NiFi (bridge/tests/hostile.rs saw 4 with 2
                // transactions at a time).
                let probe = async move {
                    let (fresh, _, _) = client
                        .acquire(crate::discovery::Direction::Send, &port_id, false)
                        .await?;
                    tokio::spawn(fresh.shutdown());
                    Ok(())
                };
                let destination_full = async {
                    conn.session.finish_send().map_err(map_session_error)?;
                    let mut first = Some(probe);
                    loop {
                        let ev = match first.take() {
                            Some(probe) => conn.first_reply(probe).await?,
                            None => conn.next_event().await?,
                        };
                        match ev {
                            Event::SendCommitted {
                                destination_full, ..
                            } => return Ok::<_, Error>(destination_full),
                            other => debug!(?other, "event while committing"),
                        }
                    }
                }
                .instrument(span)
                .await?;
                if destination_full {
                    // Committed, but NiFi asks to back off: skip this peer for this port for a while.
                    self.client.penalize(&conn.peer, Some(&self.port_id));
                }
                self.client.checkin(&self.port_id, *conn);
                Ok(destination_full)
            }
        }
    }

    /// HTTP transport: ends the upload and verifies the checksum NiFi computed, before
    /// [`commit`](Self::commit) (which does this itself when it was not called). On RAW the
    /// checksum exchange is part of the commit and this does nothing.
    ///
    /// # Cancel safety
    /// Not cancel-safe: drop the transaction if cancelled (NiFi rolls back).
    pub async fn confirm(&mut self) -> Result<(), Error> {
        if !matches!(self.transport, SendTransport::Http(_)) {
            return Ok(());
        }
        self.on_transport(async |t| match t {
            SendTransport::Http(h) => h.confirm().await,
            _ => Ok(()),
        })
        .await
    }

    /// Cancels explicitly: tells NiFi (when it can still understand it) and closes the connection.
    ///
    /// # Cancel safety
    /// Cancel-safe: the connection is closed either way.
    pub async fn cancel(mut self) {
        if let SendTransport::Raw(mut conn) =
            std::mem::replace(&mut self.transport, SendTransport::Failed)
            && conn.session.cancel_send("cancelled by client").is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.flush()).await;
        }
    }
}

fn content_error(what: impl Into<String>, e: std::io::Error) -> Error {
    Error::with_source(Kind::Content(what.into()), e)
}

/// Reads `len` bytes of `file` in [`CONTENT_CHUNK`] pieces into `out`; runs on a blocking
/// thread. Stops quietly when the receiver is gone.
fn read_file(
    mut file: std::fs::File,
    path: &Path,
    len: u64,
    out: &tokio::sync::mpsc::Sender<Result<Bytes, Error>>,
) -> Result<(), Error> {
    use std::io::Read;
    let changed = || {
        Error::new(Kind::Content(format!(
            "{} changed size while it was sent (expected {len} bytes)",
            path.display()
        )))
    };
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(CONTENT_CHUNK);
        // Into spare capacity: no zero-fill of the buffer before the read overwrites it.
        let mut buf = Vec::with_capacity(want);
        match (&mut file).take(want as u64).read_to_end(&mut buf) {
            Ok(n) if n == want => {}
            Ok(_) => return Err(changed()),
            Err(e) => return Err(content_error(format!("reading {}", path.display()), e)),
        }
        left -= want as u64;
        if out.blocking_send(Ok(Bytes::from(buf))).is_err() {
            return Ok(());
        }
    }
    match file.read(&mut [0u8; 1]) {
        Ok(0) => Ok(()),
        Ok(_) => Err(changed()),
        Err(e) => Err(content_error(format!("reading {}", path.display()), e)),
    }
}

/// A piece of the received stream.
enum Part {
    Start {
        attributes: Vec<(String, String)>,
        content_len: u64,
    },
    Content(Bytes),
    End,
}

/// An open RECEIVE transaction: read FlowFiles until `None`, persist them, then
/// [`confirm`](Self::confirm). Dropping it without confirming makes NiFi roll back and deliver
/// the same FlowFiles again later.
///
/// Read whole FlowFiles with [`next`](Self::next) (content in memory, bounded by
/// `max_content_length`), or stream them with [`next_stream`](Self::next_stream): attributes
/// first, then the content in pieces as it arrives, for content of any size:
///
/// ```no_run
/// # async fn demo(client: s2s::Client) -> Result<(), s2s::Error> {
/// let mut rx = client.receive("out").await?;
/// let mut n = 0;
/// while let Some(mut incoming) = rx.next_stream().await? {
///     let name = incoming.attribute("filename").unwrap_or("unnamed").to_owned();
///     let mut file = tokio::fs::File::create(format!("/tmp/{n}-{name}")).await.unwrap();
///     incoming.copy_to(&mut file).await?; // then fsync, before confirming
///     n += 1;
/// }
/// rx.confirm().await?; // the checksum matched; NiFi may now drop them
/// # Ok(()) }
/// ```
#[must_use = "an unconfirmed receive is rolled back when dropped"]
#[derive(Debug)]
pub struct ReceiveTransaction {
    client: Client,
    transport: ReceiveTransport,
    port_id: String,
    summary: ReceiveSummary,
    finished: bool,
    /// A streamed FlowFile's content is not read to its end yet.
    in_flowfile: bool,
    /// Largest content [`next`](Self::next) collects in memory.
    max_content_len: u64,
    labels: Labels,
    opened: Instant,
    span: tracing::Span,
    /// A reading call was in flight; still set when the next call starts means it was
    /// cancelled and may have lost a FlowFile or a piece of one: confirming would let NiFi drop
    /// what the caller never got.
    in_call: bool,
}

impl ReceiveTransaction {
    /// `port` is the port as the caller named it (metrics label), `port_id` its id.
    pub(crate) fn new(
        client: Client,
        transport: ReceiveTransport,
        port: &str,
        port_id: String,
        finished: bool,
        span: tracing::Span,
    ) -> Self {
        let max_content_len = client.max_content_length();
        let labels = Labels {
            dir: Dir::Receive,
            port: port.to_owned(),
            transport: transport.name(),
            peer: transport.peer(),
        };
        Self {
            labels,
            opened: Instant::now(),
            client,
            transport,
            port_id,
            summary: ReceiveSummary::default(),
            finished,
            in_flowfile: false,
            max_content_len,
            span,
            in_call: false,
        }
    }

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
        Ok(Self::new(
            client,
            ReceiveTransport::Raw(Box::new(conn)),
            port_id,
            port_id.to_owned(),
            finished,
            tracing::Span::none(),
        ))
    }

    #[cfg(test)]
    pub(crate) fn client_for_test(&self) -> Client {
        self.client.clone()
    }

    /// Marks the transaction failed because of `e` (counted in the metrics): NiFi rolls back.
    fn fail(&mut self, e: Error) -> Error {
        self.labels.failed(&e);
        self.transport = ReceiveTransport::Failed;
        self.in_flowfile = false;
        e
    }

    /// Starts a reading call: fails the transaction if the previous one was cancelled.
    fn enter(&mut self) -> Result<(), Error> {
        if self.in_call {
            self.in_call = false;
            return Err(self.fail(Error::invalid_input(
                "a previous call on this transaction was cancelled mid-way; rolled back",
            )));
        }
        self.in_call = true;
        Ok(())
    }

    /// Ends a reading call started with [`enter`](Self::enter).
    fn leave<T>(&mut self, r: Result<T, Error>) -> Result<T, Error> {
        self.in_call = false;
        r
    }

    /// The next piece of the stream; `None` once NiFi finished and the checksum matched.
    async fn next_part(&mut self) -> Result<Option<Part>, Error> {
        if self.finished {
            return Ok(None);
        }
        let span = self.span.clone();
        let res = async {
            match &mut self.transport {
                ReceiveTransport::Failed => Err(Error::invalid_input("transaction already failed")),
                ReceiveTransport::Http(h) => Ok(h.next_part().await?.map(|p| match p {
                    FlowFilePart::Header {
                        attributes,
                        content_len,
                    } => Part::Start {
                        attributes,
                        content_len,
                    },
                    FlowFilePart::Content(c) => Part::Content(c),
                    _ => Part::End,
                })),
                ReceiveTransport::Raw(conn) => loop {
                    match conn.next_event().await? {
                        Event::FlowFileStart {
                            attributes,
                            content_len,
                        } => {
                            return Ok(Some(Part::Start {
                                attributes,
                                content_len,
                            }));
                        }
                        Event::FlowFileContent(c) => return Ok(Some(Part::Content(c))),
                        Event::FlowFileEnd => return Ok(Some(Part::End)),
                        Event::NoData | Event::ReceiveVerified { .. } => return Ok(None),
                        Event::MoreData => {}
                        other => {
                            return Err(Error::protocol(format!("unexpected event {other:?}")));
                        }
                    }
                },
            }
        }
        .instrument(span)
        .await;
        match res {
            Ok(None) => {
                self.finished = true;
                self.in_flowfile = false;
                Ok(None)
            }
            Ok(Some(part)) => {
                match &part {
                    Part::Start { .. } => {
                        self.summary.flowfiles += 1;
                        self.in_flowfile = true;
                    }
                    Part::Content(c) => self.summary.bytes += c.len() as u64,
                    Part::End => self.in_flowfile = false,
                }
                Ok(Some(part))
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// The next FlowFile's attributes and length, or `None` once the checksum matched.
    async fn next_start(&mut self) -> Result<Option<(Vec<(String, String)>, u64)>, Error> {
        // Whatever a previous stream left unread is skipped (it still counts for the CRC).
        while self.in_flowfile {
            self.next_part().await?;
        }
        match self.next_part().await? {
            None => Ok(None),
            Some(Part::Start {
                attributes,
                content_len,
            }) => Ok(Some((attributes, content_len))),
            Some(_) => Err(self.fail(Error::protocol("FlowFile content without its header"))),
        }
    }

    /// The next FlowFile, whole, or `None` once NiFi finished sending and the checksum matched.
    /// Content above the client's `max_content_length` is an error: use
    /// [`next_stream`](Self::next_stream) for content of any size.
    ///
    /// # Cancel safety
    /// Not cancel-safe: a cancelled call may lose a FlowFile from this transaction; drop the
    /// transaction (NiFi then redelivers everything).
    pub async fn next(&mut self) -> Result<Option<FlowFile>, Error> {
        self.enter()?;
        let r = self.next_whole().await;
        self.leave(r)
    }

    async fn next_whole(&mut self) -> Result<Option<FlowFile>, Error> {
        let Some((attributes, content_len)) = self.next_start().await? else {
            return Ok(None);
        };
        if content_len > self.max_content_len {
            let max = self.max_content_len;
            return Err(self.fail(Error::invalid_input(format!(
                "a FlowFile of {content_len} bytes exceeds max_content_length ({max}); \
                 receive it with next_stream() instead"
            ))));
        }
        let mut content = BytesMut::with_capacity(content_len.min(CONTENT_CHUNK as u64) as usize);
        let mut single: Option<Bytes> = None;
        loop {
            match self.next_part().await? {
                Some(Part::Content(c)) => {
                    // One piece (a small FlowFile) is kept as-is: no copy.
                    if single.is_none() && content.is_empty() && c.len() as u64 == content_len {
                        single = Some(c);
                    } else {
                        if let Some(s) = single.take() {
                            content.extend_from_slice(&s);
                        }
                        content.extend_from_slice(&c);
                    }
                }
                Some(Part::End) => break,
                _ => return Err(self.fail(Error::protocol("FlowFile ended without its end"))),
            }
        }
        Ok(Some(FlowFile {
            attributes,
            content: single.unwrap_or_else(|| content.freeze()),
        }))
    }

    /// The next FlowFile as a stream: its attributes and length now, its content in pieces
    /// from [`IncomingFlowFile::chunk`] or [`IncomingFlowFile::copy_to`]. `None` once NiFi
    /// finished sending and the checksum matched (so the checksum covers everything streamed
    /// before [`confirm`](Self::confirm)). Content not read before the next call is skipped.
    ///
    /// # Cancel safety
    /// Not cancel-safe (as [`next`](Self::next)).
    pub async fn next_stream(&mut self) -> Result<Option<IncomingFlowFile<'_>>, Error> {
        self.enter()?;
        let r = self.next_start().await;
        let Some((attributes, content_len)) = self.leave(r)? else {
            return Ok(None);
        };
        Ok(Some(IncomingFlowFile {
            rx: self,
            attributes,
            content_len,
        }))
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
    /// queue. Call only after persisting everything received.
    ///
    /// # Cancel safety
    /// Not cancel-safe: if cancelled NiFi may redeliver (at-least-once).
    pub async fn confirm(mut self) -> Result<ReceiveSummary, Error> {
        self.enter()?;
        if !self.finished {
            return Err(Error::invalid_input(
                "confirm() before next() returned None: the transaction is rolled back",
            ));
        }
        let started = Instant::now();
        let res = self.finish().await;
        res.map_err(|e| self.fail(e))?;
        if self.summary.flowfiles > 0 {
            self.labels.committed(
                self.summary.flowfiles,
                self.summary.bytes,
                started.elapsed(),
                self.opened.elapsed(),
                false,
            );
            self.client.note_moved(
                &self.labels.peer,
                -i64::try_from(self.summary.flowfiles).unwrap_or(i64::MAX),
            );
        }
        Ok(self.summary)
    }

    /// The confirm exchange. Leaves the transport `Failed` (a RAW connection goes back to the
    /// pool on success).
    async fn finish(&mut self) -> Result<(), Error> {
        let span = self.span.clone();
        match std::mem::replace(&mut self.transport, ReceiveTransport::Failed) {
            ReceiveTransport::Failed => Err(Error::invalid_input("transaction already failed")),
            ReceiveTransport::Http(mut h) => h.confirm().instrument(span).await,
            ReceiveTransport::Raw(mut conn) => {
                // After NO_MORE_DATA the exchange is already over: nothing to confirm.
                if !conn.session.is_idle() {
                    conn.session.confirm_receive().map_err(map_session_error)?;
                    conn.flush().instrument(span).await?;
                }
                self.client.checkin(&self.port_id, *conn);
                Ok(())
            }
        }
    }
}

/// One FlowFile being received as a stream, from [`ReceiveTransaction::next_stream`]: its
/// attributes, its declared length, and its content piece by piece.
#[derive(Debug)]
pub struct IncomingFlowFile<'a> {
    rx: &'a mut ReceiveTransaction,
    attributes: Vec<(String, String)>,
    content_len: u64,
}

impl IncomingFlowFile<'_> {
    /// Attributes in wire order.
    pub fn attributes(&self) -> &[(String, String)] {
        &self.attributes
    }

    /// The value of attribute `key` (the last one if repeated).
    pub fn attribute(&self, key: &str) -> Option<&str> {
        s2s_proto::codec::flowfile::attribute(&self.attributes, key)
    }

    /// The content length NiFi announced.
    pub fn content_len(&self) -> u64 {
        self.content_len
    }

    /// Takes the attributes (the content can still be read).
    pub fn take_attributes(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.attributes)
    }

    /// The next piece of content as it arrived, or `None` at the end of this FlowFile.
    ///
    /// # Cancel safety
    /// Not cancel-safe (as [`ReceiveTransaction::next`]).
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        self.rx.enter()?;
        let r = self.next_chunk().await;
        self.rx.leave(r)
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        if !self.rx.in_flowfile {
            return Ok(None);
        }
        match self.rx.next_part().await? {
            Some(Part::Content(c)) => Ok(Some(c)),
            Some(Part::End) => Ok(None),
            _ => Err(self
                .rx
                .fail(Error::protocol("FlowFile content ended without its end"))),
        }
    }

    /// Writes the rest of the content to `writer` (then flushes it); returns the bytes written.
    /// Errors writing to `writer` fail the transaction (nothing is confirmed).
    ///
    /// # Cancel safety
    /// Not cancel-safe (as [`ReceiveTransaction::next`]).
    pub async fn copy_to<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        writer: &mut W,
    ) -> Result<u64, Error> {
        self.rx.enter()?;
        let r = self.copy_all(writer).await;
        self.rx.leave(r)
    }

    async fn copy_all<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        writer: &mut W,
    ) -> Result<u64, Error> {
        let mut n = 0;
        while let Some(c) = self.next_chunk().await? {
            if let Err(e) = writer.write_all(&c).await {
                let e = content_error("writing the received content failed", e);
                return Err(self.rx.fail(e));
            }
            n += c.len() as u64;
        }
        if let Err(e) = writer.flush().await {
            let e = content_error("writing the received content failed", e);
            return Err(self.rx.fail(e));
        }
        Ok(n)
    }
}
