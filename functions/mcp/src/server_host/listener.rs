//! `mcp-server`'s HTTP/1.1 listener: hyper connections, each bounded in time and all bounded in
//! number, so that silent, slow or stalled clients cannot hold the process's sockets.
//!
//! - A new connection, and a new request on a kept-alive one from its first byte, must deliver
//!   its whole header within `header`; a connection with no request for `idle` is closed.
//! - A request body must have arrived `body` after its header; a handler still waiting for it
//!   then gets an error ([`BodyTimeout`]), the caller 408, and the connection closes. A body
//!   that has arrived but is read late by a slow handler is no timeout.
//! - A write the client takes no byte of for `write` ends the connection. This bounds a stall,
//!   not a response: an SSE stream its client reads stays open as long as it runs.
//! - Beyond `max_connections` a new connection is answered 503 and closed at once, never left
//!   waiting; the probes stay answerable on the metrics listener, which has its own slots.
//!
//! Every request carries the peer's [`ConnectInfo<SocketAddr>`], as `axum::serve` gave it.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{HeaderValue, Request, Response, StatusCode, header},
};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::{
    config::ConnectionLimits,
    http::{held_until_sent, jsonrpc_guard::BodyTimeout},
};

/// The answer a connection beyond the limit gets before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n\
content-type: text/plain\r\ncontent-length: 28\r\nconnection: close\r\n\r\n\
too many connections; retry\n";

/// How long accepting pauses after an error that is not the peer's (out of file descriptors).
const ACCEPT_PAUSE: Duration = Duration::from_millis(250);

/// How often, at most, refusals at the connection limit are logged.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Serves `router` on `listener` until `stop` is cancelled; then stops accepting, lets each
/// open connection finish its request, and returns once all have closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut refusals = Refusals::default();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                accept_failed(&error).await;
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                tokio::spawn(connection(
                    stream,
                    peer,
                    router.clone(),
                    limits,
                    stop.clone(),
                    slot,
                ));
            }
            Err(_) => {
                refuse(&stream);
                refusals.note(limits.max_connections);
            }
        }
    }
    drop(listener);
    // Each connection holds its slot until it closes.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// Answers 503 without waiting on the peer; the socket closes when `stream` is dropped.
fn refuse(stream: &TcpStream) {
    // What the peer already sent is read first, so closing ends with a FIN, not a reset
    // that could discard the answer.
    let mut sent = [0_u8; 4096];
    let _ = stream.try_read(&mut sent);
    let _ = stream.try_write(REFUSED);
}

/// Refusals at the connection limit, logged at most once a minute.
#[derive(Default)]
struct Refusals {
    count: u64,
    logged: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, limit: usize) {
        self.count += 1;
        if self
            .logged
            .is_none_or(|at| at.elapsed() >= REFUSAL_LOG_INTERVAL)
        {
            tracing::warn!(
                limit,
                refused = self.count,
                "connection limit reached: new connections are answered 503 (MCP_MAX_CONNECTIONS)"
            );
            self.logged = Some(Instant::now());
            self.count = 0;
        }
    }
}

async fn accept_failed(error: &io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    // Out of file descriptors, most likely: wait for some to close.
    tracing::error!(%error, "cannot accept a connection");
    tokio::time::sleep(ACCEPT_PAUSE).await;
}

