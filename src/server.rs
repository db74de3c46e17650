//! The HTTP listener: HTTP/1.1 connections with a deadline for each request head, an idle
//! keep-alive limit, a cap on open connections, and graceful shutdown.
//!
//! hyper parses HTTP. Its own `header_read_timeout` also runs while a keep-alive connection
//! waits for its next request, so it would close idle connections as soon as a slow head; a
//! proxy in front that reuses connections for up to a minute would then race the close and
//! answer 502. So each connection has a small watchdog instead: a head must be complete within
//! `header_read_timeout` of its first byte (of the accept, for a new connection), and a
//! connection with no request in flight and no traffic for `idle_timeout` is closed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

/// What API.md promises about connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Idle keep-alive connections close after this long (longer than common proxies keep theirs).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves `router` until `shutdown` resolves, then stops accepting, lets in-flight requests
/// finish and closes idle connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let open = metrics::gauge!("chronicle_http_connections_open");
    tokio::pin!(shutdown);
    loop {
        // A permit before accepting: at the limit, new connections wait in the kernel's
        // accept queue rather than being accepted and starved.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    if !is_connection_error(&e) {
                        tracing::error!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let closing = closing_rx.clone();
        let open = open.clone();
        connections.spawn(async move {
            open.increment(1.0);
            serve_connection(stream, peer, router, limits, closing, permit).await;
            open.decrement(1.0);
        });
    }
    drop(listener);
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    mut closing: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let in_flight = tracked.request_started();
        // The rate limiter and the session records read the peer address from here.
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = router.clone().oneshot(request.map(Body::new));
        async move {
            let response = response.await;
            drop(in_flight);
            Ok::<_, Infallible>(match response {
                Ok(response) => response,
                Err(never) => match never {},
            })
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        // The watchdog below does this job; hyper's timer would also close idle connections.
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let watchdog = activity.expired(limits);
    tokio::pin!(watchdog);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            // Dropping the connection closes the socket.
            () = &mut watchdog => return,
            changed = closing.changed(), if !shutting_down => {
                shutting_down = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Where a connection is between requests, for its deadline.
struct Phase {
    accepted: Instant,
    requests: u64,
    in_flight: u32,
    /// The first byte of a request head that is not complete yet.
    head_started: Option<Instant>,
    last_traffic: Instant,
}

struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            phase: Mutex::new(Phase {
                accepted: now,
                requests: 0,
                in_flight: 0,
                head_started: None,
                last_traffic: now,
            }),
            changed: Notify::new(),
        }
    }

    fn update(&self, change: impl FnOnce(&mut Phase) -> bool) {
        let notify = match self.phase.lock() {
            Ok(mut phase) => change(&mut phase),
            Err(_) => true,
        };
        if notify {
            self.changed.notify_one();
        }
    }

    fn read(&self) {
        self.update(|phase| {
            let now = Instant::now();
            phase.last_traffic = now;
            // Bytes read while a request is in flight are its body (or a pipelined request).
            let starts_head = phase.in_flight == 0 && phase.head_started.is_none();
            if starts_head {
                phase.head_started = Some(now);
            }
            starts_head
        });
    }

    fn wrote(&self) {
        self.update(|phase| {
            phase.last_traffic = Instant::now();
            false
        });
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        self.update(|phase| {
            phase.requests += 1;
            phase.in_flight += 1;
            phase.head_started = None;
            true
        });
        InFlight(self.clone())
    }

    /// When the connection must be closed, if nothing changes first; `None` while a request
    /// is in flight (the request timeout bounds handlers).
    fn deadline(&self, limits: Limits) -> Option<Instant> {
        let phase = self.phase.lock().ok()?;
        if phase.in_flight > 0 {
            return None;
        }
        Some(match phase.head_started {
            Some(started) => started + limits.header_read_timeout,
            // A new connection owes its first head at once: connecting and staying silent is
            // the cheapest way to hold a slot.
            None if phase.requests == 0 => phase.accepted + limits.header_read_timeout,
            None => phase.last_traffic + limits.idle_timeout,
        })
    }

    /// Resolves when the connection has overstayed its deadline.
    async fn expired(&self, limits: Limits) {
        loop {
            match self.deadline(limits) {
                None => self.changed.notified().await,
                Some(deadline) if Instant::now() >= deadline => return,
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = self.changed.notified() => {}
                    }
                }
            }
        }
    }
}

/// Marks a request as in flight until its response (head) is ready or it is dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|phase| {
            phase.in_flight = phase.in_flight.saturating_sub(1);
            phase.last_traffic = Instant::now();
            true
        });
    }
}

/// The socket, reporting traffic to the connection's watchdog.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LIMITS: Limits = Limits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_connections: 1,
    };

    #[tokio::test]
    async fn deadlines_follow_the_connections_phase() {
        let activity = Arc::new(Activity::new());
        let accepted = activity.phase.lock().unwrap().accepted;
        assert_eq!(
            activity.deadline(LIMITS),
            Some(accepted + Duration::from_secs(10))
        );

        let request = activity.request_started();
        assert_eq!(
            activity.deadline(LIMITS),
            None,
            "no deadline while handling"
        );
        activity.read();
        assert_eq!(activity.deadline(LIMITS), None, "body bytes start no head");
        drop(request);
        let idle_from = activity.phase.lock().unwrap().last_traffic;
        assert_eq!(
            activity.deadline(LIMITS),
            Some(idle_from + Duration::from_secs(60))
        );

        activity.read();
        let head = activity.phase.lock().unwrap().head_started.unwrap();
        assert_eq!(
            activity.deadline(LIMITS),
            Some(head + Duration::from_secs(10))
        );
        activity.read();
        assert_eq!(
            activity.deadline(LIMITS),
            Some(head + Duration::from_secs(10)),
            "trickling more bytes buys no time"
        );
    }
}
