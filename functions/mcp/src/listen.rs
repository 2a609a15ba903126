//! Change notifications from the caller's change feed ([`crate::store::feed`]), so a stream
//! held on one instance hears of a change made through any other.
//!
//! - 2026-07-28 `subscriptions/listen`: [`accepted_filter`] says which requested
//!   notifications this server sends, and [`serve_listen`] holds the stream: it reads the
//!   feed every poll interval, sends what the stream accepted, and on Lambda ends by itself
//!   before the stream bound so the client reconnects.
//! - Legacy `resources/subscribe`: [`LegacyWatches`] keeps one watcher per session that
//!   sends `notifications/resources/updated` and `list_changed` through the session, which
//!   rmcp delivers on the session's standalone `GET /mcp` stream (mcp-server).
//! - Legacy `GET /mcp` on a host that keeps no session between requests (Lambda with
//!   long-lived streams on): [`session_stream`] is that standalone stream, fed from the
//!   feed, bounded like a listen stream, each event's id naming its feed position and the
//!   session, so a client reconnecting with `Last-Event-ID` gets exactly what it missed.
//!   The session's `resources/subscribe` URIs are kept in its session record there, and read
//!   only when a resource of the caller changes.
//!
//! An idle stream costs one feed read per poll interval and nothing else.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use rmcp::{
    ErrorData, Peer, RoleServer,
    model::{
        ResourceUpdatedNotificationParam, ServerJsonRpcMessage, ServerNotification,
        SubscriptionFilter,
    },
    service::{SubscriptionContext, SubscriptionSendError, SubscriptionSink},
    transport::common::server_side_http::ServerSseMessage,
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::ListenSettings,
    principal::Principal,
    resources,
    store::{
        Store, StoreError,
        feed::{self, Change, FeedEvent, FeedRecords},
    },
};

/// The notifications of `requested` that the product sends: its files' list and the files
/// named by `files:///` URIs. Tools and prompts never change at run time, and URIs that name
/// no file of ours can never be updated, so those are left out of the acknowledgment.
pub fn accepted_filter(requested: &SubscriptionFilter) -> SubscriptionFilter {
    let mut accepted = SubscriptionFilter::new();
    accepted.resources_list_changed = requested.resources_list_changed.filter(|on| *on);
    accepted.resource_subscriptions = requested
        .resource_subscriptions
        .as_ref()
        .map(|uris| {
            uris.iter()
                .filter(|uri| resources::key_from_uri(uri).is_ok())
                .cloned()
                .collect::<Vec<_>>()
        })
        .filter(|uris| !uris.is_empty());
    accepted
}

/// Where the changes after a position are, read once.
enum Batch {
    Changes(Vec<FeedEvent>),
    /// Events the reader had not seen were dropped: anything may have changed.
    Gap,
}

/// A principal's position in its feed, moved forward by each [`Cursor::next`].
struct Cursor<'a> {
    feed: &'a dyn FeedRecords,
    principal: &'a Principal,
    position: i64,
}

impl<'a> Cursor<'a> {
    /// A cursor at the feed's current head: only later changes are delivered.
    async fn at_head(
        feed: &'a dyn FeedRecords,
        principal: &'a Principal,
    ) -> Result<Self, StoreError> {
        let position = feed::head(feed, principal).await?;
        Ok(Self {
            feed,
            principal,
            position,
        })
    }

    /// One feed read: what is new since the last one.
    async fn next(&mut self) -> Result<Batch, StoreError> {
        let read = feed::read_after(self.feed, self.principal, self.position).await?;
        self.position = read.head;
        Ok(if read.gap {
            Batch::Gap
        } else {
            Batch::Changes(read.events)
        })
    }

    /// Reads the feed every `poll` while `open()` holds and hands each new event to `send`,
    /// until `send` says the stream is gone. After a gap, `everything()` stands in for what
    /// was missed, at the head. A failed read is logged and tried again next interval.
    async fn follow<Sent: Future<Output = bool>>(
        &mut self,
        poll: Duration,
        open: impl Fn() -> bool,
        everything: impl Fn() -> Vec<Change>,
        mut send: impl FnMut(FeedEvent) -> Sent,
    ) {
        let mut ticks = poll_ticks(poll).await;
        while open() {
            ticks.tick().await;
            let events = match self.next().await {
                Ok(Batch::Changes(events)) => events,
                Ok(Batch::Gap) => everything()
                    .into_iter()
                    .map(|change| FeedEvent {
                        position: self.position,
                        change,
                    })
                    .collect(),
                Err(error) => {
                    tracing::warn!(%error, "change feed read failed; trying again next interval");
                    continue;
                }
            };
            for event in events {
                if !send(event).await {
                    return;
                }
            }
        }
    }
}