/// One connection, from accept to close.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(TimedIo::new(stream, limits.write, activity.clone()));
    let service = Handler {
        router,
        peer,
        body_timeout: limits.body,
        activity: activity.clone(),
    };
    // The watchdog below enforces the header and idle timeouts. hyper's own header timer is
    // left off (it has none without a timer): it would arm one more timer for every request.
    let connection = http1::Builder::new().serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let watchdog = activity.watchdog(limits.header, limits.idle);
    let mut watchdog = std::pin::pin!(watchdog);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, %peer, "connection ended");
                }
                break;
            }
            () = watchdog.as_mut() => {
                tracing::debug!(%peer, "connection closed: no request header in time");
                break;
            }
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Where a connection is between requests, shared by its reads, its requests and its watchdog.
///
/// Changes wake nobody: a wake-up per change cost the connection's task three extra polls per
/// request (a quarter of the throughput at one client). The watchdog instead wakes on a
/// schedule that cannot miss a deadline (see [`Activity::watchdog`]).
struct Activity {
    phase: Mutex<Phase>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request's header since then: a new connection, or a request's first byte.
    Head(Instant),
    /// Kept alive with no request since then.
    Idle(Instant),
    /// This many requests are being answered.
    Busy(usize),
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Head(Instant::now())),
        }
    }

    fn update(&self, change: impl FnOnce(Phase) -> Option<Phase>) {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(next) = change(*phase) {
            *phase = next;
        }
    }

    /// Bytes arrived: on an idle connection, a request has begun.
    fn bytes_read(&self) {
        self.update(|phase| match phase {
            Phase::Idle(_) => Some(Phase::Head(Instant::now())),
            _ => None,
        });
    }

    fn request_started(&self) {
        self.update(|phase| match phase {
            Phase::Busy(n) => Some(Phase::Busy(n + 1)),
            _ => Some(Phase::Busy(1)),
        });
    }

    fn request_ended(&self) {
        self.update(|phase| match phase {
            Phase::Busy(n) if n > 1 => Some(Phase::Busy(n - 1)),
            _ => Some(Phase::Idle(Instant::now())),
        });
    }

    /// Returns when the connection has waited too long for a header, or sat idle too long.
    ///
    /// Any phase the connection moves to from now has its deadline at least `min(header,
    /// idle)` away (a header that starts now, or an idle spell that starts now), so waking at
    /// the sooner of the current deadline and that interval never misses one.
    async fn watchdog(&self, header: Duration, idle: Duration) {
        let look_again = header.min(idle);
        loop {
            let phase = *self.phase.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let due = match phase {
                Phase::Head(since) => Some(since + header),
                Phase::Idle(since) => Some(since + idle),
                Phase::Busy(_) => None,
            };
            if due.is_some_and(|due| due <= now) {
                return;
            }
            let wake = due.map_or(now + look_again, |due| due.min(now + look_again));
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// Ends a request's activity when dropped: when hyper has written the whole response, or when
/// the request is abandoned.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.request_started();
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// The socket, noting reads for the watchdog and failing a write that makes no progress.
struct TimedIo {
    stream: TcpStream,
    activity: Arc<Activity>,
    write_timeout: Duration,
    /// Armed while a write waits for the client to take data.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl TimedIo {
    fn new(stream: TcpStream, write_timeout: Duration, activity: Arc<Activity>) -> Self {
        Self {
            stream,
            activity,
            write_timeout,
            stalled: None,
        }
    }

    /// A write's outcome: data taken restarts the stall timer, a write that waits runs it.
    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.stalled = None;
            return result;
        }
        self.stall(cx)
    }

    /// Pending until the stall timer, armed now if it is not yet, runs out.
    fn stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.write_timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stalled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took no data within MCP_WRITE_TIMEOUT_SECS",
            )));
        }
        Poll::Pending
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.progress(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.progress(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    // Flushing or shutting down moves no data, so neither restarts the stall timer.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_flush(cx) {
            Poll::Pending => this.stall(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_shutdown(cx) {
            Poll::Pending => this.stall(cx),
            ready => ready,
        }
    }
}

/// Hands each request to the router with the peer's address, and answers 408 for a body
/// that does not arrive in time.
#[derive(Clone)]
struct Handler {
    router: Router,
    peer: SocketAddr,
    body_timeout: Duration,
    activity: Arc<Activity>,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Handler {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::start(self.activity.clone());
        let router = self.router.clone();
        let peer = self.peer;
        let body_timeout = self.body_timeout;
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            let response = if http_body::Body::is_end_stream(&body) {
                answer(router, Request::from_parts(parts, Body::new(body))).await
            } else {
                let overdue = Arc::new(AtomicBool::new(false));
                let body = Body::new(Arriving {
                    body: Body::new(body),
                    deadline: Instant::now() + body_timeout,
                    timer: None,
                    timeout: body_timeout,
                    overdue: overdue.clone(),
                });
                let response = answer(router, Request::from_parts(parts, body)).await;
                if overdue.load(Ordering::Acquire) {
                    body_too_slow(response, body_timeout)
                } else {
                    response
                }
            };
            Ok(response.map(|body| held_until_sent(body, in_flight)))
        })
    }
}

