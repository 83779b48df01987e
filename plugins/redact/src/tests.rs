//! Tests on real Teleport events (`fixtures/teleport-events.jsonl`)
//! and on byte literals for the cases the fixtures lack.

use crate::Redactor;
use serde_json::{Map, Value};

/// The fixture file, one Teleport audit event per line.
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/teleport-events.jsonl");

fn fixture_lines() -> Vec<String> {
    let text = std::fs::read_to_string(FIXTURE).unwrap_or_else(|error| panic!("cannot read the fixture {FIXTURE}: {error}"));
    text.lines().map(str::to_owned).collect()
}

/// The fixture event with this `uid`, chosen by id rather than line number
/// so that adding fixtures does not break the tests.
fn fixture(uid: &str) -> String {
    let needle = format!("\"uid\":\"{uid}\"");
    fixture_lines().into_iter().find(|line| line.contains(&needle)).unwrap_or_else(|| panic!("no event with uid {uid} in {FIXTURE}"))
}

fn redactor(config: &str) -> Redactor {
    Redactor::from_config(config).unwrap_or_else(|error| panic!("config {config}: {error}"))
}

/// Redacts and expects a change; returns the new JSON as text.
fn masked(redactor: &Redactor, json: &[u8]) -> String {
    let output = redactor.redact(json).expect("valid JSON object").expect("a configured field is present");
    String::from_utf8(output).expect("serde_json writes UTF-8")
}

fn object(json: &str) -> Map<String, Value> {
    serde_json::from_str(json).expect("valid JSON object")
}

fn config_error(config: &str) -> String {
    Redactor::from_config(config).expect_err("config is refused")
}

// === Masking ===

/// A `session.data` event with the dotted keys `addr.local`/`addr.remote`.
const SESSION_DATA: &str = "2f2f07d0-8a01-4abe-b1c0-5001fd86829b";
/// An OIDC `user.login` with a nested `attributes` object.
const OIDC_LOGIN: &str = "7d440ee1-15f6-4b56-9391-344e8984fd97";

