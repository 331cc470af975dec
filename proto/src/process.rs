//! What the gw binaries share as processes.

#[cfg(unix)]
/// SIGTERM or SIGINT. Both are registered when this is called, not when it is first awaited:
/// called before the binary says it is up, so a signal sent as soon as it is (as an orchestrator,
/// or a test, may) reaches the graceful path rather than the default action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    async fn one(s: Option<Signal>) {
        match s {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    let (term, int) = (
        signal(SignalKind::terminate()).ok(),
        signal(SignalKind::interrupt()).ok(),
    );
    async move {
        tokio::select! {
            _ = one(term) => {}
            _ = one(int) => {}
        }
    }
}

/// Ctrl-C (registered when first awaited: no Unix signals to set up ahead).
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