async fn answer(router: Router, request: Request<Body>) -> Response<Body> {
    match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The answer to a request whose body was overdue: the handler's own 408 (the JSON-RPC error of
/// `/mcp`), or a plain one in place of what a handler made of the failed body; the rest of the
/// body is never read, so the connection closes.
fn body_too_slow(response: Response<Body>, timeout: Duration) -> Response<Body> {
    let mut response = if response.status() == StatusCode::REQUEST_TIMEOUT {
        response
    } else {
        let mut plain = Response::new(Body::from(format!("{}\n", BodyTimeout(timeout))));
        *plain.status_mut() = StatusCode::REQUEST_TIMEOUT;
        plain.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        plain
    };
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that fails with [`BodyTimeout`] when its handler waits for it past the
/// deadline; what has arrived by then is still handed on, however late it is read.
struct Arriving {
    body: Body,
    deadline: Instant,
    /// Armed the first time the handler has to wait: most bodies arrive with their header, and
    /// a timer for each would be one more registration per request.
    timer: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    overdue: Arc<AtomicBool>,
}

impl http_body::Body for Arriving {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if frame.is_pending() {
            let deadline = this.deadline;
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.as_mut().poll(cx).is_ready() {
                this.overdue.store(true, Ordering::Release);
                return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(this.timeout)))));
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_answer() {
        let text = std::str::from_utf8(REFUSED).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }

    #[tokio::test]
    async fn requests_carry_the_peer_address_and_a_stop_ends_the_loop() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let router = Router::new().route(
            "/peer",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.to_string()
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let limits = ConnectionLimits {
            header: Duration::from_secs(5),
            body: Duration::from_secs(5),
            idle: Duration::from_secs(5),
            write: Duration::from_secs(5),
            max_connections: 4,
        };
        let stop = CancellationToken::new();
        let serving = tokio::spawn(serve(listener, router, limits, stop.clone()));

        let mut client = TcpStream::connect(address).await.expect("connect");
        let me = client.local_addr().expect("local address");
        client
            .write_all(b"GET /peer HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert!(answer.ends_with(&me.to_string()), "{answer}");

        // A kept-alive connection does not hold the stop up: it is closed between requests.
        let mut idle = TcpStream::connect(address).await.expect("connect");
        idle.write_all(b"GET /peer HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("request");
        let mut head = [0_u8; 12];
        idle.read_exact(&mut head).await.expect("answer");
        assert_eq!(&head, b"HTTP/1.1 200");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(2), serving)
            .await
            .expect("the loop ends once its connections have closed")
            .expect("serve");
    }

    #[tokio::test]
    async fn only_a_body_the_handler_waits_for_times_out() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        // A handler that is slow to read, as one behind a slow store or key fetch would be.
        let router = Router::new().route(
            "/slow",
            axum::routing::post(|body: Body| async move {
                tokio::time::sleep(Duration::from_millis(600)).await;
                match axum::body::to_bytes(body, 1024).await {
                    Ok(bytes) => (StatusCode::OK, bytes.len().to_string()),
                    Err(_) => (StatusCode::BAD_REQUEST, "body failed".to_owned()),
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let limits = ConnectionLimits {
            header: Duration::from_secs(5),
            body: Duration::from_millis(300),
            idle: Duration::from_secs(5),
            write: Duration::from_secs(5),
            max_connections: 4,
        };
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, router, limits, stop.clone()));
        let exchange = |sent: &'static [u8]| async move {
            let mut client = TcpStream::connect(address).await.expect("connect");
            client.write_all(sent).await.expect("request");
            let mut answer = String::new();
            let _ = client.read_to_string(&mut answer).await;
            answer
        };

        // The whole body came at once: read after the deadline, it is no timeout.
        let whole = exchange(
            b"POST /slow HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
              Content-Length: 5\r\n\r\nhello",
        )
        .await;
        assert!(whole.starts_with("HTTP/1.1 200 "), "{whole}");
        assert!(whole.ends_with("\r\n\r\n5"), "{whole}");

        // Two of five bytes: the handler waits past the deadline, the caller gets 408 in place
        // of what the handler made of the failed body, and the connection closes.
        let partial =
            exchange(b"POST /slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhe")
                .await;
        assert!(partial.starts_with("HTTP/1.1 408 "), "{partial}");
        assert!(partial.contains("connection: close\r\n"), "{partial}");
        assert!(
            partial.contains("\r\n\r\nthe request body did not arrive within "),
            "{partial}"
        );
        stop.cancel();
    }

    /// `elapsed` is `expected`, give or take the scheduler.
    fn about(elapsed: Duration, expected: Duration) -> bool {
        elapsed >= expected && elapsed < expected + Duration::from_millis(150)
    }

    #[tokio::test]
    async fn the_watchdog_times_headers_and_idleness_apart() {
        let header = Duration::from_millis(200);
        let idle = Duration::from_millis(600);
        let activity = Arc::new(Activity::new());
        let start = Instant::now();
        // A connection that never sends a header is cut at the header timeout.
        activity.watchdog(header, idle).await;
        assert!(about(start.elapsed(), header), "{:?}", start.elapsed());

        // A request in flight is never cut; once answered, idleness counts.
        let activity = Arc::new(Activity::new());
        let in_flight = InFlight::start(activity.clone());
        let watchdog = tokio::spawn({
            let activity = activity.clone();
            async move { activity.watchdog(header, idle).await }
        });
        tokio::time::sleep(idle * 2).await;
        assert!(!watchdog.is_finished());
        let answered = Instant::now();
        drop(in_flight);
        // A byte of the next request switches to the header timeout.
        tokio::time::sleep(idle / 2).await;
        activity.bytes_read();
        watchdog.await.expect("watchdog");
        let cut = answered.elapsed();
        assert!(about(cut, idle / 2 + header), "{cut:?}");

        let activity = Arc::new(Activity::new());
        drop(InFlight::start(activity.clone()));
        let idle_since = Instant::now();
        activity.watchdog(header, idle).await;
        assert!(
            about(idle_since.elapsed(), idle),
            "{:?}",
            idle_since.elapsed()
        );
    }
}
