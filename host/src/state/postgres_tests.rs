//! The state on a real PostgreSQL server (Debian's, started by the
//! stand-in): the same API as SQLite, the lease, and the fence that refuses
//! a deposed instance's writes in the database itself.

use super::backend::{Location, PostgresLocation};
use super::lease::Held;
use super::{ChainPlugin, DeadLetter, Filter, Origin, Stage, State};
use ferry_standin::postgres::Postgres;
use std::path::PathBuf;
use std::time::Duration;

fn location(server: &Postgres, database: &str) -> Location {
    let url = server.create_database(database);
    Location::Postgres(PostgresLocation::new(&url, Some(server.password().to_owned())).expect("a usable URL"))
}

fn letter(event: &str) -> DeadLetter {
    DeadLetter {
        source: "file:a".into(),
        position: Some("3".into()),
        event_id: Some(event.into()),
        stage: Stage::Sink,
        component: "default".into(),
        reason: "400".into(),
        payload: format!("{{\"uid\":\"{event}\"}}").into_bytes(),
        session_id: None,
        sink: Some("default".into()),
    }
}

/// Everything `ferry start`, `status` and `dead-letters` do with the state,
/// the same on either backend.
async fn the_state_api_works(state: &State) {
    assert_eq!(state.cursor("file:a").await.expect("read"), None);
    state.commit("file:a", "10", Some("2026-12-07T10:00:00.000000001Z"), &[letter("u-1"), letter("u-2")]).await.expect("commit");
    state.commit("file:a", "25", Some("2026-12-07T09:00:00Z"), &[]).await.expect("commit");
    assert_eq!(state.cursor("file:a").await.expect("read").as_deref(), Some("25"));
    let cursors = state.cursors().await.expect("cursors");
    assert_eq!(cursors[0].newest_event_time.as_deref(), Some("2026-12-07T10:00:00.000000001Z"), "the newest time only moves forward");
    let stored = state.dead_letters(10).await.expect("letters");
    assert_eq!(stored.iter().map(|l| l.event_id.as_deref()).collect::<Vec<_>>(), [Some("u-1"), Some("u-2")]);
    assert_eq!(stored[0].payload, b"{\"uid\":\"u-1\"}");
    assert_eq!(state.dead_letter_counts().await.expect("counts"), [("sink".to_owned(), "default".to_owned(), 2)]);
    state.settle_replayed(&[(stored[0].id, vec![])]).await.expect("settle");
    let filter = Filter { ids: vec![stored[1].id], ..Filter::default() };
    assert_eq!(state.find_dead_letters(&filter).await.expect("find").len(), 1);
    assert_eq!(state.purge_dead_letters(&filter).await.expect("purge"), 1);
    assert_eq!(state.dead_letter_count().await.expect("count"), 0);
    state.set_origin("teleport", &Origin::Own).await.expect("origin");
    assert_eq!(state.position_origins().await.expect("origins")[0].kind, "own");
    let chain = [ChainPlugin { name: "redact".into(), wasm: PathBuf::from("/p/redact.wasm"), settings: None }];
    state.remember_plugin_chain(&chain).await.expect("chain");
    assert_eq!(state.plugin_chain().await.expect("chain"), chain);
    assert_eq!(super::last_plugin_chain(state.location()).await.expect("read without writing"), chain);
    let id = state.identity().await.expect("identity");
    assert_eq!(state.identity().await.expect("again"), id);
}

#[tokio::test]
async fn postgres_keeps_what_sqlite_keeps() {
    let server = Postgres::start();
    let state = State::open_at(&location(&server, "api")).await.expect("open");
    the_state_api_works(&state).await;
    state.close().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = State::open(&dir.path().join("ferry.db")).await.expect("open");
    the_state_api_works(&sqlite).await;
}

