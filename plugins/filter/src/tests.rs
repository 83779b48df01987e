//! The filter on the real fixtures (`fixtures/teleport-events.jsonl`,
//! 183 events) and on byte literals for what they lack.

use crate::Filter;
use ferry_rules::testing::{event_type, fixture_lines};
use std::collections::BTreeMap;

fn filter(config: &str) -> Filter {
    Filter::from_config(config).unwrap_or_else(|error| panic!("config {config}: {error}"))
}

/// Kept and dropped counts over the fixtures, and the dropped types.
fn run(filter: &Filter) -> (usize, usize, BTreeMap<String, usize>) {
    let (mut kept, mut dropped, mut types) = (0, 0, BTreeMap::new());
    for line in fixture_lines() {
        let event_type = event_type(&line);
        if filter.keeps(&event_type, line.as_bytes()) {
            kept += 1;
        } else {
            dropped += 1;
            *types.entry(event_type).or_insert(0) += 1;
        }
    }
    (kept, dropped, types)
}

#[test]
fn exclude_by_type_glob_drops_exactly_the_session_events() {
    let (kept, dropped, types) = run(&filter(r#"{"exclude":[{"type":"session.*"}]}"#));
    assert_eq!((kept, dropped), (164, 19));
    assert!(types.keys().all(|t| t.starts_with("session.")), "{types:?}");
    assert_eq!(types["session.end"], 3);
    assert!(!types.contains_key("db.session.start"), "a glob matches the whole type");
}

#[test]
fn include_keeps_only_matching_events() {
    let (kept, dropped, _) = run(&filter(r#"{"include":[{"type":"user.login"},{"type":"db.session.*"}]}"#));
    assert_eq!((kept, dropped), (4 + 34, 183 - 38));
}

#[test]
fn include_and_exclude_combine() {
    // Failed logins and failed auth only: successes are excluded.
    let (kept, _, _) = run(&filter(r#"{"include":[{"type":["user.login","auth"]}],"exclude":[{"success":true}]}"#));
    assert_eq!(kept, 3);
}

#[test]
fn user_cluster_and_code_shortcuts() {
    assert_eq!(run(&filter(r#"{"include":[{"user":"admin@example.com"}]}"#)).0, 6);
    assert_eq!(run(&filter(r#"{"include":[{"cluster":"im-a-*"}]}"#)).0, 95);
    assert_eq!(run(&filter(r#"{"include":[{"code":"*E"}]}"#)).0, 26);
    assert_eq!(run(&filter(r#"{"include":[{"type":"sftp","code":"*E"}]}"#)).0, 18);
}

#[test]
fn json_pointer_predicates() {
    let equals = r#"{"include":[{"match":[{"pointer":"/success","equals":false}]}]}"#;
    assert_eq!(run(&filter(equals)).0, 10);
    let exists = r#"{"exclude":[{"match":[{"pointer":"/addr.remote","exists":true}]}]}"#;
    assert_eq!(run(&filter(exists)).0, 183 - 56);
    let in_list = r#"{"include":[{"type":"user.login","match":[{"pointer":"/method","in":["oidc"]}]}]}"#;
    assert_eq!(run(&filter(in_list)).0, 2);
    let nested = r#"{"include":[{"match":[{"pointer":"/attributes/groups/1","glob":"okta-*"}]}]}"#;
    assert_eq!(run(&filter(nested)).0, 2);
}

#[test]
fn odd_events_do_not_panic_and_match_no_field_test() {
    let filter = filter(r#"{"exclude":[{"user":"*"}]}"#);
    assert!(filter.keeps("", b"not json"));
    assert!(filter.keeps("", br#"{"user":{"name":"x"}}"#), "a user that is not a string matches no glob");
    assert!(!filter.keeps("", br#"{"user":"x"}"#));
}

#[test]
fn config_errors_are_one_line_naming_the_key() {
    let error = |config: &str| Filter::from_config(config).expect_err(config);
    assert_eq!(
        error("{}"),
        "config: no rules; give `include` or `exclude` (or both), each a list of conditions such as { type = \"session.*\" }"
    );
    assert_eq!(error(r#"{"exclude":[{"type":[]}]}"#), "config: `exclude[0].type`: is an empty list; give at least one pattern");
    assert!(error(r#"{"exclud":[]}"#).starts_with("config: `exclud`: unknown field `exclud`, expected `include` or `exclude`"));
    assert_eq!(
        error(r#"{"include":[{"match":[{"pointer":"/a"}]}]}"#),
        "config: `include[0].match[0]`: has 0 tests; give exactly one of `equals`, `in`, `exists`, `glob`"
    );
    for config in ["{}", r#"{"exclude":[{}]}"#, r#"{"include":"x"}"#] {
        assert!(!error(config).contains('\n'));
    }
}