#[test]
fn masks_a_top_level_field_and_changes_nothing_else() {
    let event = fixture(SESSION_DATA);
    let output = masked(&redactor(r#"{"fields":["login"]}"#), event.as_bytes());
    assert_eq!(output, event.replace(r#""login":"root""#, r#""login":"[REDACTED]""#));
}

#[test]
fn matches_dotted_keys_literally() {
    let event = fixture(SESSION_DATA);
    let output = masked(&redactor(r#"{"fields":["addr.remote"],"replacement":"***"}"#), event.as_bytes());
    assert_eq!(output, event.replace(r#""addr.remote":"172.10.1.254:46992""#, r#""addr.remote":"***""#));
}

#[test]
fn follows_nested_paths() {
    let event = fixture(OIDC_LOGIN);
    let output = masked(&redactor(r#"{"fields":["attributes.email"],"replacement":"***"}"#), event.as_bytes());
    assert_eq!(output, event.replace(r#""email":"ops@gravitational.io""#, r#""email":"***""#));
}

#[test]
fn masks_values_of_any_type() {
    let redactor = redactor(r#"{"fields":["s","n","a","o","b","z"],"replacement":"-"}"#);
    let output = masked(&redactor, br#"{"s":"x","n":1.5,"a":[1,{"k":2}],"o":{"k":[]},"b":false,"z":null,"kept":0}"#);
    assert_eq!(output, r#"{"s":"-","n":"-","a":"-","o":"-","b":"-","z":"-","kept":0}"#);
    assert_eq!(redactor.masked_count(), 6);
}

#[test]
fn masks_deeply_nested_lists_such_as_user_traits_logins() {
    let output = masked(
        &redactor(r#"{"fields":["user.traits.logins"],"replacement":"***"}"#),
        br#"{"user":{"name":"alice","traits":{"logins":["root","ubuntu"],"kube_groups":["dev"]}},"ei":0}"#,
    );
    assert_eq!(output, r#"{"user":{"name":"alice","traits":{"logins":"***","kube_groups":["dev"]}},"ei":0}"#);
}

#[test]
fn a_literal_dotted_key_wins_over_the_nested_path() {
    let output = masked(
        &redactor(r#"{"fields":["addr.remote"],"replacement":"***"}"#),
        br#"{"addr":{"remote":"10.0.0.1"},"addr.remote":"10.0.0.2"}"#,
    );
    assert_eq!(output, r#"{"addr":{"remote":"10.0.0.1"},"addr.remote":"***"}"#);
}

#[test]
fn a_nested_path_falls_back_when_no_literal_key_exists() {
    let output =
        masked(&redactor(r#"{"fields":["addr.remote"],"replacement":"***"}"#), br#"{"addr":{"remote":"10.0.0.1","local":"10.0.0.9"}}"#);
    assert_eq!(output, r#"{"addr":{"remote":"***","local":"10.0.0.9"}}"#);
}

#[test]
fn keeps_key_order_on_every_fixture_event() {
    let redactor = redactor(r#"{"fields":["login","user","addr.remote"]}"#);
    let mut changed = 0;
    for line in fixture_lines() {
        let Some(output) = redactor.redact(line.as_bytes()).expect("fixtures are JSON objects") else {
            continue;
        };
        changed += 1;
        let (before, after) = (object(&line), object(&String::from_utf8_lossy(&output)));
        let keys = |map: &Map<String, Value>| map.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&before), keys(&after), "key order changed in {line}");
        for (key, value) in &after {
            if !["login", "user", "addr.remote"].contains(&key.as_str()) {
                assert_eq!(Some(value), before.get(key), "{key} changed in {line}");
            }
        }
    }
    assert!(changed > 100, "only {changed} fixture events had a field to mask");
}

#[test]
fn counts_masked_fields_across_calls() {
    let redactor = redactor(r#"{"fields":["login","addr.remote","absent"]}"#);
    let event = fixture(SESSION_DATA);
    redactor.redact(event.as_bytes()).expect("valid JSON");
    redactor.redact(event.as_bytes()).expect("valid JSON");
    assert_eq!(redactor.masked_count(), 4);
}

#[test]
fn everything_but_the_masked_values_is_copied_as_it_came() {
    let redactor = redactor(r#"{"fields":["login"],"replacement":"***"}"#);
    let event = br#"{ "n": 1.0e3, "caf\u00e9": "\u00e9t\u00e9",  "login" : "root", "z":[ 1 ,2 ] }"#;
    assert_eq!(masked(&redactor, event), r#"{ "n": 1.0e3, "caf\u00e9": "\u00e9t\u00e9",  "login" : "***", "z":[ 1 ,2 ] }"#);
}

#[test]
fn a_key_given_twice_has_each_value_masked() {
    let redactor = redactor(r#"{"fields":["login"],"replacement":"***"}"#);
    assert_eq!(masked(&redactor, br#"{"login":"a","x":1,"login":"b"}"#), r#"{"login":"***","x":1,"login":"***"}"#);
    assert_eq!(redactor.masked_count(), 2);
}

#[test]
fn a_field_inside_a_masked_field_is_masked_once() {
    let redactor = redactor(r#"{"fields":["user.name","user"],"replacement":"***"}"#);
    assert_eq!(masked(&redactor, br#"{"user":{"name":"alice"},"ei":1}"#), r#"{"user":"***","ei":1}"#);
    assert_eq!(redactor.masked_count(), 1);
}

#[test]
fn a_replacement_written_with_escapes_counts_as_masked() {
    let redactor = redactor(r#"{"fields":["login"],"replacement":"***"}"#);
    assert_eq!(redactor.redact(br#"{"login":"\u002a**"}"#), Ok(None));
}

// === Nothing to mask ===

#[test]
fn absent_fields_leave_the_event_alone() {
    let redactor = redactor(r#"{"fields":["password","user.traits.logins","addr.remote.port"]}"#);
    for line in fixture_lines() {
        assert_eq!(redactor.redact(line.as_bytes()), Ok(None), "{line}");
    }
    assert_eq!(redactor.masked_count(), 0);
}

#[test]
fn a_path_through_a_non_object_finds_nothing() {
    let redactor = redactor(r#"{"fields":["user.name"]}"#);
    assert_eq!(redactor.redact(br#"{"user":"alice"}"#), Ok(None));
    assert_eq!(redactor.redact(br#"{"user":["name"]}"#), Ok(None));
}

#[test]
fn already_masked_values_are_not_masked_again() {
    let redactor = redactor(r#"{"fields":["login","login"]}"#);
    let once = masked(&redactor, br#"{"login":"root"}"#);
    assert_eq!(once, r#"{"login":"[REDACTED]"}"#);
    assert_eq!(redactor.redact(once.as_bytes()), Ok(None));
    assert_eq!(redactor.masked_count(), 1);
}

// === Bad events ===

#[test]
fn invalid_json_is_an_error_that_says_where() {
    let redactor = redactor(r#"{"fields":["login"]}"#);
    assert_eq!(
        redactor.redact(br#"{"login":"root""#),
        Err("event is not valid JSON: EOF while parsing an object at line 1 column 15".to_owned())
    );
    assert_eq!(redactor.redact(b"\xff\"login\""), Err("event is not valid JSON: expected value at line 1 column 1".to_owned()));
    // Bytes in which no configured key appears are not parsed at all.
    assert_eq!(redactor.redact(b"\xff"), Ok(None));
}

#[test]
fn json_that_is_not_an_object_is_an_error() {
    let redactor = redactor(r#"{"fields":["login"]}"#);
    assert_eq!(redactor.redact(br#"[{"login":"root"}]"#), Err("event is not a JSON object but an array".to_owned()));
}

// === Config ===

#[test]
fn replacement_defaults_to_redacted() {
    let output = masked(&redactor(r#"{"fields":["login"]}"#), br#"{"login":"root"}"#);
    assert_eq!(output, r#"{"login":"[REDACTED]"}"#);
}

#[test]
fn config_needs_fields() {
    assert_eq!(config_error("{}"), "config: missing field `fields`");
    assert_eq!(config_error(r#"{"fields":[]}"#), "config: `fields` is empty; list at least one field path to mask, such as \"login\"");
}

#[test]
fn config_refuses_unknown_keys() {
    assert_eq!(
        config_error(r#"{"fields":["login"],"replacment":"*"}"#),
        "config: unknown field `replacment`, expected `fields` or `replacement`"
    );
}

#[test]
fn config_refuses_values_of_the_wrong_type() {
    assert_eq!(config_error(r#"{"fields":"login"}"#), "config: invalid type: string \"login\", expected a sequence");
    assert_eq!(config_error(r#"{"fields":["login"],"replacement":0}"#), "config: invalid type: integer `0`, expected a string");
}

#[test]
fn config_refuses_malformed_paths() {
    assert_eq!(config_error(r#"{"fields":["login",""]}"#), "config: `fields[1]` is empty; give the name of a field");
    assert_eq!(
        config_error(r#"{"fields":["addr..remote"]}"#),
        "config: `fields[0]` (\"addr..remote\") has an empty part: dots must separate key names"
    );
    assert_eq!(
        config_error(r#"{"fields":[".login"]}"#),
        "config: `fields[0]` (\".login\") has an empty part: dots must separate key names"
    );
}

#[test]
fn config_that_is_not_json_says_so() {
    assert_eq!(config_error("fields = [\"login\"]"), "config is not valid JSON: expected ident at line 1 column 2");
}

// === Skipping events without the keys ===

#[test]
fn escaped_keys_are_still_found() {
    let redactor = redactor(r#"{"fields":["login"]}"#);
    let output = masked(&redactor, br#"{"log\u0069n":"root"}"#);
    assert_eq!(output, r#"{"log\u0069n":"[REDACTED]"}"#, "the key stays as it was written");
}

#[test]
fn the_skip_agrees_with_parsing_on_every_fixture_event() {
    // Paths of every kind: top-level, dotted literal, nested, absent.
    for fields in [r#"["login"]"#, r#"["addr.remote","addr.local"]"#, r#"["attributes.email","user"]"#, r#"["password"]"#] {
        let config = format!(r#"{{"fields":{fields}}}"#);
        let fast = redactor(&config);
        let mut slow = redactor(&config);
        slow.needles = None;
        for line in fixture_lines() {
            assert_eq!(fast.redact(line.as_bytes()), slow.redact(line.as_bytes()), "{fields}: {line}");
        }
    }
}

#[test]
fn keys_json_may_escape_turn_the_skip_off() {
    assert!(redactor(r#"{"fields":["caf\u00e9"]}"#).needles.is_none());
    assert!(redactor(r#"{"fields":["a\"b"]}"#).needles.is_none());
    assert_eq!(
        redactor(r#"{"fields":["user.traits.logins"]}"#)
            .needles
            .map(|needles| needles.iter().map(|n| n.needle().to_vec()).collect::<Vec<_>>()),
        Some(vec![br#""user.traits.logins""#.to_vec(), br#""logins""#.to_vec()])
    );
}
