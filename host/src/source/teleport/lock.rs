//! Locking users after repeated failed logins, as teleport-event-handler's
//! `lock-*` settings do: more than `lock-failed-attempts-count` failed
//! `user.login` events for one user and login within `lock-period` create
//! a Teleport lock through `UpsertLock`, named and worded as the original's.

use super::connect::describe_status;
use super::status::{Class, ErrorEvery, SLOW_RETRY, classify};
use crate::retry::{Backoff, Retry};
use crate::shutdown::Shutdown;
use ferry_proto::auth::auth_service_client::AuthServiceClient;
use ferry_proto::types::{LockSpecV2, LockTarget, LockV2, Metadata};
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// The message on every lock, as the event handler writes it.
pub const LOCK_MESSAGE: &str = "User is locked due to too many failed login attempts";
/// Attempts at `UpsertLock` before giving up on one lock after transient
/// failures (a refused identity is retried until shutdown).
const UPSERT_ATTEMPTS: u32 = 5;
/// Users (with logins) whose failures are tracked at most. A flood of
/// failed logins for made-up users must not grow ferry without bound; past
/// this, the users whose last failure is oldest are forgotten first.
pub const MAX_TRACKED: usize = 10_000;

/// Counts failed logins per user and login.
pub struct FailedLogins {
    allowed: usize,
    period: Duration,
    recent: HashMap<(String, String), VecDeque<SystemTime>>,
    locked_at: HashMap<(String, String), SystemTime>,
    max_tracked: usize,
    /// Observations since the last sweep of expired entries.
    since_sweep: usize,
    /// The bound was hit and said so once.
    warned: bool,
}

/// Removes the entries of `map` whose time is oldest until at most `keep`
/// are left; returns how many were removed.
fn evict_oldest<V>(map: &mut HashMap<(String, String), V>, keep: usize, time_of: impl Fn(&V) -> Option<SystemTime>) -> usize {
    let excess = map.len().saturating_sub(keep);
    if excess == 0 {
        return 0;
    }
    let mut times: Vec<SystemTime> = map.values().map(|value| time_of(value).unwrap_or(SystemTime::UNIX_EPOCH)).collect();
    times.sort_unstable();
    let cut = times[excess - 1];
    let mut left = excess;
    map.retain(|_, value| {
        let old = left > 0 && time_of(value).unwrap_or(SystemTime::UNIX_EPOCH) <= cut;
        if old {
            left -= 1;
        }
        !old
    });
    excess
}

/// Who to lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockTargetUser {
    /// The Teleport user.
    pub user: String,
    /// The login the failures were for (often empty for web logins).
    pub login: String,
}

/// The fields of a login event the count reads, borrowed from its JSON:
/// serde skips the rest without building it (every `user.login` event is
/// read here). A field of another type reads as absent, as before.
#[derive(Deserialize)]
struct Login<'a> {
    #[serde(borrow, default)]
    event: Option<Text<'a>>,
    #[serde(default)]
    success: Option<Flag>,
    #[serde(borrow, default)]
    user: Option<Text<'a>>,
    #[serde(borrow, default)]
    login: Option<Text<'a>>,
    #[serde(borrow, default)]
    time: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Text<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Other(IgnoredAny),
}

impl Text<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Text::Text(text) => Some(text),
            Text::Other(_) => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Other(IgnoredAny),
}

impl FailedLogins {
    /// Allows `allowed` failures within `period`.
    pub fn new(allowed: u32, period: Duration) -> FailedLogins {
        FailedLogins::bounded(allowed, period, MAX_TRACKED)
    }

    /// As [`FailedLogins::new`], tracking at most `max_tracked` users.
    pub fn bounded(allowed: u32, period: Duration, max_tracked: usize) -> FailedLogins {
        let max_tracked = max_tracked.max(1);
        FailedLogins {
            allowed: allowed as usize,
            period,
            recent: HashMap::new(),
            locked_at: HashMap::new(),
            max_tracked,
            since_sweep: 0,
            warned: false,
        }
    }

