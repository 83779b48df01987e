//! Leadership on PostgreSQL: one instance active, the others standing by.
//!
//! The lease is one row (`leases`, name `active`): its holder, its epoch and
//! when it expires, judged by the database's clock alone, so instances whose
//! clocks disagree still agree on it. The active instance renews it every
//! third of its length; a standby tries to take it every so often and
//! succeeds only once it has expired, bumping the epoch. From then on the
//! database's fence (see the `init` migration) refuses every write carrying
//! the old epoch, so an instance that was paused past its lease (SIGSTOP, a
//! long GC, a partition from the database) and comes back cannot move a
//! cursor or write a dead letter: its first write fails, and it steps down.
//!
//! Each instance also keeps a row in `instances` (role, epoch, last seen) for
//! `ferry status`.

use super::backend::Pool;
use super::{State, StateError};
use serde::Serialize;
use std::time::Duration;

/// The name of the one lease a deployment has.
const LEASE: &str = "active";

/// `[leadership]`: how instances sharing a PostgreSQL state take turns.
#[derive(Debug, Clone, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct LeadershipConfig {
    /// This instance's name, unique among the instances of a deployment.
    /// Default: the host name (a pod's name in Kubernetes).
    pub instance: Option<String>,
    /// How long the active instance's lease lasts without a renewal: a
    /// standby takes over at most this long after the active instance
    /// stopped (plus one try interval). Default `"15s"`.
    pub lease: crate::units::ConfigDuration,
}

impl Default for LeadershipConfig {
    fn default() -> Self {
        LeadershipConfig { instance: None, lease: crate::units::ConfigDuration(Duration::from_secs(15)) }
    }
}

impl LeadershipConfig {
    /// This instance's name.
    pub fn instance_name(&self) -> String {
        self.instance.clone().unwrap_or_else(super::lock::host_name)
    }

    /// The lease's length, at least a second.
    pub fn lease(&self) -> Duration {
        self.lease.0.max(Duration::from_secs(1))
    }

    /// How often the holder renews (a third of the lease: two renewals may
    /// fail before it is lost) and a standby tries.
    pub fn renew_every(&self) -> Duration {
        self.lease() / 3
    }
}

/// The lease this instance holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The lease's epoch: one more than the holder before.
    pub epoch: i64,
}

/// Who holds the lease now, as a standby sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    /// The holding instance.
    pub name: String,
    /// Its epoch.
    pub epoch: i64,
    /// Seconds until it expires, by the database's clock (negative: expired).
    pub expires_in: f64,
}

/// One instance of the deployment, for `ferry status`.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    /// Its name (`[leadership] instance`).
    pub name: String,
    /// `active`, `standby` or `stopped`.
    pub role: String,
    /// The epoch of its lease while active.
    pub epoch: Option<i64>,
    /// The ferry version it runs.
    pub version: String,
    /// When it last started (UTC, RFC 3339).
    pub started_at: String,
    /// When it was last heard from (UTC, RFC 3339).
    pub seen_at: String,
    /// Seconds since it was last seen, by the database's clock.
    pub seen_ago: f64,
}

