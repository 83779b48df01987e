//! Taking turns with the other instances on a shared (PostgreSQL) state.
//!
//! A standby has its plugins compiled and its sinks built, and waits for the
//! lease (`state::lease`); once it holds it, it reads the shared cursor and
//! runs. The active instance renews its lease every third of its length and
//! stops its pipeline the moment it cannot be sure it still holds it: when
//! another instance has taken it, or when the database could not be reached
//! for a whole lease (a standby may have taken over meanwhile). Its writes
//! would be refused by the database's fence anyway; stopping also ends its
//! deliveries, which would only be duplicates. It then exits with an error,
//! and its service manager starts it again, as a standby.
//!
//! With SQLite state there is no one to take turns with: the storage lock
//! keeps a second ferry off the database, and this module lets the one
//! ferry lead at once.

use crate::metrics::Metrics;
use crate::shutdown::{Shutdown, Trigger};
use crate::state::LeadershipConfig;
use crate::state::lease::Held;
use crate::state::{State, StateError};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// This instance's part in taking turns.
#[derive(Debug, Clone)]
pub struct Leadership {
    instance: String,
    config: LeadershipConfig,
    metrics: Arc<Metrics>,
}

impl Leadership {
    /// This instance, as `config` names it.
    pub fn new(config: &LeadershipConfig, metrics: Arc<Metrics>) -> Leadership {
        Leadership { instance: config.instance_name(), config: config.clone(), metrics }
    }

    /// Waits, standing by, until this instance holds the lease of `state`;
    /// `None` when `shutdown` came first. `/readyz` is 200 while standing
    /// by: a standby is healthy.
    pub async fn wait_for_lease(&self, state: &State, mut shutdown: Shutdown) -> Result<Option<Held>, StateError> {
        if !state.is_shared() {
            self.metrics.set_leader(true, 0);
            return Ok(Some(Held::ALONE));
        }
        state.check_slots(self.config.slots).await?;
        state.instance_started(&self.instance).await?;
        let health = crate::observe::health();
        health.set_standby(true);
        self.metrics.set_leader(false, 0);
        let mut announced = None;
        let held = loop {
            match state.try_lead_any(&self.instance, self.config.lease(), self.config.slots).await {
                Ok(Some(held)) => break Some(held),
                Ok(None) => {
                    self.announce_standby(state, &mut announced).await;
                    if let Err(error) = state.heartbeat(&self.instance, "standby", None).await {
                        tracing::warn!(%error, "Cannot record this standby's heartbeat.");
                    }
                }
                Err(error) => tracing::warn!(%error, "Cannot ask the state database for the lease; asking again."),
            }
            if shutdown.sleep_or_stop(self.config.renew_every()).await {
                break None;
            }
        };
        health.set_standby(false);
        if held.is_none() {
            let _ = state.heartbeat(&self.instance, "stopped", None).await;
        }
        if let Some(held) = held {
            let lease = crate::state::lease::lease_name(held.slot);
            tracing::info!(instance = %self.instance, %lease, epoch = held.epoch, "This instance is now the active one on lease {lease}: it resumes from that slot's shared cursor.");
            self.metrics.set_leader(true, held.epoch);
            self.metrics.set_slot(held.slot);
            state.heartbeat(&self.instance, "active", Some(held)).await?;
        }
        Ok(held)
    }

    /// Says once per change of holders who is active while this instance
    /// stands by.
    async fn announce_standby(&self, state: &State, announced: &mut Option<Vec<(String, i64)>>) {
        let Ok(leases) = state.leases().await else { return };
        let now: Vec<(String, i64)> = leases.iter().map(|holder| (holder.name.clone(), holder.epoch)).collect();
        if announced.as_ref() == Some(&now) || leases.is_empty() {
            return;
        }
        let active: Vec<String> =
            leases.iter().map(|holder| format!("{} on {} (epoch {})", holder.name, holder.lease, holder.epoch)).collect();
        tracing::info!(
            instance = %self.instance,
            active = %active.join(", "),
            lease = ?self.config.lease(),
            "Standing by: other instances are active; this one takes over a lease once it runs out."
        );
        *announced = Some(now);
    }

    /// Renews `held` while the pipeline runs, firing `stop` when the lease
    /// is lost (see the module's documentation).
    pub fn keep(&self, state: State, held: Held, stop: Trigger) -> Kept {
        let (done, finished) = crate::shutdown::channel();
        let task = (state.is_shared()).then(|| tokio::spawn(self.clone().renew(state.clone(), held, stop, finished)));
        Kept { leadership: self.clone(), state, held, done, task }
    }

    /// The renewing loop; the reason the lease was lost, or `None` when
    /// `finished` ended it.
    async fn renew(self, state: State, held: Held, stop: Trigger, mut finished: Shutdown) -> Option<String> {
        let mut renewed_at = Instant::now();
        loop {
            if finished.sleep_or_stop(self.config.renew_every()).await {
                return None;
            }
            // A database that stops answering (a partition, a frozen
            // server) leaves a query hanging without an error: its answer
            // is awaited no longer than the lease this instance can still
            // count on. The lease runs from before the renewal was sent:
            // the database's `now()` is no earlier.
            let asked_at = Instant::now();
            let renewal = state.renew_lead(&self.instance, held, self.config.lease());
            let answer = tokio::time::timeout_at(renewed_at + self.config.lease(), renewal)
                .await
                .unwrap_or_else(|_| Err(StateError::no_answer(&state, renewed_at.elapsed())));
            let lost = match answer {
                Ok(true) => {
                    renewed_at = asked_at;
                    let heartbeat = state.heartbeat(&self.instance, "active", Some(held));
                    let _ = tokio::time::timeout(self.config.renew_every(), heartbeat).await;
                    continue;
                }
                Ok(false) => {
                    let holder = state.lease_holder_of(held.slot).await.ok().flatten();
                    let by = holder.map_or_else(String::new, |holder| format!(": {} holds it with epoch {}", holder.name, holder.epoch));
                    format!("another instance took the lease over (this one held epoch {}){by}", held.epoch)
                }
                Err(error) if renewed_at.elapsed() >= self.config.lease() => {
                    format!("the lease could not be renewed for {:?} (a standby may have taken over): {error}", self.config.lease())
                }
                Err(error) => {
                    tracing::warn!(%error, "Cannot renew the lease; trying again before it runs out.");
                    continue;
                }
            };
            tracing::error!(instance = %self.instance, epoch = held.epoch, "This instance is no longer the active one: {lost}. Stopping its pipeline; nothing more is committed.");
            self.metrics.set_leader(false, 0);
            stop.fire();
            return Some(lost);
        }
    }
}

/// A lease being kept while the pipeline runs.
pub struct Kept {
    leadership: Leadership,
    state: State,
    held: Held,
    done: Trigger,
    task: Option<JoinHandle<Option<String>>>,
}

impl Kept {
    /// Stops renewing. Returns why the lease was lost, if it was; else lets
    /// it go, so that a standby takes over at once rather than after it runs
    /// out.
    pub async fn finish(self) -> Option<String> {
        self.done.fire();
        let task = self.task?;
        let lost = task.await.unwrap_or_else(|_| Some("the lease's renewing task failed".into()));
        if lost.is_none() {
            let name = &self.leadership.instance;
            if let Err(error) = self.state.release_lead(name, self.held).await {
                tracing::warn!(%error, "Cannot let the lease go; a standby takes over once it runs out.");
            }
            let _ = self.state.heartbeat(name, "stopped", None).await;
        }
        lost
    }
}
