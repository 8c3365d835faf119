//! Each HTTP connection's request deadline (`CACHE_REQUEST_TIMEOUT_MS`): a request's head and
//! body must arrive within the limit, counted from its first byte (from the accept for a
//! connection's first request), or the client gets `408 request_timeout` and the connection
//! closes. A client trickling bytes must not hold a connection, and with it a file
//! descriptor, for ever.
//!
//! actix-http times only the head of a connection's first request, and answers it with a bare
//! 408. So the connection's socket is wrapped ([`TimedStream`]): it starts a request's clock
//! when bytes arrive on an idle connection, and past the limit answers a JSON 408 itself and
//! ends the connection. The request's arrival in the app stops the clock, and the body is
//! timed where it is read (`body::read_json_body`) against the same start; once the answer
//! is ready the connection is idle again (actix's keep-alive timeout then applies).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::rt::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::error::{ErrorBody, ErrorCode, ErrorDetail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A request's bytes are arriving; its head has not reached the app yet.
    Arriving,
    /// The app has the request (its body, if any, is timed where it is read).
    InApp,
    /// Between requests: nothing is timed here (actix's keep-alive timeout applies).
    Idle,
    /// The limit passed: the 408 is sent, the connection ends.
    Expired,
}

/// When the connection's current request started, and where it is; shared by the
/// connection's socket wrapper and the requests it carries (as connection data).
#[derive(Debug)]
pub struct RequestClock {
    phase: Cell<Phase>,
    started: Cell<Instant>,
}

impl RequestClock {
    fn new(accepted: Instant) -> Self {
        Self {
            phase: Cell::new(Phase::Arriving),
            started: Cell::new(accepted),
        }
    }

    /// When the request now in the app began to arrive: its body's deadline counts from here.
    pub fn started(&self) -> Instant {
        self.started.get()
    }

    /// The request's head reached the app.
    pub fn request_in_app(&self) {
        self.phase.set(Phase::InApp);
    }

    /// The app answered: bytes that arrive from now on belong to the next request.
    pub fn answered(&self) {
        if self.phase.get() == Phase::InApp {
            self.phase.set(Phase::Idle);
        }
    }
}

/// A connection's socket that answers `408` when a request does not arrive in time.
pub struct TimedStream {
    io: TcpStream,
    clock: Rc<RequestClock>,
    limit: Duration,
    /// Wakes the connection at the deadline; armed lazily, reset at most once per deadline.
    alarm: Pin<Box<Sleep>>,
    alarm_at: Option<Instant>,
    /// The alarm was polled and has not rung: it will wake the connection, so it need not be
    /// polled again on every request (most heads arrive whole, long before it rings).
    alarm_armed: bool,
    /// The last write did not complete: actix still holds part of an answer, so a 408
    /// written now would interleave with it.
    output_pending: bool,
    answer: Rc<[u8]>,
}

impl TimedStream {
    /// Wraps an accepted connection; its first request's clock starts now.
    pub fn new(io: TcpStream, limit: Duration, answer: Rc<[u8]>) -> Self {
        let now = Instant::now();
        Self {
            io,
            clock: Rc::new(RequestClock::new(now)),
            limit,
            alarm: Box::pin(tokio::time::sleep_until((now + limit).into())),
            alarm_at: Some(now + limit),
            alarm_armed: false,
            output_pending: false,
            answer,
        }
    }

    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.io.peer_addr().ok()
    }

    /// The clock, for the requests of this connection.
    pub fn clock(&self) -> Rc<RequestClock> {
        Rc::clone(&self.clock)
    }

    /// While a request arrives and no byte is ready: whether its deadline has passed, else
    /// make sure the alarm will wake the connection at it.
    fn deadline_passed(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = self.clock.started.get() + self.limit;
        loop {
            match self.alarm_at {
                // An alarm set for an earlier request rings before this deadline: when it
                // does, it is set again for this one.
                Some(at) if at <= deadline => {
                    if self.alarm_armed && !self.alarm.is_elapsed() {
                        return false;
                    }
                    if self.alarm.as_mut().poll(cx).is_pending() {
                        self.alarm_armed = true;
                        return false;
                    }
                    self.alarm_armed = false;
                    if Instant::now() >= deadline {
                        return true;
                    }
                    self.alarm_at = None;
                }
                _ => {
                    self.alarm.as_mut().reset(deadline.into());
                    self.alarm_at = Some(deadline);
                    self.alarm_armed = false;
                }
            }
        }
    }

    /// Sends the 408 (unless part of an earlier answer is still unsent) and reports the end
    /// of the input, so that actix closes the connection.
    fn expire(&mut self, cx: &mut Context<'_>) {
        self.clock.phase.set(Phase::Expired);
        tracing::debug!(
            limit_ms = self.limit.as_millis() as u64,
            "a request's head did not arrive in time: 408, connection closed"
        );
        if !self.output_pending {
            // Best effort: a socket that cannot take these few bytes at once is closed
            // without them.
            let answer = Rc::clone(&self.answer);
            let _ = Pin::new(&mut self.io).poll_write(cx, &answer);
        }
    }
}

/// The bytes of the 408 sent when a request's head is late: a complete response that closes
/// the connection, with the JSON error body.
pub fn late_head_answer(limit: Duration) -> Rc<[u8]> {
    let body = ErrorBody {
        error: ErrorDetail {
            code: ErrorCode::RequestTimeout,
            message: format!(
                "the request's headers did not arrive within {} ms (CACHE_REQUEST_TIMEOUT_MS)",
                limit.as_millis()
            ),
            not_written: None,
        },
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut answer = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        json.len()
    )
    .into_bytes();
    answer.extend_from_slice(&json);
    answer.into()
}

impl AsyncRead for TimedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.clock.phase.get() {
            // End of input: actix finishes what it is writing, then closes.
            Phase::Expired => return Poll::Ready(Ok(())),
            Phase::Idle | Phase::InApp | Phase::Arriving => {}
        }
        let filled = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        match read {
            Poll::Ready(Ok(())) if buf.filled().len() > filled => {
                if this.clock.phase.get() == Phase::Idle {
                    this.clock.phase.set(Phase::Arriving);
                    this.clock.started.set(Instant::now());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending
                if this.clock.phase.get() == Phase::Arriving && this.deadline_passed(cx) =>
            {
                this.expire(cx);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        self.output_pending = written.is_pending();
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.output_pending = written.is_pending();
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