/// Holds one `subscriptions/listen` stream until the client leaves, the server stops, or
/// `settings.limit` passes (then the stream ends with its final result and the client
/// listens again). A feed that cannot be read is logged and read again next interval.
pub async fn serve_listen(
    context: SubscriptionContext,
    feed: &dyn FeedRecords,
    principal: &Principal,
    settings: ListenSettings,
) -> Result<(), ErrorData> {
    let mut cursor = Cursor::at_head(feed, principal).await.map_err(|error| {
        tracing::error!(%error, "change feed unreadable; listen stream refused");
        ErrorData::internal_error(
            "the change feed is unavailable right now; listen again shortly",
            None,
        )
    })?;
    let sink = &context.sink().clone();
    let follow = cursor.follow(
        settings.poll,
        || true,
        || everything_accepted(sink.accepted()),
        |event| send(sink, event.change),
    );
    tokio::select! {
        () = context.cancelled() => {}
        () = follow => {}
        () = bound(settings.limit) => tracing::debug!("listen stream reached its bound; the client listens again"),
    }
    Ok(())
}

/// Ready once `limit` has passed; never without one (mcp-server keeps streams open).
async fn bound(limit: Option<Duration>) {
    match limit {
        Some(limit) => tokio::time::sleep(limit).await,
        None => std::future::pending().await,
    }
}

/// Ticks every `poll`, the first one interval from now (the head was just read).
pub(crate) async fn poll_ticks(poll: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval(poll);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    ticks
}

/// Sends one change; false once the stream is gone. Changes the stream did not accept are
/// skipped.
async fn send(sink: &SubscriptionSink, change: Change) -> bool {
    let sent = match change {
        Change::ResourceListChanged => sink.notify_resource_list_changed().await,
        Change::ResourceUpdated { uri } => sink.notify_resource_updated(uri).await,
        Change::ToolListChanged => sink.notify_tool_list_changed().await,
        Change::PromptListChanged => sink.notify_prompt_list_changed().await,
    };
    match sent {
        Ok(()) | Err(SubscriptionSendError::NotificationNotAccepted(_)) => true,
        Err(error) => {
            tracing::debug!(%error, "listen stream closed");
            false
        }
    }
}

/// After a gap: every notification the stream accepted, since any of them may be due.
fn everything_accepted(accepted: &SubscriptionFilter) -> Vec<Change> {
    let mut changes = Vec::new();
    if accepted.tools_list_changed == Some(true) {
        changes.push(Change::ToolListChanged);
    }
    if accepted.prompts_list_changed == Some(true) {
        changes.push(Change::PromptListChanged);
    }
    if accepted.resources_list_changed == Some(true) {
        changes.push(Change::ResourceListChanged);
    }
    for uri in accepted.resource_subscriptions.iter().flatten() {
        changes.push(Change::ResourceUpdated { uri: uri.clone() });
    }
    changes
}

/// Legacy-wire `resources/subscribe`: one watcher per session that has subscriptions.
#[derive(Default)]
pub struct LegacyWatches {
    sessions: Mutex<HashMap<String, LegacyWatch>>,
}

/// One session's subscribed URIs and the task that watches the feed for them.
struct LegacyWatch {
    uris: Arc<Mutex<HashSet<String>>>,
    stop: CancellationToken,
}

