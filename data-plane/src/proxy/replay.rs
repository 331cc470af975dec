//! Request bodies that hyper's client sends upstream, and what a retry sends again.
//!
//! Envoy retries a request with a body by buffering the body as it streams up, to a limit (its
//! connection buffer limit, 1 MiB by default); past the limit the request is not retried. gw-proxy
//! does the same on the hyper path: when the route may retry, [`Teed`] copies each frame it
//! passes on into one buffer of its own (not the received pieces: each holds a whole read block
//! of hyper's alive), and a retry sends the copy ([`Again`]) once the downstream body has ended
//! (its last data, or its trailers) within [`RETRY_BUFFER`]. A body not yet read to its end when
//! the retry is decided (the upstream answered early), one longer than the limit, or one that
//! failed is not sent again: the try's answer stands. The copy is freed when the exchange is
//! done with it.

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::HeaderMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

/// The most body a retry keeps a copy of: Envoy's default buffer limit.
pub const RETRY_BUFFER: usize = 1024 * 1024;

/// The copy of a body as it went up.
#[derive(Debug, Default)]
struct Copy {
    data: bytes::BytesMut,
    /// `data`, once whole and asked for: shared by every retry.
    frozen: Option<Bytes>,
    trailers: Option<HeaderMap>,
    state: State,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Still streaming.
    #[default]
    Open,
    /// Ended within the limit: it can be sent again.
    Whole,
    /// Longer than the limit, or failed: it cannot.
    Lost,
}

/// A body's copy, shared by the body going up and the exchange that may send it again; and
/// when the body ended (the moment Envoy starts a try's per-try timeout).
#[derive(Debug, Clone, Default)]
pub struct Recording(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    copy: Mutex<Copy>,
    ended: std::sync::atomic::AtomicBool,
    on_end: tokio::sync::Notify,
}

