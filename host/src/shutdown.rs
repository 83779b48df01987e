//! One shutdown signal, handed to every part of ferry.
//!
//! When it fires the source stops reading, the pipeline finishes the batches
//! in flight (within a deadline), commits what was acknowledged, and ferry
//! exits. Nothing half-done is committed, so a shutdown that runs out of time
//! loses nothing either: the rest is sent again at the next start.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Fires the shutdown. Cheap to clone: the signal handler and the panic hook
/// each hold one.
#[derive(Debug, Clone)]
pub struct Trigger {
    tx: Arc<watch::Sender<bool>>,
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
    (Trigger { tx: Arc::new(tx) }, Shutdown { rx })
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

    /// Runs `work` to its end unless the shutdown fires first ([`Stopped`]):
    /// for a call or a read that may wait on a peer for long.
    pub async fn until<F: std::future::Future>(&mut self, work: F) -> Result<F::Output, Stopped> {
        tokio::select! {
            output = work => Ok(output),
            () = self.wait() => Err(Stopped),
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

/// Fires `trigger` at the first SIGINT or SIGTERM. At a second one ferry
/// exits at once with status 128 + the signal's number: whoever asks twice
/// does not want to wait for the batches in flight, and since only what was
/// acknowledged is ever committed, the rest is simply sent again at the next
/// start. The handlers are installed before this returns, so a signal that
/// comes right after start-up is not lost.
pub fn fire_on_signals(trigger: Trigger) {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
    tokio::spawn(async move {
        let (Ok(mut interrupt), Ok(mut terminate)) = handlers else {
            tracing::warn!("Cannot listen for SIGTERM; only Ctrl-C stops ferry gracefully.");
            let _ = tokio::signal::ctrl_c().await;
            trigger.fire();
            return;
        };
        let first = next_signal(&mut interrupt, &mut terminate).await;
        tracing::info!(signal = first.0, "Shutting down: finishing the batches in flight (a second signal exits at once).");
        trigger.fire();
        let second = next_signal(&mut interrupt, &mut terminate).await;
        let status = 128 + second.1;
        tracing::warn!(
            signal = second.0,
            status,
            "Second signal: exiting at once; the batches in flight are not committed and will be sent again at the next start."
        );
        std::process::exit(status);
    });
}

/// The next SIGINT or SIGTERM: its name and number.
async fn next_signal(interrupt: &mut tokio::signal::unix::Signal, terminate: &mut tokio::signal::unix::Signal) -> (&'static str, i32) {
    tokio::select! {
        _ = interrupt.recv() => ("SIGINT", 2),
        _ = terminate.recv() => ("SIGTERM", 15),
    }
}

/// Set once any thread of ferry panicked.
static PANICKED: AtomicBool = AtomicBool::new(false);

/// Makes a panic anywhere in ferry (any task, any thread) stop it: the panic
/// is logged at ERROR, `trigger` fires so the pipeline winds down within
/// `shutdown-timeout`, and [`panicked`] tells `main` to exit non-zero so that
/// the service manager restarts ferry. Without it, a panicking task would
/// just vanish, its batch would never complete, and ferry would sit idle
/// while reporting success.
pub fn fire_on_panic(trigger: Trigger) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        PANICKED.store(true, Ordering::SeqCst);
        let what = info.to_string().replace('\n', " ");
        tracing::error!(panic = %what, "A part of ferry panicked; stopping, and exiting with a failure so that the service manager restarts ferry.");
        trigger.fire();
    }));
}

/// True once a panic was seen by the hook of [`fire_on_panic`].
pub fn panicked() -> bool {
    PANICKED.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_on_any_thread_fires_the_shutdown_and_is_remembered() {
        let (trigger, shutdown) = channel();
        fire_on_panic(trigger);
        let thread = std::thread::spawn(|| panic!("a bug in some task"));
        assert!(thread.join().is_err(), "the thread panicked");
        // The hook is process-wide: leave the default one for the other tests.
        let _ = std::panic::take_hook();
        assert!(shutdown.is_fired(), "the panic fired the shutdown");
        assert!(panicked(), "main will exit non-zero");
    }
}