impl LegacyWatches {
    /// Adds `uri` to the session's subscriptions, starting its watcher on the first one.
    pub fn subscribe(self: &Arc<Self>, session: &str, uri: String, watch: LegacyWatcher) {
        let mut sessions = lock(&self.sessions);
        if let Some(existing) = sessions.get(session)
            && !existing.stop.is_cancelled()
        {
            lock(&existing.uris).insert(uri);
            return;
        }
        let uris = Arc::new(Mutex::new(HashSet::from([uri])));
        let stop = CancellationToken::new();
        sessions.insert(
            session.to_owned(),
            LegacyWatch {
                uris: uris.clone(),
                stop: stop.clone(),
            },
        );
        let watches = self.clone();
        let session = session.to_owned();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = watch.run(&uris) => {}
            }
            let mut sessions = lock(&watches.sessions);
            if sessions
                .get(&session)
                .is_some_and(|w| Arc::ptr_eq(&w.uris, &uris))
            {
                sessions.remove(&session);
            }
        });
    }

    /// Removes `uri`; the watcher stops with the session's last subscription.
    pub fn unsubscribe(&self, session: &str, uri: &str) {
        let mut sessions = lock(&self.sessions);
        let Some(watch) = sessions.get(session) else {
            return;
        };
        let mut uris = lock(&watch.uris);
        uris.remove(uri);
        if uris.is_empty() {
            watch.stop.cancel();
            drop(uris);
            sessions.remove(session);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a legacy watcher needs: the feed, whose it is, the session to notify, the interval.
pub struct LegacyWatcher {
    pub feed: Arc<dyn FeedRecords>,
    pub principal: Principal,
    pub peer: Peer<RoleServer>,
    pub poll: Duration,
}

impl LegacyWatcher {
    /// Follows the feed until the session's transport closes.
    async fn run(self, uris: &Mutex<HashSet<String>>) {
        let Ok(mut cursor) = Cursor::at_head(self.feed.as_ref(), &self.principal).await else {
            tracing::warn!("change feed unreadable; resources/subscribe updates will not be sent");
            return;
        };
        let everything = || {
            std::iter::once(Change::ResourceListChanged)
                .chain(
                    lock(uris)
                        .iter()
                        .map(|uri| Change::ResourceUpdated { uri: uri.clone() }),
                )
                .collect()
        };
        let peer = &self.peer;
        let send = |event: FeedEvent| notify_session(peer, uris, event.change);
        cursor
            .follow(self.poll, || !peer.is_transport_closed(), everything, send)
            .await;
    }
}

/// Sends one change to a legacy session (updates only for URIs it subscribed to); false once
/// the session is gone.
async fn notify_session(
    peer: &Peer<RoleServer>,
    uris: &Mutex<HashSet<String>>,
    change: Change,
) -> bool {
    let sent = match change {
        Change::ResourceListChanged => peer.notify_resource_list_changed().await,
        Change::ResourceUpdated { uri } if lock(uris).contains(&uri) => {
            peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                .await
        }
        _ => Ok(()),
    };
    sent.is_ok()
}

// ─── Legacy standalone streams fed from the feed (Lambda) ───────────────────

/// A session's standalone `GET /mcp` stream, from `after` (a position its `Last-Event-ID`
/// named) or from the feed's head: an opening event (no data) whose id names that position,
/// then `notifications/resources/list_changed` for every file the caller creates, wherever it
/// was written. Ends when the client leaves or at `settings.limit`.
pub fn session_stream(
    store: Arc<dyn Store>,
    principal: Principal,
    session: Arc<str>,
    settings: ListenSettings,
    after: Option<i64>,
) -> impl futures::Stream<Item = ServerSseMessage> + Send + Sync + Unpin + 'static {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ServerSseMessage>(16);
    tokio::spawn(async move {
        let feed: &dyn FeedRecords = store.as_ref();
        let mut cursor = match after {
            Some(position) => Cursor {
                feed,
                principal: &principal,
                position,
            },
            None => match Cursor::at_head(feed, &principal).await {
                Ok(cursor) => cursor,
                Err(error) => {
                    tracing::error!(%error, "change feed unreadable; the GET stream ends");
                    return;
                }
            },
        };
        // A first event naming where the stream starts, so a client that leaves before any
        // change still reconnects from here and misses nothing (rmcp's own opening event
        // names no position).
        let mut opening = ServerSseMessage::default();
        opening.event_id = Some(session_event_id(&session, cursor.position));
        if tx.send(opening).await.is_err() {
            return;
        }
        let tx = &tx;
        let follow = cursor.follow(
            settings.poll,
            || !tx.is_closed(),
            || vec![Change::ResourceListChanged],
            |event| {
                let (store, session) = (store.clone(), session.clone());
                async move {
                    let notification = match event.change {
                        // Only for a URI this session subscribed to: read its subscriptions
                        // when such a change comes, so an idle stream reads the feed alone.
                        Change::ResourceUpdated { uri } => {
                            let subscribed = match store.load_session_subscriptions(&session).await {
                                Ok(uris) => uris.is_some_and(|uris| uris.contains(&uri)),
                                Err(error) => {
                                    tracing::warn!(%error, "session subscriptions unreadable; the update is not sent");
                                    false
                                }
                            };
                            subscribed.then(|| {
                                ServerNotification::ResourceUpdatedNotification(
                                    rmcp::model::Notification::new(ResourceUpdatedNotificationParam::new(uri)),
                                )
                            })
                        }
                        change => session_notification(&change),
                    };
                    let Some(notification) = notification else {
                        return true;
                    };
                    let mut message =
                        ServerSseMessage::from_message(ServerJsonRpcMessage::notification(notification));
                    message.event_id = Some(session_event_id(&session, event.position));
                    tx.send(message).await.is_ok()
                }
            },
        );
        tokio::select! {
            () = follow => {}
            () = bound(settings.limit) => tracing::debug!("GET stream reached its bound; the client reconnects"),
        }
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// What a legacy standalone stream says of a list change; resource updates depend on the
/// session's subscriptions (see [`session_stream`]).
fn session_notification(change: &Change) -> Option<ServerNotification> {
    let notification = match change {
        Change::ResourceListChanged => {
            ServerNotification::ResourceListChangedNotification(Default::default())
        }
        Change::ToolListChanged => {
            ServerNotification::ToolListChangedNotification(Default::default())
        }
        Change::PromptListChanged => {
            ServerNotification::PromptListChangedNotification(Default::default())
        }
        Change::ResourceUpdated { .. } => return None,
    };
    Some(notification)
}

/// The SSE event id of feed `position` on `session`'s stream: the position, and a tag of the
/// session so an id from another session's stream is told apart.
pub fn session_event_id(session: &str, position: i64) -> String {
    format!("{position}.{}", session_tag(session))
}

/// The feed position a `Last-Event-ID` names, if it was issued on `session`'s stream.
pub fn position_of_event_id(session: &str, event_id: &str) -> Option<i64> {
    let (position, tag) = event_id.split_once('.')?;
    (tag == session_tag(session))
        .then(|| position.parse().ok())
        .flatten()
}

fn session_tag(session: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(session.as_bytes());
    digest[..6]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