    /// Users (with logins) with failures or a lock still inside the period.
    pub fn tracked(&self) -> usize {
        self.recent.len().max(self.locked_at.len())
    }

    /// Forgets failures and locks older than the period as of `now` (the
    /// newest event time seen), then the oldest users past the bound. A
    /// sweep is a pass over the maps, so it runs once per `max_tracked`
    /// observations, or when a map is full: amortised O(1) per event.
    fn sweep(&mut self, now: SystemTime) {
        let period = self.period;
        let expired = |at: SystemTime| at + period <= now;
        self.recent.retain(|_, times| {
            while times.front().is_some_and(|&first| expired(first)) {
                times.pop_front();
            }
            !times.is_empty()
        });
        self.locked_at.retain(|_, at| !expired(*at));
        // Still full of recent failures (a flood of made-up users): forget
        // the oldest quarter, so that the next sweep is a quarter away.
        let keep = self.max_tracked - self.max_tracked / 4 - 1;
        let mut evicted = 0;
        if self.recent.len() >= self.max_tracked {
            evicted += evict_oldest(&mut self.recent, keep, |times| times.back().copied());
        }
        if self.locked_at.len() >= self.max_tracked {
            evicted += evict_oldest(&mut self.locked_at, keep, |at| Some(*at));
        }
        if evicted > 0 && !self.warned {
            self.warned = true;
            tracing::warn!(
                bound = self.max_tracked,
                "Too many users with recent failed logins to track; forgetting those whose last failure is oldest."
            );
        }
        self.since_sweep = 0;
    }

