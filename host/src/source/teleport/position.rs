//! Which stored position is this cluster's.
//!
//! The audit log belongs to the cluster, not to the address ferry reaches
//! it at: the position is stored under `teleport:<cluster>` (the cluster
//! name of the identity's CA). Before the first read, a cluster with no
//! position of its own gets, in this order:
//!
//! 1. a position an older ferry stored under the configured address
//!    (`teleport:<addr>`), moved to the cluster's key;
//! 2. else the only position an older ferry stored under another address
//!    (the address changed with the upgrade), moved likewise; several
//!    cannot be told apart, so ferry refuses and names them and the command
//!    that chooses (`ferry state adopt-position`);
//! 3. else the event handler's saved state in the storage folder
//!    ([`super::handover`]): the folder for the configured address, else
//!    the only one; several are refused, naming them and
//!    `ferry state import-event-handler`;
//! 4. else a fresh start at `start-time` (or now).
//!
//! Each move says so in one INFO line. Positions keyed by cluster carry a
//! row in `position_origins`; an older ferry's, keyed by address, do not.
//! A position of another cluster is never taken.

use super::handover::{self, Found, Handover};
use crate::state::{Origin, State, TakeOver};
use crate::units::format_time;
use std::path::Path;
use std::time::SystemTime;

/// The key a cluster's position is stored under.
pub fn cluster_key(cluster: &str) -> String {
    format!("teleport:{cluster}")
}

/// The key an older ferry stored the position under: by address.
pub fn address_key(addr: &str) -> String {
    format!("teleport:{addr}")
}

/// What a source settling its position knows.
pub struct Settle<'a> {
    /// `teleport:<cluster>`.
    pub key: &'a str,
    /// The configured address.
    pub addr: &'a str,
    /// ferry's storage folder (where the event handler kept its folders).
    pub storage: Option<&'a Path>,
    /// The config file, for the commands a refusal suggests.
    pub config_file: &'a Path,
    /// The configured `start-time`, if any.
    pub start_time: Option<SystemTime>,
}

/// Finds this cluster's position (see the module's doc) and stores it
/// under [`Settle::key`]; nothing when it has one. A refusal is one line.
pub async fn settle(state: &State, settle: &Settle<'_>) -> Result<(), String> {
    let fail = |err: crate::state::StateError| err.to_string();
    if state.has_position(settle.key).await.map_err(fail)? {
        return Ok(());
    }
    let stored = address_keyed(state, settle.key).await.map_err(fail)?;
    let own_address = address_key(settle.addr);
    if stored.contains(&own_address) {
        state.move_position(&own_address, settle.key).await.map_err(fail)?;
        tracing::info!(
            "Teleport position migrated from {own_address} (the address key an older ferry used) to {} (the cluster's).",
            settle.key
        );
        return Ok(());
    }
    match stored.as_slice() {
        [] => {}
        [only] => {
            state.move_position(only, settle.key).await.map_err(fail)?;
            tracing::info!(
                "Teleport position adopted from {only}, the only one an older ferry stored (under another address); it is now {}'s.",
                settle.key
            );
            return Ok(());
        }
        several => {
            return Err(format!(
                "state database {}: Teleport positions are stored under other addresses ({}) and none under {} or {own_address}; \
                 say which one is this cluster's with `ferry state adopt-position --config {} KEY`",
                state.location(),
                several.join(", "),
                settle.key,
                settle.config_file.display()
            ));
        }
    }
    let Some(storage) = settle.storage else { return Ok(()) };
    let (dir, whose) = match handover::find(storage, settle.addr) {
        Found::Nothing => return Ok(()),
        Found::ForThisAddress(dir) => (dir, "this address's"),
        Found::OnlyOther(dir) => (dir, "another address's, the only one there"),
        Found::Several(dirs) => {
            let names: Vec<String> = dirs.iter().map(|dir| dir.display().to_string()).collect();
            return Err(format!(
                "storage {}: the event handler's state is there for several addresses ({}) and none for {}; \
                 take this cluster's over with `ferry state import-event-handler --config {} DIR`",
                storage.display(),
                names.join(", "),
                settle.addr,
                settle.config_file.display()
            ));
        }
    };
    let handover = take_over(state, settle, &dir).await?;
    tracing::info!(
        "Took over the event handler's position from {} ({whose}): {handover}; its files are left as they are (a rollback stays possible).",
        dir.display()
    );
    Ok(())
}

