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
//! With `slots = N` (N > 1) a deployment has N leases, one per slot: `active`
//! (slot 0, whose cursor is the one the event handler's import settles) and
//! `slot-1` … `slot-{N-1}`; an operator's command takes them all. Each slot has
//! its own epoch, and the fence checks a write against the lease it names
//! (`ferry.lease`), so N instances run at once and each is fenced alone.
//!
//! Each instance also keeps a row in `instances` (role, lease, epoch, last
//! seen) for `ferry status`.

use super::backend::Pool;
use super::{State, StateError};
use serde::Serialize;
use std::time::Duration;

/// The most slots a deployment may have.
pub const MOST_SLOTS: u32 = 64;

/// The name of slot `slot`'s lease: `active` for slot 0 (the name a
/// deployment of one slot always had), `slot-K` for the others.
pub fn lease_name(slot: u32) -> String {
    if slot == 0 { "active".to_owned() } else { format!("slot-{slot}") }
}

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
    /// How many instances run at once, each on its own share of the export
    /// chunks (a slot); the others stand by for any slot. Default 1. More
    /// than one needs PostgreSQL and the export engine.
    pub slots: u32,
}

impl Default for LeadershipConfig {
    fn default() -> Self {
        LeadershipConfig { instance: None, lease: crate::units::ConfigDuration(Duration::from_secs(15)), slots: 1 }
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
    /// The slot whose lease it is (0: `active`).
    pub slot: u32,
    /// The lease's epoch: one more than the holder before.
    pub epoch: i64,
}

impl Held {
    /// What an instance on SQLite holds: the one slot, no epoch.
    pub const ALONE: Held = Held { slot: 0, epoch: 0 };
}

/// Who holds a lease now, as a standby sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    /// The lease (`active`, `slot-K`).
    pub lease: String,
    /// The holding instance.
    pub name: String,
    /// Its epoch.
    pub epoch: i64,
    /// Seconds until it expires, by the database's clock (negative: expired).
    pub expires_in: f64,
}