#[tokio::test]
async fn a_standby_takes_over_only_once_the_lease_ran_out_and_the_deposed_cannot_write() {
    let server = Postgres::start();
    let place = location(&server, "lease");
    let (first, second) = (State::open_at(&place).await.expect("open"), State::open_at(&place).await.expect("open"));
    let lease = Duration::from_millis(1500);
    let held = first.try_lead("a", lease, 0).await.expect("ask").expect("nobody held it");
    assert_eq!(held, Held { slot: 0, epoch: 1 });
    assert_eq!(second.try_lead("b", lease, 0).await.expect("ask"), None, "a's lease is live");
    first.commit("teleport", "p-1", None, &[]).await.expect("the leader commits");
    assert!(first.renew_lead("a", held, lease).await.expect("renew"));

    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    let taken = second.try_lead("b", lease, 0).await.expect("ask").expect("a's lease ran out");
    assert_eq!(taken, Held { slot: 0, epoch: 2 });
    assert_eq!(second.cursor("teleport").await.expect("read").as_deref(), Some("p-1"), "b resumes where a committed");

    // a was paused past its lease and comes back believing it leads.
    let refused = first.commit("teleport", "p-stale", None, &[letter("u-9")]).await.expect_err("fenced");
    assert!(refused.is_deposed(), "{refused}");
    assert!(refused.to_string().contains("a write with epoch 1 of lease active refused; b holds it with epoch 2"), "{refused}");
    assert!(!first.renew_lead("a", held, lease).await.expect("renew"), "a learns it lost the lease");
    assert_eq!(second.cursor("teleport").await.expect("read").as_deref(), Some("p-1"), "nothing of a's was written");
    assert_eq!(second.dead_letter_count().await.expect("count"), 0);
    second.commit("teleport", "p-2", None, &[]).await.expect("the new leader commits");

    let holder = first.lease_holder().await.expect("read").expect("held");
    assert_eq!((holder.name.as_str(), holder.epoch), ("b", 2));
    second.release_lead("b", taken).await.expect("release");
    assert_eq!(first.try_lead("a", lease, 0).await.expect("ask"), Some(Held { slot: 0, epoch: 3 }), "a released lease is taken at once");
}