/// Reads the event handler's folder `dir` and stores its position under
/// the cluster's key, replacing what is there. Refuses a `start-time` that
/// differs from the event handler's, as the event handler does.
pub async fn take_over(state: &State, settle: &Settle<'_>, dir: &Path) -> Result<Handover, String> {
    let handover = handover::read(dir)?;
    if let (Some(wanted), Some(started)) = (settle.start_time, &handover.start_time)
        && format_time(wanted) != *started
    {
        return Err(format!(
            "{}: the event handler started from {started}, and `start-time` is {}; a start time cannot change once ingestion started \
             (remove `start-time` or set it to {started})",
            dir.join("start_time").display(),
            format_time(wanted)
        ));
    }
    let position = handover.cursor.as_ref().map(super::cursor::Cursor::encode);
    let from = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let take = TakeOver {
        source: settle.key,
        position: position.as_deref(),
        start_time: handover.start_time.as_deref(),
        origin: Origin::Imported { from: from.display().to_string() },
    };
    state.take_over(&take).await.map_err(|err| err.to_string())?;
    Ok(handover)
}

/// The Teleport positions an older ferry stored by address: `teleport:`
/// keys with no recorded origin, not `key`, without their `#start-time`.
async fn address_keyed(state: &State, key: &str) -> Result<Vec<String>, crate::state::StateError> {
    let keyed_by_cluster: Vec<String> = state.position_origins().await?.into_iter().map(|origin| origin.source).collect();
    let mut stored: Vec<String> = state
        .cursors()
        .await?
        .into_iter()
        .map(|cursor| cursor.source.split_once('#').map_or(cursor.source.clone(), |(base, _)| base.to_owned()))
        .filter(|source| source.starts_with("teleport:") && source != key && !keyed_by_cluster.contains(source))
        .collect();
    stored.sort();
    stored.dedup();
    Ok(stored)
}

/// Records a position ferry starts itself (none stored, none taken over)
/// and says so in one line; other clusters' positions in the database are
/// named, in case the cluster was renamed (they are not taken: the audit
/// log of another cluster is another log).
pub async fn started_afresh(state: &State, key: &str, start: &str) -> Result<(), crate::state::StateError> {
    if state.cursor(key).await?.is_some() {
        // A cursor taken over without a start time: it has its origin.
        return Ok(());
    }
    state.set_origin(key, &Origin::Own).await?;
    let others: Vec<String> =
        state.position_origins().await?.into_iter().map(|origin| origin.source).filter(|source| source != key).collect();
    if others.is_empty() {
        tracing::info!("No Teleport position stored for {key}: reading from {start}.");
    } else {
        tracing::warn!(
            "No Teleport position stored for {key}: reading from {start}. The database holds positions of other clusters ({});              if this cluster was one of them under another name, stop ferry and run `ferry state adopt-position KEY`.",
            others.join(", ")
        );
    }
    Ok(())
}

/// `ferry state adopt-position KEY`: moves the position stored under `old`
/// to `key`, which must have none.
pub async fn adopt(state: &State, key: &str, old: &str) -> Result<String, String> {
    let fail = |err: crate::state::StateError| err.to_string();
    if old == key {
        return Err(format!("{old} is already this cluster's key"));
    }
    if !state.has_position(old).await.map_err(fail)? {
        let stored = address_keyed(state, key).await.map_err(fail)?;
        return Err(format!("state database {}: nothing is stored under {old} (stored by address: {})", state.location(), list(&stored)));
    }
    if state.has_position(key).await.map_err(fail)? {
        return Err(format!("state database {}: {key} already holds this cluster's position; it is kept", state.location()));
    }
    state.move_position(old, key).await.map_err(fail)?;
    Ok(format!("{}: the position stored under {old} is now {key}'s; the next `ferry start` resumes from it.", state.location()))
}

fn list(keys: &[String]) -> String {
    if keys.is_empty() { "none".to_owned() } else { keys.join(", ") }
}

