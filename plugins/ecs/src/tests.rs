//! The mapping on the real fixtures (`fixtures/teleport-events.jsonl`),
//! with exact ECS values for chosen events, and on odd input.

use crate::Mapper;
use ferry_rules::testing::{fixture, fixture_lines};
use serde_json::{Value, json};

fn mapper() -> Mapper {
    Mapper::from_config("{}").expect("the empty config is valid")
}

/// Maps a fixture event by uid; the uid is also ferry's id for it.
fn mapped(uid: &str) -> (Value, Value) {
    let line = fixture(uid);
    let json = mapper().map(uid, line.as_bytes()).expect("a Teleport event is mapped");
    let original: Value = serde_json::from_str(&line).expect("fixture JSON");
    (serde_json::from_slice(&json).expect("the mapper writes JSON"), original)
}

#[test]
fn a_session_start_maps_exactly() {
    let (ecs, original) = mapped("84c07a99-856c-419f-9de5-15560451a116");
    let expected = json!({
        "@timestamp": "2019-04-22T19:39:26.676Z",
        "ecs": {"version": "8.11.0"},
        "event": {
            "id": "84c07a99-856c-419f-9de5-15560451a116",
            "action": "session.start",
            "code": "T2000I",
            "kind": "event",
            "category": ["session"],
            "type": ["start"],
            "outcome": "success",
            "module": "teleport",
            "dataset": "teleport.audit",
            "sequence": 0
        },
        "user": {"name": "admin@example.com"},
        "source": {"address": "151.181.228.114:51454", "ip": "151.181.228.114", "port": 51454},
        "destination": {"address": "172.31.28.130:3022", "ip": "172.31.28.130", "port": 3022},
        "host": {"id": "de3800ea-69d9-4d72-a108-97e57f8eb393"},
        "labels": {"session_id": "56408539-6536-11e9-80a1-427cfde50f5a"},
        "related": {"user": ["admin@example.com", "root"], "ip": ["151.181.228.114", "172.31.28.130"]},
        "teleport": original,
    });
    assert_eq!(ecs, expected);
    let keys: Vec<&String> = ecs.as_object().expect("object").keys().collect();
    assert_eq!(keys.first().map(|k| k.as_str()), Some("@timestamp"));
    assert_eq!(keys.last().map(|k| k.as_str()), Some("teleport"));
}

#[test]
fn failed_logins_are_authentication_failures() {
    let (ecs, _) = mapped("597bf08b-75b2-4dda-a578-e387c5ce9b76");
    assert_eq!(ecs["event"]["outcome"], "failure");
    assert_eq!(ecs["event"]["category"], json!(["authentication"]));
    assert_eq!(ecs["event"]["code"], "T1000W");
    assert_eq!(ecs["user"]["name"], "fsdfsdf");
    assert_eq!(ecs["error"]["message"], "user(name=\"fsdfsdf\") not found");
    // The OIDC failure has no user, but a multi-line message.
    let (ecs, _) = mapped("6fa08495-170a-4de9-884f-9931fbdb5982");
    assert_eq!(ecs["event"]["outcome"], "failure");
    assert!(ecs.get("user").is_none());
    assert_eq!(ecs["labels"]["teleport_cluster"], "boson.tener.io");
    assert!(ecs["message"].as_str().is_some_and(|m| m.starts_with("Failed to calculate user attributes.\n")));
}

#[test]
fn outcome_falls_back_to_the_code_letter() {
    let (error, _) = mapped("cec2a13a-f822-5306-9793-19b37af50332"); // sftp TS001E
    assert_eq!(error["event"]["outcome"], "failure");
    let (info, _) = mapped("9db3b52b-a6b8-5f97-8d9e-6adc3e60567a"); // sftp TS001I
    assert_eq!(info["event"]["outcome"], "success");
    assert_eq!(info["event"]["category"], json!(["file"]));
    assert_eq!(info["file"]["path"], "/tmp/file");
    let (unknown, _) = mapped("0d5b2cae-5f40-5017-8d6f-6d09264dd1e3"); // port T3003S
    assert!(unknown["event"].get("outcome").is_none());
}