impl State {
    /// True when this state is shared by instances that take turns (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.pool(), Pool::Postgres(_))
    }

    /// Takes the lease for `instance` if nobody holds it or its holder let
    /// it expire; `None` when another instance holds it. On success every
    /// later write of this state carries the new epoch.
    pub async fn try_lead(&self, instance: &str, lease: Duration) -> Result<Option<Held>, StateError> {
        let Pool::Postgres(pool) = self.pool() else { return Ok(Some(Held { epoch: 0 })) };
        let epoch: Option<i64> = sqlx::query_scalar(
            "INSERT INTO leases (name, holder, epoch, expires_at) VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond')
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, epoch = leases.epoch + 1,
                 expires_at = excluded.expires_at, taken_at = now()
             WHERE leases.expires_at < now()
             RETURNING epoch",
        )
        .bind(LEASE)
        .bind(instance)
        .bind(millis(lease))
        .fetch_optional(pool)
        .await
        .map_err(|err| self.error(err))?;
        if let Some(epoch) = epoch {
            self.fence_with(epoch);
        }
        Ok(epoch.map(|epoch| Held { epoch }))
    }

    /// Renews the lease `held`; false when it is no longer this instance's
    /// (another took over): the caller must step down.
    pub async fn renew_lead(&self, instance: &str, held: Held, lease: Duration) -> Result<bool, StateError> {
        let Pool::Postgres(pool) = self.pool() else { return Ok(true) };
        let renewed = sqlx::query(
            "UPDATE leases SET expires_at = now() + $3 * interval '1 millisecond'
             WHERE name = $1 AND holder = $2 AND epoch = $4",
        )
        .bind(LEASE)
        .bind(instance)
        .bind(millis(lease))
        .bind(held.epoch)
        .execute(pool)
        .await
        .map_err(|err| self.error(err))?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Lets the lease go at a clean shutdown, so that a standby takes over
    /// at once rather than after the lease runs out.
    pub async fn release_lead(&self, instance: &str, held: Held) -> Result<(), StateError> {
        let Pool::Postgres(pool) = self.pool() else { return Ok(()) };
        sqlx::query("UPDATE leases SET expires_at = now() - interval '1 millisecond' WHERE name = $1 AND holder = $2 AND epoch = $3")
            .bind(LEASE)
            .bind(instance)
            .bind(held.epoch)
            .execute(pool)
            .await
            .map_err(|err| self.error(err))?;
        Ok(())
    }

    /// Who holds the lease, if anyone ever took it.
    pub async fn lease_holder(&self) -> Result<Option<Holder>, StateError> {
        let Pool::Postgres(pool) = self.pool() else { return Ok(None) };
        let row: Option<(String, i64, f64)> =
            sqlx::query_as("SELECT holder, epoch, EXTRACT(EPOCH FROM (expires_at - now()))::float8 FROM leases WHERE name = $1")
                .bind(LEASE)
                .fetch_optional(pool)
                .await
                .map_err(|err| self.error(err))?;
        Ok(row.map(|(name, epoch, expires_in)| Holder { name, epoch, expires_in }))
    }

    /// Records that `instance` is alive in `role` (`active`, `standby`,
    /// `stopped`).
    pub async fn heartbeat(&self, instance: &str, role: &str, epoch: Option<i64>) -> Result<(), StateError> {
        let Pool::Postgres(pool) = self.pool() else { return Ok(()) };
        sqlx::query(
            "INSERT INTO instances (name, role, epoch, version) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET role = excluded.role, epoch = excluded.epoch,
                 version = excluded.version, seen_at = now()",
        )
        .bind(instance)
        .bind(role)
        .bind(epoch)
        .bind(env!("CARGO_PKG_VERSION"))
        .execute(pool)
        .await
        .map_err(|err| self.error(err))?;
        Ok(())
    }

    /// Marks `instance` as just started (for `ferry status`).
    pub async fn instance_started(&self, instance: &str) -> Result<(), StateError> {
        self.heartbeat(instance, "standby", None).await?;
        let Pool::Postgres(pool) = self.pool() else { return Ok(()) };
        sqlx::query("UPDATE instances SET started_at = now() WHERE name = $1")
            .bind(instance)
            .execute(pool)
            .await
            .map_err(|err| self.error(err))?;
        Ok(())
    }

    /// Every instance that ran on this database, most recently seen first.
    pub async fn instances(&self) -> Result<Vec<Instance>, StateError> {
        let Pool::Postgres(pool) = self.pool() else { return Ok(Vec::new()) };
        let rows: Vec<InstanceRow> = sqlx::query_as(
            "SELECT name, role, epoch, version,
                 to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                 to_char(seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                 EXTRACT(EPOCH FROM (now() - seen_at))::float8
             FROM instances ORDER BY seen_at DESC, name",
        )
        .fetch_all(pool)
        .await
        .map_err(|err| self.error(err))?;
        Ok(rows
            .into_iter()
            .map(|(name, role, epoch, version, started_at, seen_at, seen_ago)| Instance {
                name,
                role,
                epoch,
                version,
                started_at,
                seen_at,
                seen_ago,
            })
            .collect())
    }
}

/// A row of `instances` as `State::instances` reads it: name, role, epoch,
/// version, started and seen (RFC 3339), seconds since seen.
type InstanceRow = (String, String, Option<i64>, String, String, String, f64);

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