    /// Looks at one audit event; returns who to lock when it is a failed
    /// login past the threshold. A user is locked once per period, however
    /// many more failures follow. Failures older than the period (ferry
    /// catching up on old events) never lock anyone.
    pub fn observe(&mut self, json: &[u8], now: SystemTime) -> Option<LockTargetUser> {
        let event: Login<'_> = serde_json::from_slice(json).ok()?;
        if event.event.as_ref().and_then(Text::as_str)? != "user.login" || !matches!(event.success, Some(Flag::Bool(false))) {
            return None;
        }
        let text = |field: &Option<Text<'_>>| field.as_ref().and_then(Text::as_str).unwrap_or_default().to_owned();
        let time = event.time.as_ref().and_then(Text::as_str).and_then(|time| crate::units::parse_time(time).ok()).unwrap_or(now);
        if time + self.period < now {
            return None;
        }
        self.since_sweep += 1;
        if self.since_sweep >= self.max_tracked || self.recent.len() >= self.max_tracked || self.locked_at.len() >= self.max_tracked {
            self.sweep(now.max(time));
        }
        let key = (text(&event.user), text(&event.login));
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

/// Sends locks to Teleport, retrying each through the one retry policy: a
/// transient failure a few times, a refused identity slowly until shutdown
/// (with one ERROR line a minute: users are not being locked), anything else
/// not at all. A lock that cannot be created is logged, and ingestion goes on.
pub async fn run_locker(mut client: AuthServiceClient<Channel>, addr: String, mut locks: mpsc::Receiver<LockV2>, mut shutdown: Shutdown) {
    let backoff = Backoff { initial: Duration::from_millis(500), max: Duration::from_secs(10) };
    let mut errors = ErrorEvery::default();
    loop {
        let lock = tokio::select! {
            lock = locks.recv() => match lock {
                Some(lock) => lock,
                None => return,
            },
            () = shutdown.wait() => return,
        };
        let name = lock.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let user = lock.spec.as_ref().and_then(|s| s.target.as_ref()).map(|t| t.user.clone()).unwrap_or_default();
        let mut retry = Retry::new(backoff, shutdown.clone());
        loop {
            let Ok(answer) = shutdown.until(client.upsert_lock(lock.clone())).await else { return };
            let status = match answer {
                Ok(_) => {
                    errors.reset();
                    tracing::warn!(user = %user, lock = %name, "User login is locked after too many failed login attempts.");
                    break;
                }
                Err(status) => status,
            };
            let reason = describe_status(&addr, &status);
            let delay = match classify(status.code()) {
                Class::Transient if retry.attempts() + 1 < UPSERT_ATTEMPTS => retry.next_delay(None),
                Class::Unauthorized => {
                    let delay = retry.next_delay(Some(SLOW_RETRY));
                    if errors.due() {
                        tracing::error!(user = %user, lock = %name, "Cannot lock the user: {reason}; give ferry's Teleport user `lock` `create` and `update`. Retrying every {}s.", SLOW_RETRY.as_secs());
                    }
                    delay
                }
                Class::Transient | Class::Permanent => {
                    tracing::error!(user = %user, lock = %name, "Cannot lock the user: {reason}; giving up on this lock.");
                    break;
                }
            };
            if retry.sleep(delay).await.is_err() {
                return;
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
    fn odd_field_types_read_as_absent_and_escapes_are_read() {
        let now = SystemTime::now();
        let mut logins = FailedLogins::new(0, Duration::from_secs(60));
        // A success that is not `false`, or a type that is not a string, is not a failed login.
        for not_failed in [
            &br#"{"event":"user.login","success":"false","user":"eve"}"#[..],
            br#"{"event":"user.login","user":"eve"}"#,
            br#"{"event":["user.login"],"success":false,"user":"eve"}"#,
        ] {
            assert_eq!(logins.observe(not_failed, now), None);
        }
        // A user of another type counts as the empty user; an odd time as now; escapes are read.
        let odd = br#"{"event":"user.log\u0069n","success":false,"user":{"name":"eve"},"login":"r\u006fot","time":5,"x":[1,{"y":null}]}"#;
        assert_eq!(logins.observe(odd, now), Some(LockTargetUser { user: String::new(), login: "root".into() }));
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
    fn counters_older_than_the_period_are_evicted() {
        let now = SystemTime::now();
        let period = Duration::from_secs(60);
        let mut logins = FailedLogins::bounded(3, period, 100);
        for user in 0..90 {
            assert!(logins.observe(&failed(&format!("user-{user}"), now), now).is_none());
        }
        assert_eq!(logins.tracked(), 90);
        // A period later, ten more failures: the sweep after 100 observations
        // forgets the 90 users whose failures expired.
        let later = now + period + Duration::from_secs(1);
        for user in 0..10 {
            logins.observe(&failed(&format!("late-{user}"), later), later);
        }
        assert_eq!(logins.tracked(), 10, "only the users with recent failures are left");
        assert!(logins.recent.keys().all(|(user, _)| user.starts_with("late-")));
    }

    #[test]
    fn the_counters_are_bounded_and_forget_the_oldest_first() {
        let now = SystemTime::now();
        let mut logins = FailedLogins::bounded(3, Duration::from_secs(3600), 50);
        for user in 0..1000u64 {
            let at = now + Duration::from_millis(user);
            logins.observe(&failed(&format!("user-{user}"), at), at);
            assert!(logins.tracked() <= 50, "{} users tracked after {user}", logins.tracked());
        }
        assert!(logins.recent.contains_key(&("user-999".to_owned(), String::new())), "the newest user is kept");
        assert!(!logins.recent.contains_key(&("user-0".to_owned(), String::new())), "the oldest user is forgotten");
        // Locking still works for a user that keeps failing.
        let at = now + Duration::from_secs(2);
        let locks: Vec<_> = (0..4).filter_map(|_| logins.observe(&failed("eve", at), at)).collect();
        assert_eq!(locks.len(), 1);
        // Locks are evicted after the period too.
        let mut logins = FailedLogins::bounded(0, Duration::from_secs(60), 10);
        assert!(logins.observe(&failed("eve", now), now).is_some());
        assert_eq!(logins.locked_at.len(), 1);
        let later = now + Duration::from_secs(61);
        for user in 0..10 {
            logins.observe(&failed(&format!("u{user}"), later), later);
        }
        assert!(!logins.locked_at.contains_key(&("eve".to_owned(), String::new())), "an expired lock record is forgotten");
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
        assert!(
            lock_for(&LockTargetUser { user: "eve".into(), login: String::new() }, Duration::ZERO, now)
                .spec
                .expect("spec")
                .expires
                .is_none()
        );
    }
}