/// One instance of the deployment, for `ferry status`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Instance {
    /// Its name (`[leadership] instance`).
    pub name: String,
    /// `active`, `standby` or `stopped`.
    pub role: String,
    /// The epoch of its lease while active.
    pub epoch: Option<i64>,
    /// The lease it holds while active (`active`, `slot-K`).
    pub lease: Option<String>,
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

    /// Takes a free slot's lease for `instance`, trying slot 0 first:
    /// `None` when another instance holds every one of the `slots`.
    pub async fn try_lead_any(&self, instance: &str, lease: Duration, slots: u32) -> Result<Option<Held>, StateError> {
        for slot in 0..slots.max(1) {
            if let Some(held) = self.try_lead(instance, lease, slot).await? {
                return Ok(Some(held));
            }
        }
        Ok(None)
    }

    /// Takes slot `slot`'s lease for `instance` if nobody holds it or its
    /// holder let it expire; `None` when another instance holds it. On
    /// success every later write of this state carries the new epoch.
    pub async fn try_lead(&self, instance: &str, lease: Duration, slot: u32) -> Result<Option<Held>, StateError> {
        let Pool::Postgres(pool) = self.pool() else { return Ok(Some(Held::ALONE)) };
        let epoch: Option<i64> = sqlx::query_scalar(
            "INSERT INTO leases (name, holder, epoch, expires_at) VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond')
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, epoch = leases.epoch + 1,
                 expires_at = excluded.expires_at, taken_at = now()
             WHERE leases.expires_at < now()
             RETURNING epoch",
        )
        .bind(lease_name(slot))
        .bind(instance)
        .bind(millis(lease))
        .fetch_optional(pool)
        .await
        .map_err(|err| self.error(err))?;
        let held = epoch.map(|epoch| Held { slot, epoch });
        if let Some(held) = held {
            self.fence_with(held);
        }
        Ok(held)
    }

    /// Takes every lease of the deployment for `command`, an operator's
    /// command that must not run beside an active instance (it copies or
    /// moves a position), for ten minutes at most; refused, naming an active
    /// instance, while one runs (the leases taken are let go again). `None`
    /// on SQLite, whose storage lock does the same. Let it go with
    /// [`State::release_all`]; writes carry slot 0's epoch.
    pub async fn hold_still(&self, command: &str) -> Result<Option<Held>, StateError> {
        let Pool::Postgres(pool) = self.pool() else { return Ok(None) };
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM leases WHERE name <> 'active' ORDER BY name")
            .fetch_all(pool)
            .await
            .map_err(|err| self.error(err))?;
        let others: Vec<u32> = names.iter().filter_map(|name| slot_of_lease(name)).collect();
        let mut taken = Vec::new();
        for slot in std::iter::once(0).chain(others) {
            match self.try_lead(command, Duration::from_secs(600), slot).await? {
                Some(held) => taken.push(held),
                None => {
                    for held in taken {
                        let _ = self.release_lead(command, held).await;
                    }
                    let holder = self.lease_holder_of(slot).await?.map_or_else(|| "an instance".to_owned(), |holder| holder.name);
                    return Err(StateError::at(
                        self.location(),
                        format!("{holder} is active on it; stop every instance first (`{command}` must not run beside one)"),
                    ));
                }
            }
        }
        let first = taken.remove(0);
        self.fence_with(first);
        Ok(Some(first))
    }

    /// Lets go of every lease `command` took with [`State::hold_still`].
    pub async fn release_all(&self, command: &str) -> Result<(), StateError> {
        let Pool::Postgres(pool) = self.pool() else { return Ok(()) };
        sqlx::query("UPDATE leases SET expires_at = now() - interval '1 millisecond' WHERE holder = $1")
            .bind(command)
            .execute(pool)
            .await
            .map_err(|err| self.error(err))?;
        Ok(())
    }

    /// Renews the lease `held`; false when it is no longer this instance's
    /// (another took over): the caller must step down.
    pub async fn renew_lead(&self, instance: &str, held: Held, lease: Duration) -> Result<bool, StateError> {
        let Pool::Postgres(pool) = self.pool() else { return Ok(true) };
        let renewed = sqlx::query(
            "UPDATE leases SET expires_at = now() + $3 * interval '1 millisecond'
             WHERE name = $1 AND holder = $2 AND epoch = $4",
        )
        .bind(lease_name(held.slot))
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
            .bind(lease_name(held.slot))
            .bind(instance)
            .bind(held.epoch)
            .execute(pool)
            .await
            .map_err(|err| self.error(err))?;
        Ok(())
    }

    /// Who holds slot 0's lease, if anyone ever took it.
    pub async fn lease_holder(&self) -> Result<Option<Holder>, StateError> {
        self.lease_holder_of(0).await
    }

    /// Who holds slot `slot`'s lease, if anyone ever took it.
    pub async fn lease_holder_of(&self, slot: u32) -> Result<Option<Holder>, StateError> {
        let name = lease_name(slot);
        Ok(self.leases().await?.into_iter().find(|holder| holder.lease == name))
    }

    /// Every lease ever taken, slot 0 first: who holds it, for `ferry status`.
    pub async fn leases(&self) -> Result<Vec<Holder>, StateError> {
        let Pool::Postgres(pool) = self.pool() else { return Ok(Vec::new()) };
        read_leases(pool).await.map_err(|err| self.error(err))
    }

    /// Refuses `slots` when the deployment ran with more: the slots above
    /// would keep their chunks and recordings unread. (Fewer running than
    /// ever ran is refused; more is taken: new slots start from where
    /// `start-time` says, and re-read the chunks of the dates still
    /// tracked that now hash to them.)
    pub async fn check_slots(&self, slots: u32) -> Result<(), StateError> {
        let most = self.leases().await?.iter().filter_map(|holder| slot_of_lease(&holder.lease)).max();
        match most {
            Some(most) if most >= slots => Err(StateError::at(
                self.location(),
                format!(
                    "this deployment ran with {} slots (lease {} exists); [leadership] slots = {slots} would leave the chunks and recordings of the others unread: set slots to {} or more",
                    most + 1,
                    lease_name(most),
                    most + 1
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Records that `instance` is alive in `role` (`active`, `standby`,
    /// `stopped`), holding `held` while active.
    pub async fn heartbeat(&self, instance: &str, role: &str, held: Option<Held>) -> Result<(), StateError> {
        let Pool::Postgres(pool) = self.pool() else { return Ok(()) };
        sqlx::query(
            "INSERT INTO instances (name, role, epoch, version, lease) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) DO UPDATE SET role = excluded.role, epoch = excluded.epoch,
                 version = excluded.version, lease = excluded.lease, seen_at = now()",
        )
        .bind(instance)
        .bind(role)
        .bind(held.map(|held| held.epoch))
        .bind(env!("CARGO_PKG_VERSION"))
        .bind(held.map(|held| lease_name(held.slot)))
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
        sqlx::query_as(
            "SELECT name, role, epoch, lease, version,
                 to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS started_at,
                 to_char(seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS seen_at,
                 EXTRACT(EPOCH FROM (now() - seen_at))::float8 AS seen_ago
             FROM instances ORDER BY seen_at DESC, name",
        )
        .fetch_all(pool)
        .await
        .map_err(|err| self.error(err))
    }
}

/// Connects to the PostgreSQL state at `location` without changing it, for
/// `ferry check --probe`: what the database says of the lease.
pub async fn probe(location: &super::Location) -> Result<String, String> {
    use sqlx::{ConnectOptions, Connection};
    let super::Location::Postgres(postgres) = location else { return Ok("a SQLite file, nothing to connect to".into()) };
    let mut connection =
        postgres.options().map_err(|err| err.to_string())?.connect().await.map_err(|err| format!("cannot connect: {err}"))?;
    let read = async {
        let tables: Option<String> = sqlx::query_scalar("SELECT to_regclass('leases')::text").fetch_one(&mut connection).await?;
        if tables.is_none() {
            return Ok(
                "connected; no ferry has run on it yet (its tables are made at the first start, or by `ferry state migrate`)".to_owned()
            );
        }
        let said: Vec<String> = read_leases(&mut connection)
            .await?
            .into_iter()
            .map(|Holder { lease, name, epoch, expires_in }| {
                let on = if lease == "active" { String::new() } else { format!(" on {lease}") };
                if expires_in >= 0.0 {
                    format!("{name} is active{on} (epoch {epoch})")
                } else {
                    format!("the lease{on} of {name} (epoch {epoch}) ran out: no instance is active{on}")
                }
            })
            .collect();
        Ok(if said.is_empty() { "connected; no instance has led yet".to_owned() } else { format!("connected; {}", said.join("; ")) })
    };
    let said = read.await.map_err(|err: sqlx::Error| err.to_string());
    let _ = connection.close().await;
    said
}

/// Every lease ever taken, slot 0 first, by its holder and the database's
/// clock.
async fn read_leases<'c>(executor: impl sqlx::PgExecutor<'c>) -> Result<Vec<Holder>, sqlx::Error> {
    let rows: Vec<(String, String, i64, f64)> =
        sqlx::query_as("SELECT name, holder, epoch, EXTRACT(EPOCH FROM (expires_at - now()))::float8 FROM leases")
            .fetch_all(executor)
            .await?;
    let mut holders: Vec<Holder> =
        rows.into_iter().map(|(lease, name, epoch, expires_in)| Holder { lease, name, epoch, expires_in }).collect();
    holders.sort_by_key(|holder| slot_of_lease(&holder.lease).unwrap_or(u32::MAX));
    Ok(holders)
}

/// The slot a lease's name is of; `None` for a name no slot has.
fn slot_of_lease(name: &str) -> Option<u32> {
    if name == "active" {
        return Some(0);
    }
    name.strip_prefix("slot-")?.parse().ok().filter(|slot| *slot > 0)
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
