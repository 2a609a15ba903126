//! Legacy server-to-client requests across instances: a tool's question to the client
//! (sampling, elicitation) on the 2025 wire, answered through whichever instance the
//! client's answer reaches.
//!
//! The tool's request leaves on the stream of its call; the client answers with a new
//! POST. On a streaming Lambda the instance holding the call is busy until the call ends,
//! so that POST always reaches another instance. The answer goes through the store's
//! mailbox ([`crate::store::mailbox`]):
//!
//! - [`RelaySessions`] (the waiting side) is rmcp's `LocalSessionManager` that, before a
//!   server request leaves on a call's stream, opens the request's record, so the answer
//!   can never arrive first. The request leaves under an id of its own (the instances
//!   serving one session each number their requests from 0) and the answer is handed back
//!   under the session's. It then reads the record every poll interval and hands the
//!   answer to the session as if the client had posted it here. No answer within the wait
//!   (the tool timeout) is handed over as an error, so the tool ends with a clear
//!   `isError`. When the call's stream ends, its waiters stop.
//! - [`post_answer`] (the answering side, called by the session gate once the session is
//!   known to be the caller's) writes the answer into that record, only while it is open,
//!   and answers 202; an answer to no open request gets a 400 and changes nothing.
//!
//! Where the answer reaches the waiting process anyway (mcp-server) the relay is off and
//! rmcp's own routing serves.
//!
//! The same manager carries a session's other notifications on Lambda. rmcp sends what is not
//! tied to a request (log messages above all) on the session's standalone `GET /mcp` stream,
//! which the Lambda host does not hold; with `notes_on_calls` each call's stream also carries
//! what the session sends there while the call runs, ahead of the call's own messages, so a
//! tool's log messages reach the client before its result.

use std::{sync::Arc, time::Duration};

use axum::{
    body::{Body, to_bytes},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use futures::{FutureExt, Stream, StreamExt, future::Either};
use rmcp::{
    ErrorData,
    model::{ClientJsonRpcMessage, RequestId, ServerJsonRpcMessage},
    transport::{
        common::server_side_http::{ServerSseMessage, SessionId},
        streamable_http_server::session::{
            RestoreOutcome, SessionManager,
            local::{LocalSessionManager, LocalSessionManagerError},
        },
    },
};
use serde::Serialize;
use tokio::{sync::oneshot, task::AbortHandle};

use crate::{
    codes::{INVALID_REQUEST, NO_ANSWER},
    config::{ListenSettings, RelaySettings},
    http::{jsonrpc_error, store_unavailable},
    listen,
    session::RequestScope,
    store::{
        Store,
        mailbox::{self, MAX_ANSWER_BYTES},
    },
};

/// How long a mailbox record outlives the wait, so a late answer is refused by the
/// waiting side's close rather than by expiry alone.
const RECORD_MARGIN: Duration = Duration::from_secs(30);

/// The mailbox key of a request id: its JSON text, so `1` and `"1"` stay apart.
pub fn request_key(id: &impl Serialize) -> String {
    serde_json::to_string(id).unwrap_or_default()
}

/// rmcp's in-process session manager, with server requests relayed through the mailbox
/// when `relay` is set, and session notifications carried on calls' streams when
/// `notes_on_calls` is.
pub struct RelaySessions {
    local: Arc<LocalSessionManager>,
    store: Arc<dyn Store>,
    relay: Option<Relay>,
    notes_on_calls: bool,
    /// Serves `GET /mcp` from the caller's change feed instead of the local session.
    feed_streams: Option<ListenSettings>,
}

impl RelaySessions {
    pub fn new(
        local: Arc<LocalSessionManager>,
        store: Arc<dyn Store>,
        settings: Option<RelaySettings>,
    ) -> Self {
        Self {
            local,
            relay: settings.map(|settings| Relay {
                store: store.clone(),
                settings,
            }),
            store,
            notes_on_calls: false,
            feed_streams: None,
        }
    }

    /// Serves each session's standalone `GET /mcp` stream from its caller's change feed
    /// ([`listen::session_stream`]): for a host whose next request may land on another
    /// instance (Lambda), with long-lived streams on.
    pub fn with_feed_streams(mut self, listen: Option<ListenSettings>) -> Self {
        self.feed_streams = listen;
        self
    }

    /// The feed-fed standalone stream of session `id`, from `after`; `None` where the
    /// local session serves it.
    fn feed_stream(
        &self,
        id: &SessionId,
        after: Option<i64>,
    ) -> Option<impl Stream<Item = ServerSseMessage> + Send + Sync + Unpin + 'static> {
        let listen = self.feed_streams?;
        // The session gate put the caller in scope after checking the session is theirs.
        let principal = RequestScope::current()?.principal;
        Some(listen::session_stream(
            self.store.clone(),
            principal,
            id.clone(),
            listen,
            after,
        ))
    }

    /// Carries the session's standalone-stream notifications on each call's stream: for a
    /// host that holds no standalone stream (Lambda).
    pub fn with_notes_on_calls(mut self, notes_on_calls: bool) -> Self {
        self.notes_on_calls = notes_on_calls;
        self
    }

    /// What the session sends on its standalone stream from now on. rmcp replays what it
    /// kept for an earlier stream when a new one opens; that is dropped here, as it went out
    /// on an earlier call or had no stream to go to.
    async fn session_notes(
        &self,
        id: &SessionId,
    ) -> Result<
        impl Stream<Item = ServerSseMessage> + Send + Sync + Unpin + 'static,
        LocalSessionManagerError,
    > {
        let mut notes = self.local.create_standalone_stream(id).await?;
        while let Some(Some(_replayed)) = notes.next().now_or_never() {}
        Ok(notes)
    }
}

