//! One shutdown signal, handed to every part of ferry.
//!
//! When it fires the source stops reading, the pipeline finishes the batches
//! in flight (within a deadline), commits what was acknowledged, and ferry
//! exits. Nothing half-done is committed, so a shutdown that runs out of time
//! loses nothing either: the rest is sent again at the next start.

use std::time::Duration;
use tokio::sync::watch;

/// Fires the shutdown.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

/// Waits for the shutdown. Cheap to clone; one per task.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// A wait or a loop ended because shutdown fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// A new trigger and the signal it fires.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger { tx }, Shutdown { rx })
}

impl Trigger {
    /// Asks everything holding a [`Shutdown`] to stop.
    pub fn fire(&self) {
        self.tx.send_replace(true);
    }
}

impl Shutdown {
    /// True once the shutdown has fired.
    pub fn is_fired(&self) -> bool {
        *self.rx.borrow()
    }

    /// A signal that never fires, for runs that end with their input.
    pub fn never() -> Shutdown {
        let (trigger, shutdown) = channel();
        // Keeping the sender alive for ever costs one small allocation.
        std::mem::forget(trigger);
        shutdown
    }

    /// Returns once the shutdown fires. If the trigger is dropped without
    /// firing, nothing can fire it any more, so this never returns.
    pub async fn wait(&mut self) {
        if self.rx.wait_for(|fired| *fired).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Sleeps for `duration`; returns true if the shutdown fired meanwhile.
    pub async fn sleep_or_stop(&mut self, duration: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => self.is_fired(),
            () = self.wait() => true,
        }
    }
}

/// Fires `trigger` at the first SIGINT or SIGTERM.
pub fn fire_on_signals(trigger: Trigger) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("Shutting down: finishing the batches in flight.");
        trigger.fire();
    });
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        _ => {
            tracing::warn!("Cannot listen for SIGTERM; only Ctrl-C stops ferry gracefully.");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
