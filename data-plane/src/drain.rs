//! The drain signal as downstream connections see it.
//!
//! A connection waits for its next request and for the drain at the same time, once per
//! request. A `watch` channel (or a `Notify`) puts the waiter in a locked list on every wait and
//! takes it out again when the request arrives: two lock round trips per request on the hot
//! path. Here a connection registers its waker once, when it first waits, and each wait after
//! that is one atomic load; [`Drain::start`] sets the flag and wakes every registered
//! connection.

use slab::Slab;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Whether the proxy drains, and who to wake when it starts.
#[derive(Debug, Default)]
pub struct Drain {
    on: AtomicBool,
    waiters: Mutex<Slab<Waker>>,
}

impl Drain {
    /// Starts the drain: every [`Waiter`] resolves.
    pub fn start(&self) {
        self.on.store(true, Ordering::SeqCst);
        for (_, w) in self.waiters().iter() {
            w.wake_by_ref();
        }
    }

    /// Whether the drain has started.
    pub fn draining(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// A connection's view of the drain; register lazily, deregisters when dropped.
    pub fn waiter(&self) -> Waiter<'_> {
        Waiter {
            drain: self,
            slot: None,
        }
    }

    fn waiters(&self) -> MutexGuard<'_, Slab<Waker>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One connection's registration: [`wait`](Self::wait) resolves once the drain has started.
#[derive(Debug)]
pub struct Waiter<'a> {
    drain: &'a Drain,
    /// The slab key and a copy of the waker registered under it.
    slot: Option<(usize, Waker)>,
}

impl<'d> Waiter<'d> {
    /// Resolves once the drain has started (at once if it has).
    pub fn wait(&mut self) -> Wait<'_, 'd> {
        Wait(self)
    }

    fn poll_drained(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.drain.draining() {
            return Poll::Ready(());
        }
        match &mut self.slot {
            // The same task polls again: already registered, nothing to do.
            Some((_, w)) if w.will_wake(cx.waker()) => {}
            Some((key, w)) => {
                *w = cx.waker().clone();
                self.drain.waiters()[*key] = w.clone();
            }
            None => {
                let w = cx.waker().clone();
                let key = self.drain.waiters().insert(w.clone());
                self.slot = Some((key, w));
            }
        }
        // A start between the first load and the registration has woken the list without us.
        if self.drain.draining() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if let Some((key, _)) = self.slot.take() {
            self.drain.waiters().remove(key);
        }
    }
}

/// The future of [`Waiter::wait`].
#[derive(Debug)]
pub struct Wait<'w, 'd>(&'w mut Waiter<'d>);

impl Future for Wait<'_, '_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.poll_drained(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_registered_waiter_wakes_when_the_drain_starts() {
        let drain = Arc::new(Drain::default());
        let (registered_tx, registered_rx) = tokio::sync::oneshot::channel();
        let waiting = {
            let drain = drain.clone();
            tokio::spawn(async move {
                let mut w = drain.waiter();
                let mut registered = Some(registered_tx);
                // Polled once (registers), then reports it is parked.
                std::future::poll_fn(|cx| {
                    let p = Pin::new(&mut w.wait()).poll(cx);
                    if let Some(tx) = registered.take() {
                        let _ = tx.send(drain.waiters().len());
                    }
                    p
                })
                .await;
                drop(w);
                drain.waiters().len()
            })
        };
        assert_eq!(registered_rx.await.unwrap(), 1, "registered on first wait");
        assert!(!waiting.is_finished());
        drain.start();
        assert_eq!(waiting.await.unwrap(), 0, "woken, and deregistered on drop");
        let mut late = drain.waiter();
        late.wait().await;
        assert!(
            late.slot.is_none(),
            "a wait after the start resolves at once"
        );
    }
}