/// A call's stream with the session's notifications merged in, each sent as soon as it is
/// raised and ahead of the call's own next message; it ends with the call's stream.
struct WithSessionNotes<C, N> {
    call: C,
    notes: Option<N>,
}

impl<C, N> Stream for WithSessionNotes<C, N>
where
    C: Stream<Item = ServerSseMessage> + Unpin,
    N: Stream<Item = ServerSseMessage> + Unpin,
{
    type Item = ServerSseMessage;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<ServerSseMessage>> {
        use std::task::Poll;
        if let Some(notes) = self.notes.as_mut() {
            match notes.poll_next_unpin(cx) {
                Poll::Ready(Some(note)) => return Poll::Ready(Some(note)),
                // The session is gone; the call's stream says the rest.
                Poll::Ready(None) => self.notes = None,
                Poll::Pending => {}
            }
        }
        self.call.poll_next_unpin(cx)
    }
}

/// The store and how to read it.
#[derive(Clone)]
struct Relay {
    store: Arc<dyn Store>,
    settings: RelaySettings,
}

impl Relay {
    /// `stream` with a waiter started for every server request on it, each released to the
    /// client once its record is open.
    fn watch(
        &self,
        local: Arc<LocalSessionManager>,
        session: SessionId,
        stream: impl Stream<Item = ServerSseMessage> + Send + Sync + 'static,
    ) -> impl Stream<Item = ServerSseMessage> + Send + Sync + 'static {
        let relay = self.clone();
        let mut waiters = Waiters::default();
        stream.then(move |mut message| {
            let Some(ServerJsonRpcMessage::Request(request)) = message.message.as_deref() else {
                return Either::Left(std::future::ready(message));
            };
            // Each instance numbers its requests from 0, even in one session: the client
            // sees an id no other instance can have issued.
            let mut renamed = request.clone();
            renamed.id = RequestId::String(format!("relay-{}", uuid::Uuid::new_v4()).into());
            let ids = Ids {
                session: request.id.clone(),
                client: renamed.id.clone(),
            };
            message.message = Some(Arc::new(ServerJsonRpcMessage::Request(renamed)));
            let (opened, is_open) = oneshot::channel();
            waiters.start(
                relay
                    .clone()
                    .relay_answer(local.clone(), session.clone(), ids, opened),
            );
            Either::Right(async move {
                // Released even when the record could not be opened: the waiter has
                // already answered the tool with the error.
                let _ = is_open.await;
                message
            })
        })
    }

    /// Opens the request's record, says so on `opened`, waits for the answer and hands it
    /// (or the reason there is none) to the session under the id it sent.
    async fn relay_answer(
        self,
        local: Arc<LocalSessionManager>,
        session: SessionId,
        ids: Ids,
        opened: oneshot::Sender<()>,
    ) {
        let key = request_key(&ids.client);
        let expires_at = mailbox::expires_at_millis(self.settings.wait + RECORD_MARGIN);
        let answer = match self.store.open_request(&session, &key, expires_at).await {
            Ok(()) => {
                let _ = opened.send(());
                self.await_answer(&session, &key, ids.session).await
            }
            Err(error) => {
                tracing::error!(%error, "could not open the mailbox record of a server request");
                no_answer(
                    ids.session,
                    "the server could not keep its request to the client; try again",
                )
            }
        };
        if let Err(error) = local.accept_message(&session, answer).await {
            // The call ended meanwhile (cancelled, or the session closed): nobody waits.
            tracing::debug!(%error, "a relayed answer found no waiting call");
        }
        if let Err(error) = self.store.close_request(&session, &key).await {
            tracing::warn!(%error, "could not close a mailbox record; it expires by itself");
        }
    }

    /// Reads the record every poll interval until the answer is there or the wait is over.
    async fn await_answer(&self, session: &str, key: &str, id: RequestId) -> ClientJsonRpcMessage {
        let deadline = tokio::time::Instant::now() + self.settings.wait;
        let mut ticks = crate::listen::poll_ticks(self.settings.poll).await;
        loop {
            match self.store.load_answer(session, key).await {
                Ok(Some(text)) => return read_answer(&text, id),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "reading the mailbox failed; reading again"),
            }
            if tokio::time::Instant::now() >= deadline {
                let why = format!(
                    "the client did not answer within {} s",
                    self.settings.wait.as_secs()
                );
                return no_answer(id, &why);
            }
            ticks.tick().await;
        }
    }
}