#[test]
fn ipv6_and_host_names_are_told_apart() {
    let (sftp, _) = mapped("9db3b52b-a6b8-5f97-8d9e-6adc3e60567a");
    assert_eq!(sftp["destination"], json!({"address": "[::1]:3022", "ip": "::1", "port": 3022}));
    assert_eq!(sftp["source"], json!({"address": "127.0.0.1:41106", "ip": "127.0.0.1", "port": 41106}));
    assert_eq!(sftp["host"]["name"], "im-a-server-hostname");
    assert!(sftp["labels"].get("session_id").is_none(), "an empty sid is left out");
    let (desktop, _) = mapped("f38b07d4-2f3e-400b-a91a-bad7283db775");
    assert_eq!(
        desktop["source"],
        json!({"address": "ec2-54-162-177-255.compute-1.amazonaws.com:3389", "domain": "ec2-54-162-177-255.compute-1.amazonaws.com", "port": 3389})
    );
    assert!(desktop["related"].get("ip").is_none());
}

#[test]
fn session_commands_fill_process() {
    let (ecs, _) = mapped("734930bb-00e6-4ee6-8798-37f1e9473fac");
    assert_eq!(
        ecs["process"],
        json!({"pid": 2653, "parent": {"pid": 2660}, "name": "ping", "executable": "/bin/ping", "args": ["google.com"], "exit_code": 0})
    );
    assert_eq!(ecs["event"]["category"], json!(["process"]));
}

#[test]
fn every_fixture_event_maps_and_keeps_its_original() {
    let mapper = mapper();
    let mut categorised = 0;
    for line in fixture_lines() {
        let json = mapper.map("some-id", line.as_bytes()).unwrap_or_else(|| panic!("not mapped: {line}"));
        let ecs: Value = serde_json::from_slice(&json).expect("JSON");
        let original: Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(ecs["teleport"], original, "{line}");
        assert_eq!(ecs["event"]["action"], original["event"], "{line}");
        assert_eq!(ecs["@timestamp"], original["time"], "{line}");
        assert_eq!(ecs["event"]["id"], "some-id");
        if ecs["event"].get("category").is_some() {
            categorised += 1;
        }
        // Odd `user` values (objects in `device` events) stay only in `teleport`.
        match original.get("user") {
            Some(Value::String(user)) => assert_eq!(ecs["user"]["name"], *user),
            _ => assert!(ecs.get("user").is_none(), "{line}"),
        }
    }
    assert_eq!(categorised, 104);
}

#[test]
fn what_is_not_a_teleport_event_passes_unchanged() {
    let mapper = mapper();
    for odd in [&b"not json"[..], b"[1,2]", b"{}", br#"{"event":{"action":"user.login"}}"#, br#"{"event":7}"#] {
        assert_eq!(mapper.map("id", odd), None, "{}", String::from_utf8_lossy(odd));
    }
    let (ecs, _) = mapped("84c07a99-856c-419f-9de5-15560451a116");
    let again = mapper.map("id", &serde_json::to_vec(&ecs).expect("JSON"));
    assert_eq!(again, None, "mapping twice changes nothing");
}

#[test]
fn odd_field_types_are_skipped_not_fatal() {
    let json = br#"{"event":"session.start","time":5,"user":["a"],"addr.remote":"not an address","addr.local":7,"ei":"x","success":"yes","code":""}"#;
    let ecs: Value = serde_json::from_slice(&mapper().map("", json).expect("mapped")).expect("JSON");
    assert_eq!(ecs["source"], json!({"address": "not an address"}));
    assert!(ecs.get("@timestamp").is_none() && ecs.get("user").is_none() && ecs.get("destination").is_none());
    assert!(ecs["event"].get("sequence").is_none() && ecs["event"].get("outcome").is_none() && ecs["event"].get("id").is_none());
}

#[test]
fn config() {
    let mapper = Mapper::from_config(r#"{"dataset":"teleport.prod"}"#).expect("valid");
    let json = mapper.map("x", br#"{"event":"exec"}"#).expect("mapped");
    assert!(String::from_utf8_lossy(&json).contains(r#""dataset":"teleport.prod""#));
    assert_eq!(
        Mapper::from_config(r#"{"dataset":" "}"#).expect_err("blank"),
        "config: `dataset` is blank; leave it out for \"teleport.audit\""
    );
    assert_eq!(Mapper::from_config(r#"{"datset":"x"}"#).expect_err("typo"), "config: `datset`: unknown field `datset`, expected `dataset`");
}
