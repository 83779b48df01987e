//! Locking users after repeated failed logins, as teleport-event-handler's
//! `lock-*` settings do: more than `lock-failed-attempts-count` failed
//! `user.login` events for one user and login within `lock-period` create
//! a Teleport lock through `UpsertLock`, named and worded as the original's.

use super::connect::describe_status;
use super::proto::auth::auth_service_client::AuthServiceClient;
use super::proto::types::{LockSpecV2, LockTarget, LockV2, Metadata};
use crate::shutdown::Shutdown;
use crate::retry::Backoff;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// The message on every lock, as the event handler writes it.
pub const LOCK_MESSAGE: &str = "User is locked due to too many failed login attempts";
/// Attempts at `UpsertLock` before giving up on one lock.
const UPSERT_ATTEMPTS: u32 = 5;

/// Counts failed logins per user and login.
pub struct FailedLogins {
    allowed: usize,
    period: Duration,
    recent: HashMap<(String, String), VecDeque<SystemTime>>,
    locked_at: HashMap<(String, String), SystemTime>,
}

/// Who to lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockTargetUser {
    /// The Teleport user.
    pub user: String,
    /// The login the failures were for (often empty for web logins).
    pub login: String,
}

impl FailedLogins {
    /// Allows `allowed` failures within `period`.
    pub fn new(allowed: u32, period: Duration) -> FailedLogins {
        FailedLogins { allowed: allowed as usize, period, recent: HashMap::new(), locked_at: HashMap::new() }
    }

    /// Looks at one audit event; returns who to lock when it is a failed
    /// login past the threshold. A user is locked once per period, however
    /// many more failures follow. Failures older than the period (ferry
    /// catching up on old events) never lock anyone.
    pub fn observe(&mut self, json: &[u8], now: SystemTime) -> Option<LockTargetUser> {
        let event: Value = serde_json::from_slice(json).ok()?;
        if event.get("event")?.as_str()? != "user.login" || event.get("success").and_then(Value::as_bool) != Some(false) {
            return None;
        }
        let text = |key: &str| event.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let time = event.get("time").and_then(Value::as_str).and_then(|t| humantime::parse_rfc3339_weak(t).or_else(|_| humantime::parse_rfc3339(t)).ok()).unwrap_or(now);
        if time + self.period < now {
            return None;
        }
        let key = (text("user"), text("login"));
        let window = self.recent.entry(key.clone()).or_default();
        window.push_back(time);
        while window.front().is_some_and(|&first| first + self.period <= time) {
            window.pop_front();
        }
        if window.len() <= self.allowed {
            return None;
        }
        if self.locked_at.get(&key).is_some_and(|&at| time < at + self.period) {
            return None;
        }
        self.locked_at.insert(key.clone(), time);
        Some(LockTargetUser { user: key.0, login: key.1 })
    }
}

/// The lock the event handler would create for `target`.
pub fn lock_for(target: &LockTargetUser, duration: Duration, now: SystemTime) -> LockV2 {
    LockV2 {
        kind: "lock".into(),
        sub_kind: String::new(),
        version: "v2".into(),
        metadata: Some(Metadata { name: format!("event-handler-auto-lock-{}-{}", target.user, target.login) }),
        spec: Some(LockSpecV2 {
            target: Some(LockTarget { user: target.user.clone(), login: target.login.clone(), ..Default::default() }),
            message: LOCK_MESSAGE.into(),
            expires: (!duration.is_zero()).then(|| (now + duration).into()),
        }),
    }
}

/// Sends locks to Teleport, retrying each a few times; a lock that cannot
/// be created is logged, and ingestion goes on.
pub async fn run_locker(mut client: AuthServiceClient<Channel>, addr: String, mut locks: mpsc::Receiver<LockV2>, mut shutdown: Shutdown) {
    let backoff = Backoff { initial: Duration::from_millis(500), max: Duration::from_secs(10) };
    while let Some(lock) = locks.recv().await {
        let name = lock.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let user = lock.spec.as_ref().and_then(|s| s.target.as_ref()).map(|t| t.user.clone()).unwrap_or_default();
        for attempt in 0..UPSERT_ATTEMPTS {
            match client.upsert_lock(lock.clone()).await {
                Ok(_) => {
                    tracing::warn!(user = %user, lock = %name, "User login is locked after too many failed login attempts.");
                    break;
                }
                Err(status) => {
                    let reason = describe_status(&addr, &status);
                    if attempt + 1 == UPSERT_ATTEMPTS {
                        tracing::error!(user = %user, lock = %name, "Cannot lock the user: {reason}; giving up on this lock.");
                    } else if shutdown.sleep_or_stop(backoff.delay(attempt)).await {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(user: &str, at: SystemTime) -> Vec<u8> {
        let time = humantime::format_rfc3339_millis(at);
        format!(r#"{{"event":"user.login","success":false,"user":"{user}","time":"{time}"}}"#).into_bytes()
    }

    #[test]
    fn the_failure_past_the_threshold_locks_once_per_period() {
        let now = SystemTime::now();
        let mut logins = FailedLogins::new(3, Duration::from_secs(60));
        let locks: Vec<_> = (0..6).filter_map(|i| logins.observe(&failed("eve", now + Duration::from_secs(i)), now)).collect();
        assert_eq!(locks, [LockTargetUser { user: "eve".into(), login: String::new() }], "the 4th failure locks, later ones do not");
        assert_eq!(logins.observe(&failed("bob", now), now), None, "another user has a count of its own");
    }

    #[test]
    fn old_and_successful_logins_do_not_count() {
        let now = SystemTime::now();
        let mut logins = FailedLogins::new(1, Duration::from_secs(60));
        let old = now - Duration::from_secs(3600);
        assert!((0..5).all(|_| logins.observe(&failed("eve", old), now).is_none()));
        let ok = br#"{"event":"user.login","success":true,"user":"eve"}"#;
        assert!((0..5).all(|_| logins.observe(ok, now).is_none()));
    }

    #[test]
    fn failures_spread_beyond_the_period_do_not_lock() {
        let now = SystemTime::now();
        let mut logins = FailedLogins::new(1, Duration::from_secs(60));
        assert!(logins.observe(&failed("eve", now), now + Duration::from_secs(1)).is_none());
        let later = now + Duration::from_secs(61);
        assert!(logins.observe(&failed("eve", later), later).is_none(), "the first failure left the window");
    }

    #[test]
    fn the_lock_is_named_and_worded_as_the_event_handlers() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let lock = lock_for(&LockTargetUser { user: "eve".into(), login: "root".into() }, Duration::from_secs(600), now);
        assert_eq!(lock.metadata.expect("metadata").name, "event-handler-auto-lock-eve-root");
        let spec = lock.spec.expect("spec");
        assert_eq!(spec.message, LOCK_MESSAGE);
        assert_eq!(spec.target.as_ref().map(|t| (t.user.as_str(), t.login.as_str())), Some(("eve", "root")));
        assert_eq!(spec.expires.map(|t| t.seconds), Some(1_700_000_600));
        assert_eq!((lock.kind.as_str(), lock.version.as_str()), ("lock", "v2"));
        assert!(lock_for(&LockTargetUser { user: "eve".into(), login: String::new() }, Duration::ZERO, now).spec.expect("spec").expires.is_none());
    }
}