impl Recording {
    fn with<T>(&self, f: impl FnOnce(&mut Copy) -> T) -> T {
        f(&mut self.0.copy.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A recording that keeps nothing, only watches for the body's end.
    pub fn ends_only() -> Recording {
        let r = Recording::default();
        r.end(State::Lost);
        r
    }

    /// Once the downstream's body has ended (whether or not it was kept whole).
    pub async fn ended(&self) {
        use std::sync::atomic::Ordering;
        loop {
            let n = self.0.on_end.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.0.ended.load(Ordering::Acquire) {
                return;
            }
            n.await;
        }
    }

    fn finished(&self) {
        self.0
            .ended
            .store(true, std::sync::atomic::Ordering::Release);
        self.0.on_end.notify_waiters();
    }

    /// The body again, when it went up whole within the limit.
    pub fn again(&self) -> Option<Again> {
        self.with(|c| {
            (c.state == State::Whole).then(|| {
                let data = c
                    .frozen
                    .get_or_insert_with(|| std::mem::take(&mut c.data).freeze())
                    .clone();
                Again {
                    data: (!data.is_empty()).then_some(data),
                    trailers: c.trailers.clone(),
                }
            })
        })
    }

    /// No retry can come any more: the copy is freed, and what still goes up is not kept.
    pub fn abandon(&self) {
        self.with(|c| {
            *c = Copy {
                state: State::Lost,
                ..Copy::default()
            }
        });
    }

    /// Whether the body went up whole within the limit.
    pub fn whole(&self) -> bool {
        self.with(|c| c.state == State::Whole)
    }

    fn keep(&self, frame: &Frame<Bytes>, ended: bool) {
        self.with(|c| {
            if c.state != State::Open {
                return;
            }
            if let Some(data) = frame.data_ref() {
                if c.data.len() + data.len() > RETRY_BUFFER {
                    *c = Copy {
                        state: State::Lost,
                        ..Copy::default()
                    };
                    return;
                }
                c.data.extend_from_slice(data);
            } else if let Some(t) = frame.trailers_ref() {
                // Trailers end a body: no sender asks for more after them.
                c.trailers = Some(t.clone());
                c.state = State::Whole;
            }
            if ended {
                c.state = State::Whole;
            }
        });
    }

    /// The body has ended: whole, unless already lost; and whoever waits for its end is told.
    fn ended_whole(&self) {
        self.end(State::Whole);
        self.finished();
    }

    fn end(&self, state: State) {
        self.with(|c| {
            if c.state == State::Open {
                c.state = state;
            }
        });
    }
}

/// The downstream's body going up, copied into a [`Recording`] when the route may retry.
#[derive(Debug)]
pub struct Teed {
    inner: Incoming,
    copy: Option<Recording>,
}

impl Teed {
    /// `inner`, copied into `copy` if given.
    pub fn new(inner: Incoming, copy: Option<Recording>) -> Teed {
        if let Some(c) = &copy {
            if inner.is_end_stream() {
                c.ended_whole();
            }
        }
        Teed { inner, copy }
    }
}

impl Body for Teed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Some(copy), Poll::Ready(got)) = (&self.copy, &polled) {
            match got {
                // The sender may not ask again once the body says it has ended.
                Some(Ok(frame)) => {
                    let ended = self.inner.is_end_stream() || frame.is_trailers();
                    copy.keep(frame, ended);
                    if ended {
                        copy.finished();
                    }
                }
                None => {
                    copy.ended_whole();
                }
                Some(Err(_)) => copy.end(State::Lost),
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body sent again: the copy's data, then its trailers.
#[derive(Debug, Default)]
pub struct Again {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Again {
    /// No body at all.
    pub fn empty() -> Again {
        Again::default()
    }
}

impl Body for Again {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let len = self.data.as_ref().map_or(0, |d| d.len() as u64);
        match self.trailers {
            // Trailers go only with chunked framing over HTTP/1.1: no exact length, or
            // hyper would send `content-length` and drop them.
            Some(_) => {
                let mut h = SizeHint::new();
                h.set_lower(len);
                h
            }
            None => SizeHint::with_exact(len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(r: &Recording) -> (Vec<Bytes>, Option<HeaderMap>) {
        let mut a = r.again().expect("whole");
        let mut got = Vec::new();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut trailers = None;
        while let Poll::Ready(Some(Ok(f))) = Pin::new(&mut a).poll_frame(&mut cx) {
            match f.into_data() {
                Ok(d) => got.push(d),
                Err(f) => trailers = f.into_trailers().ok(),
            }
        }
        assert!(a.is_end_stream());
        (got, trailers)
    }

    #[test]
    fn a_copy_is_sent_again_only_once_whole_and_within_the_limit() {
        let r = Recording::default();
        r.keep(&Frame::data(Bytes::from_static(b"ab")), false);
        assert!(r.again().is_none(), "still streaming");
        r.keep(&Frame::data(Bytes::from_static(b"cd")), false);
        let mut t = HeaderMap::new();
        t.insert("grpc-timeout", "1S".parse().unwrap());
        r.keep(&Frame::trailers(t.clone()), true);
        let (data, trailers) = frames(&r);
        assert_eq!(data, [&b"abcd"[..]]);
        assert_eq!(trailers, Some(t));
        // With trailers, no exact length (chunked framing carries them).
        assert_eq!(r.again().unwrap().size_hint().exact(), None);
        assert_eq!(frames(&r).0, [&b"abcd"[..]], "again, as often as asked");

        // Trailers end a body even when the sender never polls past them.
        let chunked = Recording::default();
        chunked.keep(&Frame::data(Bytes::from_static(b"x")), false);
        chunked.keep(&Frame::trailers(HeaderMap::new()), false);
        assert!(chunked.whole());
        let plain = Recording::default();
        plain.keep(&Frame::data(Bytes::from_static(b"xyz")), true);
        assert_eq!(plain.again().unwrap().size_hint().exact(), Some(3));
        plain.abandon();
        assert!(plain.again().is_none(), "abandoned");

        let big = Recording::default();
        big.keep(&Frame::data(Bytes::from(vec![0; RETRY_BUFFER])), false);
        big.keep(&Frame::data(Bytes::from_static(b"x")), false);
        big.end(State::Whole);
        assert!(big.again().is_none() && !big.whole(), "past the limit");

        let failed = Recording::default();
        failed.end(State::Lost);
        failed.end(State::Whole);
        assert!(failed.again().is_none());
    }
}