/// `ferry state import-event-handler DIR`: takes `dir` over on purpose;
/// refused when the cluster has a position, unless `replace`.
pub async fn import(state: &State, settle: &Settle<'_>, dir: &Path, replace: bool) -> Result<String, String> {
    if !handover::holds_state(dir) {
        return Err(format!(
            "{}: no event handler state here (start_time, cursor, id, window_time, session…, missing_recording…, cursor_v2/); \
             give the `<storage>/<host>_<port>` folder",
            dir.display()
        ));
    }
    if !replace && state.has_position(settle.key).await.map_err(|err| err.to_string())? {
        return Err(format!(
            "state database {}: {} already holds this cluster's position; add --replace to replace it with {}'s",
            state.location(),
            settle.key,
            dir.display()
        ));
    }
    let handover = take_over(state, settle, dir).await?;
    Ok(format!("Took over the event handler's position from {}: {handover}; stored as {}.", dir.display(), settle.key))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn open_state() -> (tempfile::TempDir, State) {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(&dir.path().join("ferry.db")).await.expect("open");
        (dir, state)
    }

    fn config<'a>(storage: Option<&'a Path>) -> Settle<'a> {
        Settle { key: "teleport:c", addr: "proxy:443", storage, config_file: Path::new("ferry.toml"), start_time: None }
    }

    async fn store(state: &State, key: &str) {
        state.commit_cursor(key, r#"{"audit":{"engine":"start"}}"#).await.expect("commit");
        state.commit_cursor(&format!("{key}#start-time"), "2024-05-01T00:00:00Z").await.expect("commit");
    }

    #[tokio::test]
    async fn the_address_key_of_the_configured_address_is_migrated_before_any_other() {
        let (_dir, state) = open_state().await;
        store(&state, "teleport:auth:3025").await;
        store(&state, "teleport:proxy:443").await;
        settle(&state, &config(None)).await.expect("settled");
        assert!(state.has_position("teleport:c").await.expect("read"));
        assert!(!state.has_position("teleport:proxy:443").await.expect("read"));
        assert!(state.has_position("teleport:auth:3025").await.expect("read"), "the other is left alone");
        // Settled once: a second start changes nothing.
        settle(&state, &config(None)).await.expect("settled");
        assert!(state.has_position("teleport:auth:3025").await.expect("read"));
    }

    #[tokio::test]
    async fn a_single_other_address_is_adopted_several_are_refused_and_another_clusters_never_taken() {
        let (_dir, state) = open_state().await;
        store(&state, "teleport:other-cluster").await;
        state.set_origin("teleport:other-cluster", &Origin::Own).await.expect("origin");
        store(&state, "teleport:auth:3025").await;
        store(&state, "teleport:auth2:3025").await;
        let err = settle(&state, &config(None)).await.expect_err("several");
        assert!(err.contains("teleport:auth:3025") && err.contains("teleport:auth2:3025"), "{err}");
        assert!(err.contains("ferry state adopt-position"), "{err}");
        assert!(!err.contains("other-cluster"), "a cluster-keyed position is not a candidate: {err}");
        let said = adopt(&state, "teleport:c", "teleport:auth2:3025").await.expect("adopted");
        assert!(said.contains("teleport:auth2:3025"), "{said}");
        settle(&state, &config(None)).await.expect("has its own now");
        assert!(adopt(&state, "teleport:c", "teleport:auth:3025").await.expect_err("has one").contains("already holds"));

        let (_dir, state) = open_state().await;
        store(&state, "teleport:auth:3025").await;
        settle(&state, &config(None)).await.expect("the only one");
        assert!(state.has_position("teleport:c").await.expect("read"));
    }

    #[tokio::test]
    async fn a_fresh_start_is_ferrys_own_but_a_cursor_taken_over_keeps_its_origin() {
        let (_dir, state) = open_state().await;
        started_afresh(&state, "teleport:c", "2024-05-01T00:00:00Z").await.expect("recorded");
        assert_eq!(state.position_origins().await.expect("origins")[0].kind, "own");
        let take =
            TakeOver { source: "teleport:d", position: Some("{}"), start_time: None, origin: Origin::Imported { from: "/s/x_1".into() } };
        state.take_over(&take).await.expect("taken");
        started_afresh(&state, "teleport:d", "2024-05-01T00:00:00Z").await.expect("recorded");
        let kinds: Vec<String> = state.position_origins().await.expect("origins").into_iter().map(|origin| origin.kind).collect();
        assert_eq!(kinds, ["own", "imported"]);
    }

    #[tokio::test]
    async fn the_event_handlers_folder_is_taken_over_when_ferry_has_no_position() {
        let (dir, state) = open_state().await;
        let storage = dir.path();
        let folder = storage.join("auth_3025");
        std::fs::create_dir_all(&folder).expect("folder");
        std::fs::write(folder.join("start_time"), "2024-05-01T00:00:00Z").expect("written");
        std::fs::write(folder.join("id"), "e-1").expect("written");
        settle(&state, &config(Some(storage))).await.expect("taken over");
        let cursor = state.cursor("teleport:c").await.expect("read").expect("a cursor");
        assert!(cursor.contains(r#""last-id":"e-1""#), "{cursor}");
        assert_eq!(state.position_origins().await.expect("origins")[0].from.as_deref(), Some(folder.display().to_string().as_str()));

        let wanted = Settle { start_time: Some(SystemTime::UNIX_EPOCH), ..config(Some(storage)) };
        let err = import(&state, &wanted, &folder, true).await.expect_err("another start time");
        assert!(err.contains("start_time") && err.contains("1970-01-01T00:00:00Z"), "{err}");
        let err = import(&state, &config(None), &folder, false).await.expect_err("has one");
        assert!(err.contains("--replace"), "{err}");
        assert!(import(&state, &config(None), storage, true).await.expect_err("not a folder of state").contains("<host>_<port>"));
    }
}
