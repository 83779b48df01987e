//! The router on the real fixtures (`fixtures/teleport-events.jsonl`)
//! and on byte literals.

use crate::Router;
use ferry_rules::testing::{event_type, fixture, fixture_lines};
use std::collections::BTreeMap;

fn router(config: &str) -> Router {
    Router::from_config(config).unwrap_or_else(|error| panic!("config {config}: {error}"))
}

fn sinks_of(router: &Router, line: &str) -> Option<Vec<String>> {
    router.sinks(&event_type(line), line.as_bytes())
}

/// How many fixture events went to each list of sinks (`-` for unrouted).
fn tally(router: &Router) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in fixture_lines() {
        let key = sinks_of(router, &line).map_or_else(|| "-".to_owned(), |sinks| sinks.join("+"));
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// The issue's example: sessions to one sink, failed logins to security,
/// the rest to default; failed logins also go on to default.
const EXAMPLE: &str = r#"{
    "default": "default",
    "rules": [
        {"when": {"type": "session.*"}, "sinks": "sessions"},
        {"when": {"type": "user.login", "success": false}, "sinks": "security", "continue": true},
        {"when": {"type": "user.login"}, "sinks": ["default"]}
    ]
}"#;

const FAILED_LOCAL_LOGIN: &str = "597bf08b-75b2-4dda-a578-e387c5ce9b76";
const GOOD_LOCAL_LOGIN: &str = "173d6b6e-d613-44be-8ff6-f9f893791ef2";
const SESSION_START: &str = "84c07a99-856c-419f-9de5-15560451a116";

#[test]
fn routes_the_fixtures_per_the_example() {
    let router = router(EXAMPLE);
    let expected = BTreeMap::from([("sessions".to_owned(), 19), ("security+default".to_owned(), 2), ("default".to_owned(), 183 - 19 - 2)]);
    assert_eq!(tally(&router), expected);
    assert_eq!(sinks_of(&router, &fixture(FAILED_LOCAL_LOGIN)), Some(vec!["security".into(), "default".into()]));
    assert_eq!(sinks_of(&router, &fixture(GOOD_LOCAL_LOGIN)), Some(vec!["default".into()]));
    assert_eq!(sinks_of(&router, &fixture(SESSION_START)), Some(vec!["sessions".into()]));
}

#[test]
fn first_match_stops_unless_continue() {
    let first = router(r#"{"rules":[{"when":{"code":"*W"},"sinks":"warnings"},{"when":{"type":"user.login"},"sinks":"logins"}]}"#);
    assert_eq!(sinks_of(&first, &fixture(FAILED_LOCAL_LOGIN)), Some(vec!["warnings".into()]));
    assert_eq!(sinks_of(&first, &fixture(GOOD_LOCAL_LOGIN)), Some(vec!["logins".into()]));
    let fan_out = router(
        r#"{"rules":[{"when":{"code":"*W"},"sinks":"warnings","continue":true},{"when":{"type":"user.login"},"sinks":["logins","warnings"]}]}"#,
    );
    assert_eq!(
        sinks_of(&fan_out, &fixture(FAILED_LOCAL_LOGIN)),
        Some(vec!["warnings".into(), "logins".into()]),
        "each sink once, first-named order"
    );
}

#[test]
fn without_default_unmatched_events_are_left_unrouted() {
    let router = router(r#"{"rules":[{"when":{"type":"session.*"},"sinks":"sessions"}]}"#);
    let counts = tally(&router);
    assert_eq!(counts, BTreeMap::from([("sessions".to_owned(), 19), ("-".to_owned(), 164)]));
}

#[test]
fn a_rule_without_when_matches_everything() {
    let router = router(r#"{"rules":[{"sinks":["archive","default"]}]}"#);
    assert_eq!(tally(&router), BTreeMap::from([("archive+default".to_owned(), 183)]));
}

#[test]
fn odd_events_go_by_type_alone() {
    let router = router(EXAMPLE);
    assert_eq!(router.sinks("session.start", b"not json"), Some(vec!["sessions".into()]));
    assert_eq!(router.sinks("user.login", b"[]"), Some(vec!["default".into()]), "success unknown: not a failed login");
    assert_eq!(router.sinks("", b"{}"), Some(vec!["default".into()]));
}

#[test]
fn config_errors_are_one_line_naming_the_key() {
    let error = |config: &str| Router::from_config(config).expect_err(config);
    assert!(error("{}").starts_with("config: no `rules` and no `default`"));
    assert_eq!(error(r#"{"rules":[{"sinks":[]}]}"#), "config: `rules[0].sinks` is empty; name at least one sink of ferry.toml");
    assert_eq!(error(r#"{"default":["a"," "]}"#), "config: `default[1]` is blank; give the name of a sink of ferry.toml");
    assert_eq!(error(r#"{"rules":[{"when":{"type":"x"}}]}"#), "config: `rules[0]`: missing field `sinks`");
    assert!(error(r#"{"rules":[{"sinks":"a","contine":true}]}"#).starts_with("config: `rules[0].contine`: unknown field `contine`"));
    assert_eq!(
        error(r#"{"rules":[{"sinks":"a","when":{}}]}"#),
        "config: `rules[0].when`: has no test; give at least one of `type`, `user`, `cluster`, `code`, `success`, `match`"
    );
}