/// A relayed request's id in the session that sent it, and the one the client sees.
struct Ids {
    session: RequestId,
    client: RequestId,
}

/// The posted answer as the session expects it: under the id the session sent.
fn read_answer(text: &str, id: RequestId) -> ClientJsonRpcMessage {
    match serde_json::from_str::<ClientJsonRpcMessage>(text) {
        Ok(ClientJsonRpcMessage::Response(mut response)) => {
            response.id = id;
            ClientJsonRpcMessage::Response(response)
        }
        Ok(ClientJsonRpcMessage::Error(mut error)) => {
            error.id = Some(id);
            ClientJsonRpcMessage::Error(error)
        }
        _ => no_answer(id, "the client's answer could not be read"),
    }
}

fn no_answer(id: RequestId, why: &str) -> ClientJsonRpcMessage {
    ClientJsonRpcMessage::error(ErrorData::new(NO_ANSWER, why.to_owned(), None), Some(id))
}

/// The waiters of one call's stream, stopped when it is dropped (the call ended or the
/// client left).
#[derive(Default)]
struct Waiters(Vec<AbortHandle>);

impl Waiters {
    fn start(&mut self, waiter: impl Future<Output = ()> + Send + 'static) {
        self.0.retain(|handle| !handle.is_finished());
        self.0.push(tokio::spawn(waiter).abort_handle());
    }
}

impl Drop for Waiters {
    fn drop(&mut self) {
        for handle in &self.0 {
            handle.abort();
        }
    }
}

/// The answering side: puts a client's answer to request `answers` of `session` into the
/// mailbox. 202 when a request was waiting; 400 when none is (unknown, already answered
/// or given up), with nothing stored.
pub async fn post_answer(
    store: &dyn Store,
    session: &str,
    answers: &serde_json::Value,
    body: Body,
) -> Response {
    let Ok(answer) = to_bytes(body, MAX_ANSWER_BYTES).await else {
        return jsonrpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            INVALID_REQUEST,
            &format!(
                "Invalid Request: an answer to a server request is limited to {MAX_ANSWER_BYTES} bytes"
            ),
        );
    };
    // The guard has parsed the body already; it is JSON text.
    let answer = String::from_utf8_lossy(&answer);
    match store
        .post_answer(session, &request_key(answers), &answer)
        .await
    {
        Ok(true) => StatusCode::ACCEPTED.into_response(),
        Ok(false) => jsonrpc_error(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            &format!(
                "Invalid Request: no request with id {answers} is waiting for an answer in this session"
            ),
        ),
        Err(error) => {
            tracing::error!(%error, "could not post an answer to the mailbox");
            store_unavailable()
        }
    }
}

impl SessionManager for RelaySessions {
    type Error = LocalSessionManagerError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        self.local.create_session().await
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.local.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.local.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.local.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        // Opened before the request goes in, so nothing the call raises is missed.
        let notes = match self.notes_on_calls {
            true => Some(self.session_notes(id).await?),
            false => None,
        };
        let call = self.local.create_stream(id, message).await?;
        let stream = WithSessionNotes { call, notes };
        Ok(match &self.relay {
            None => stream.left_stream(),
            Some(relay) => relay
                .watch(self.local.clone(), id.clone(), stream)
                .right_stream(),
        })
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.local.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(match self.feed_stream(id, None) {
            Some(stream) => stream.left_stream(),
            None => self
                .local
                .create_standalone_stream(id)
                .await?
                .right_stream(),
        })
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        if self.feed_streams.is_none() {
            return Ok(self.local.resume(id, last_event_id).await?.right_stream());
        }
        // An id this session's stream never issued resumes nothing (rmcp then answers
        // with an empty stream, so the client stops asking).
        let after = listen::position_of_event_id(id, &last_event_id)
            .ok_or_else(|| LocalSessionManagerError::SessionNotFound(id.clone()))?;
        self.feed_stream(id, Some(after))
            .map(StreamExt::left_stream)
            .ok_or_else(|| LocalSessionManagerError::SessionNotFound(id.clone()))
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        self.local.restore_session(id).await
    }
}
