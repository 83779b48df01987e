//! Enrichment on the real fixtures (`fixtures/teleport-events.jsonl`)
//! and on byte literals.

use crate::Enricher;
use ferry_rules::testing::{event_type, fixture, fixture_lines};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn enricher(config: &str) -> Enricher {
    Enricher::from_config(config).unwrap_or_else(|error| panic!("config {config}: {error}"))
}

fn enriched(enricher: &Enricher, line: &str) -> Value {
    let json = enricher.enrich(&event_type(line), line.as_bytes()).expect("a JSON object").expect("something was added");
    serde_json::from_slice(&json).expect("JSON")
}

/// How many fixture events got each severity with the default config.
#[test]
fn builtin_severity_over_the_fixtures() {
    let enricher = enricher("{}");
    let mut levels = BTreeMap::new();
    for line in fixture_lines() {
        let event = enriched(&enricher, &line);
        *levels.entry(event["severity"].as_str().expect("a level").to_owned()).or_insert(0) += 1;
    }
    assert_eq!(levels, BTreeMap::from([("high".to_owned(), 4), ("medium".to_owned(), 48), ("low".to_owned(), 131)]));
    let level = |uid: &str| enriched(&enricher, &fixture(uid))["severity"].clone();
    assert_eq!(level("597bf08b-75b2-4dda-a578-e387c5ce9b76"), "high", "failed local login");
    assert_eq!(level("036659d6-fdf7-40a4-aa80-74d6ac73b9c0"), "high", "auth: principal not allowed");
    assert_eq!(level("173d6b6e-d613-44be-8ff6-f9f893791ef2"), "low", "successful login");
    assert_eq!(level("cec2a13a-f822-5306-9793-19b37af50332"), "medium", "sftp error code");
}

#[test]
fn static_fields_merge_at_dotted_paths_and_keep_the_rest() {
    let enricher =
        enricher(r#"{"fields":{"labels.environment":"prod","labels":{"team":"sec"},"tags":["teleport"]},"severity":{"enabled":false}}"#);
    let line = fixture("84c07a99-856c-419f-9de5-15560451a116");
    let event = enriched(&enricher, &line);
    let mut expected: Value = serde_json::from_str(&line).expect("JSON");
    expected["labels"] = json!({"environment": "prod", "team": "sec"});
    expected["tags"] = json!(["teleport"]);
    assert_eq!(event, expected);
}

#[test]
fn existing_fields_are_kept_unless_overwrite() {
    let line = br#"{"event":"user.login","success":false,"severity":"info","env":"dev"}"#;
    let keep = enricher(r#"{"fields":{"env":"prod"}}"#);
    assert_eq!(keep.enrich("user.login", line), Ok(None), "both fields exist: nothing changes");
    let overwrite = enricher(r#"{"fields":{"env":"prod"},"overwrite":true}"#);
    let json = overwrite.enrich("user.login", line).expect("object").expect("changed");
    assert_eq!(String::from_utf8_lossy(&json), r#"{"event":"user.login","success":false,"severity":"high","env":"prod"}"#);
}

#[test]
fn configured_rules_come_first_and_builtins_can_be_turned_off() {
    let config = r#"{"severity":{"field":"labels.severity","default":"info","builtin":false,
        "rules":[{"when":{"type":"session.*","user":"admin@*"},"level":"medium"}]}}"#;
    let enricher = enricher(config);
    let session = enriched(&enricher, &fixture("84c07a99-856c-419f-9de5-15560451a116"));
    assert_eq!(session["labels"]["severity"], "medium");
    let failed_login = enriched(&enricher, &fixture("597bf08b-75b2-4dda-a578-e387c5ce9b76"));
    assert_eq!(failed_login["labels"]["severity"], "info", "built-ins are off");
}

#[test]
fn works_on_ecs_mapped_events_too() {
    let ecs = br#"{"event":{"action":"user.login","outcome":"failure"},"teleport":{"event":"user.login","success":false}}"#;
    let json = enricher("{}").enrich("", ecs).expect("object").expect("changed");
    assert!(String::from_utf8_lossy(&json).ends_with(r#""severity":"high"}"#));
}

#[test]
fn events_that_are_not_objects_fail_with_the_reason() {
    let enricher = enricher("{}");
    assert_eq!(enricher.enrich("", b"[1]"), Err("event is not a JSON object".to_owned()));
    assert!(enricher.enrich("", b"{").expect_err("broken").starts_with("event is not valid JSON: EOF"));
}

#[test]
fn config_errors_are_one_line_naming_the_key() {
    let error = |config: &str| Enricher::from_config(config).expect_err(config);
    assert_eq!(error(r#"{"severity":{"enabled":false}}"#), "config: nothing to add; give `fields`, or leave `severity` enabled");
    assert_eq!(error(r#"{"fields":{"a..b":1}}"#), "config: `fields.a..b` (\"a..b\") has an empty part: dots must separate key names");
    assert_eq!(error(r#"{"severity":{"field":""}}"#), "config: `severity.field` (\"\") has an empty part: dots must separate key names");
    assert_eq!(
        error(r#"{"severity":{"rules":[{"when":{"type":"x"},"level":""}]}}"#),
        "config: `severity.rules[0].level` is blank; give a level such as \"high\""
    );
    assert!(
        error(r#"{"severity":{"rules":[{"when":{"typ":"x"},"level":"high"}]}}"#)
            .starts_with("config: `severity.rules[0].when.typ`: unknown field `typ`")
    );
    assert!(error(r#"{"overwrite":"yes"}"#).starts_with("config: `overwrite`: invalid type: string \"yes\", expected a boolean"));
}

#[test]
fn a_path_through_a_non_object_is_left_alone() {
    // Teleport's `event` is a string, so `event.severity` cannot be added.
    let enricher = enricher(r#"{"severity":{"field":"event.severity"}}"#);
    let line = fixture("597bf08b-75b2-4dda-a578-e387c5ce9b76");
    assert_eq!(enricher.enrich("user.login", line.as_bytes()), Ok(None));
}
