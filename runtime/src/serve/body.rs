//! A request body's deadline, and [`read_body`]: how every route of both binaries reads one.

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::http::{HeaderMap, header};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::{Body as HttpBody, Bytes, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn StdError + Send + Sync>;

/// The body did not arrive before its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

/// A body that fails with [`BodyTimedOut`] once its deadline passes. The timer is made only
/// when the body is not already there, which for small requests is never.
pub(super) struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> DeadlineBody<B> {
    pub(super) fn new(inner: B, deadline: Instant) -> Self {
        Self {
            inner,
            deadline,
            timer: None,
        }
    }
}

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a body could not be read. The texts hold no part of the body.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("the request body is over the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body did not arrive in time")]
    TimedOut,
    #[error("the request body could not be read")]
    Unreadable,
}

/// Reads a whole body of at most `limit` bytes: a declared Content-Length over it is refused
/// before anything is read, a streamed body as soon as it passes the limit; the rest is never
/// read. A body that misses its deadline ([`DeadlineBody`]) is [`BodyError::TimedOut`].
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if caused_by::<LengthLimitError>(&*error) => Err(BodyError::TooLarge { limit }),
        Err(error) if caused_by::<BodyTimedOut>(&*error) => Err(BodyError::TimedOut),
        Err(_) => Err(BodyError::Unreadable),
    }
}

/// Whether `error` or one of its sources is a `T` (axum wraps a body's error in its own).
fn caused_by<T: StdError + 'static>(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<T>() {
            return true;
        }
        next = error.source();
    }
    false
}