#[tokio::test]
async fn the_database_itself_refuses_a_write_with_a_stale_epoch() {
    let server = Postgres::start();
    let place = location(&server, "fence");
    let state = State::open_at(&place).await.expect("open");
    let lease = Duration::from_millis(200);
    state.try_lead("a", lease, 0).await.expect("ask").expect("epoch 1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    state.try_lead("b", lease, 0).await.expect("ask").expect("epoch 2");
    // Any client, not only ferry's code: a transaction that says epoch 1.
    let stale = "BEGIN; SELECT set_config('ferry.epoch', '1', true); INSERT INTO cursors (source, position) VALUES ('x', 'y'); COMMIT;";
    let refused = server.try_sql("fence", stale).expect_err("the fence refuses it");
    assert!(refused.contains("a write with epoch 1 of lease active refused; b holds it with epoch 2"), "{refused}");
    let current = "BEGIN; SELECT set_config('ferry.epoch', '2', true); INSERT INTO cursors (source, position) VALUES ('x', 'y'); COMMIT;";
    server.try_sql("fence", current).expect("the current epoch writes");
    let deleting = "BEGIN; SELECT set_config('ferry.epoch', '1', true); DELETE FROM cursors; COMMIT;";
    assert!(server.try_sql("fence", deleting).is_err(), "deletes are fenced too");
    assert_eq!(server.sql("fence", "SELECT count(*) FROM cursors").trim(), "1");
}

#[tokio::test]
async fn a_state_copies_from_sqlite_to_postgres_and_back_whole() {
    let server = Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = Location::Sqlite(dir.path().join("old/ferry.db"));
    let state = State::open_at(&sqlite).await.expect("open");
    state.commit("teleport", "{\"audit\":1}", Some("2026-12-07T10:00:00Z"), &[letter("u-1"), letter("u-2")]).await.expect("commit");
    state.commit("teleport#start-time", "2026-12-01T00:00:00Z", None, &[]).await.expect("commit");
    state.set_origin("teleport", &Origin::Own).await.expect("origin");
    let chain = [ChainPlugin { name: "redact".into(), wasm: PathBuf::from("/p/redact.wasm"), settings: Some("/p/redact.toml".into()) }];
    state.remember_plugin_chain(&chain).await.expect("chain");
    let before = (state.cursors().await.expect("c"), state.dead_letters(10).await.expect("l"));
    state.close().await;

    let postgres = location(&server, "copied");
    let copied = super::copy::copy(&sqlite, &postgres).await.expect("copied");
    assert_eq!((copied.cursors, copied.dead_letters, copied.plugins), (2, 2, 1));
    let err = super::copy::copy(&sqlite, &postgres).await.expect_err("the target is no longer empty");
    assert!(err.to_string().contains("already holds positions or dead letters"), "{err}");

    let back = Location::Sqlite(dir.path().join("back/ferry.db"));
    super::copy::copy(&postgres, &back).await.expect("copied back");
    for place in [&postgres, &back] {
        let state = State::open_at(place).await.expect("open");
        assert_eq!(
            state.cursors().await.expect("cursors").iter().map(|c| format!("{c:?}")).collect::<Vec<_>>(),
            before.0.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>(),
            "{place}"
        );
        let letters = state.dead_letters(10).await.expect("letters");
        let seen: Vec<_> = letters.iter().map(|l| (&l.created_at, &l.event_id, &l.payload, &l.sink)).collect();
        let expected: Vec<_> = before.1.iter().map(|l| (&l.created_at, &l.event_id, &l.payload, &l.sink)).collect();
        assert_eq!(seen, expected, "{place}");
        assert_eq!(state.plugin_chain().await.expect("chain"), chain, "{place}");
        assert_eq!(state.position_origins().await.expect("origins").len(), 1, "{place}");
    }

    // An instance leads on PostgreSQL: the copy must not miss its commits.
    let leading = State::open_at(&postgres).await.expect("open");
    leading.try_lead("ferry-0", Duration::from_secs(60), 0).await.expect("ask").expect("free");
    let err = super::copy::copy(&postgres, &Location::Sqlite(dir.path().join("third/ferry.db"))).await.expect_err("refused");
    assert!(
        err.to_string().contains("ferry-0 is active on it; stop every instance first (`ferry state copy` must not run beside one)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_probe_says_who_leads_and_changes_nothing() {
    let server = Postgres::start();
    let place = location(&server, "probed");
    let said = super::lease::probe(&place).await.expect("connects");
    assert!(said.contains("no ferry has run on it yet"), "{said}");
    assert_eq!(server.sql("probed", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").trim(), "0", "a probe creates nothing");
    let state = State::open_at(&place).await.expect("open");
    assert!(super::lease::probe(&place).await.expect("connects").contains("no instance has led yet"));
    state.try_lead("ferry-0", Duration::from_secs(60), 0).await.expect("ask").expect("free");
    assert_eq!(super::lease::probe(&place).await.expect("connects"), "connected; ferry-0 is active (epoch 1)");
    state.try_lead("ferry-1", Duration::from_millis(1), 2).await.expect("ask").expect("free");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        super::lease::probe(&place).await.expect("connects"),
        "connected; ferry-0 is active (epoch 1); the lease on slot-2 of ferry-1 (epoch 1) ran out: no instance is active on slot-2",
        "every slot, in order"
    );
    let Location::Postgres(right) = &place else { unreachable!() };
    let wrong = Location::Postgres(PostgresLocation::new(right.url(), Some("not-the-password".into())).expect("a URL"));
    let refused = super::lease::probe(&wrong).await.expect_err("a wrong password");
    assert!(refused.starts_with("cannot connect: ") && refused.contains("password"), "{refused}");
    assert!(!refused.contains("not-the-password"), "{refused}");
}

/// The instances' clocks may disagree (a host whose NTP broke): the lease
/// must be judged by the database's clock alone. Every time the lease SQL
/// writes into `expires_at` is the database's `now()` plus a length; no
/// time of this process is bound into it.
#[test]
fn no_lease_time_comes_from_the_instances_clock() {
    let source = include_str!("lease.rs");
    let code = source.split("#[cfg(test)]").next().unwrap_or(source);
    for clock in ["SystemTime", "backend::now", "super::now", "Utc::now", "OffsetDateTime", "humantime"] {
        assert!(!code.contains(clock), "state/lease.rs reads the instance's clock ({clock}): the database's clock must judge the lease");
    }
    let writes: Vec<&str> =
        code.lines().filter(|line| line.contains("expires_at =") || line.contains("VALUES ($1, $2, 1,")).map(str::trim).collect();
    assert!(writes.len() >= 3, "the lease's take, renewal and release write expires_at: {writes:?}");
    for line in writes {
        let from_excluded = line.contains("expires_at = excluded.expires_at");
        assert!(line.contains("now()") || from_excluded, "expires_at not from the database's now(): {line}");
    }
}

/// Whatever this process's clock says, the database's decides: a lease of
/// an hour that the database's clock has passed is taken at once, and one
/// of a second that the database's clock has not reached yet is not.
#[tokio::test]
async fn a_lease_expires_by_the_databases_clock_alone() {
    let server = Postgres::start();
    let place = location(&server, "clock");
    let (first, second) = (State::open_at(&place).await.expect("open"), State::open_at(&place).await.expect("open"));
    let held = first.try_lead("a", Duration::from_secs(3600), 0).await.expect("ask").expect("free");
    let holder = second.lease_holder().await.expect("read").expect("held");
    assert!((3590.0..=3600.0).contains(&holder.expires_in), "an hour, by the database: {holder:?}");
    assert_eq!(second.try_lead("b", Duration::from_secs(1), 0).await.expect("ask"), None);
    // The database's clock runs past the hour (moved here, as a clock that jumped would).
    server.sql("clock", "UPDATE leases SET expires_at = now() - interval '1 millisecond'");
    let taken = second.try_lead("b", Duration::from_secs(1), 0).await.expect("ask").expect("the database says it ran out");
    assert_eq!(taken.epoch, held.epoch + 1);
    assert!(!first.renew_lead("a", held, Duration::from_secs(3600)).await.expect("renew"), "a learns it lost the lease");

    // A lease of a second that the database's clock says has an hour left.
    server.sql("clock", "UPDATE leases SET expires_at = now() + interval '1 hour'");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(first.try_lead("a", Duration::from_secs(1), 0).await.expect("ask"), None, "b's second is not over by the database's clock");
    let holder = first.lease_holder().await.expect("read").expect("held");
    assert_eq!((holder.name.as_str(), holder.epoch), ("b", taken.epoch));
}

#[tokio::test]
async fn each_slot_is_fenced_by_its_own_lease() {
    let server = Postgres::start();
    let place = location(&server, "slots");
    let (zero, one, late) = (
        State::open_at(&place).await.expect("open"),
        State::open_at(&place).await.expect("open"),
        State::open_at(&place).await.expect("open"),
    );
    let lease = Duration::from_millis(600);
    assert_eq!(zero.try_lead_any("a", lease, 2).await.expect("ask"), Some(Held { slot: 0, epoch: 1 }));
    assert_eq!(one.try_lead_any("b", lease, 2).await.expect("ask"), Some(Held { slot: 1, epoch: 1 }), "slot 0 is taken: slot 1");
    assert_eq!(late.try_lead_any("c", lease, 2).await.expect("ask"), None, "both slots are held");
    // Both write at once, each under its own lease.
    zero.commit("teleport:c", "0", None, &[letter("u-0")]).await.expect("slot 0 commits");
    one.commit("teleport:c#slot-1", "1", None, &[letter("u-1")]).await.expect("slot 1 commits");
    // b pauses past its lease; c takes slot 1 over, and a, renewing, keeps slot 0.
    assert!(zero.renew_lead("a", Held { slot: 0, epoch: 1 }, lease).await.expect("renew"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        zero.renew_lead("a", Held { slot: 0, epoch: 1 }, lease).await.expect("renew"),
        "nobody took slot 0, so a late renewal keeps it"
    );
    assert_eq!(late.try_lead_any("c", lease, 2).await.expect("ask"), Some(Held { slot: 1, epoch: 2 }));
    let refused = one.commit("teleport:c#slot-1", "stale", None, &[letter("u-stale")]).await.expect_err("b is fenced off");
    assert!(refused.is_deposed(), "{refused}");
    assert!(refused.to_string().contains("epoch 1 of lease slot-1 refused; c holds it with epoch 2"), "{refused}");
    late.commit("teleport:c#slot-1", "2", None, &[]).await.expect("c writes slot 1");
    assert_eq!(one.cursor("teleport:c#slot-1").await.expect("read").as_deref(), Some("2"));
    assert_eq!(zero.dead_letter_count().await.expect("count"), 2, "b's stale letter was refused with its cursor");
}

#[tokio::test]
async fn fewer_slots_than_ran_are_refused_and_operators_commands_wait_for_every_slot() {
    let server = Postgres::start();
    let place = location(&server, "fewer");
    let (running, operator) = (State::open_at(&place).await.expect("open"), State::open_at(&place).await.expect("open"));
    running.check_slots(1).await.expect("a fresh database takes any number");
    running.try_lead("a", Duration::from_secs(60), 2).await.expect("ask").expect("slot 2 is free");
    let refused = operator.check_slots(2).await.expect_err("slot 2 ran");
    assert!(refused.to_string().contains("ran with 3 slots (lease slot-2 exists)"), "{refused}");
    operator.check_slots(3).await.expect("as many as ran");
    operator.check_slots(4).await.expect("more than ran");
    let refused = operator.hold_still("ferry state copy").await.expect_err("a holds slot 2");
    assert!(refused.to_string().contains("a is active on it"), "{refused}");
    assert_eq!(
        running.leases().await.expect("leases").iter().filter(|l| l.name == "ferry state copy" && l.expires_in > 0.0).count(),
        0,
        "what it took it let go"
    );
    running.release_lead("a", Held { slot: 2, epoch: 1 }).await.expect("release");
    operator.hold_still("ferry state copy").await.expect("free").expect("held");
    assert!(running.leases().await.expect("leases").iter().all(|l| l.name == "ferry state copy" && l.expires_in > 0.0), "every slot held");
    operator.release_all("ferry state copy").await.expect("release");
    assert!(running.try_lead("a", Duration::from_secs(60), 2).await.expect("ask").is_some(), "let go");
}
