//! The mapping itself: one Teleport event object in, one ECS object out.

use crate::address::{self, Address};
use crate::{ECS_VERSION, category};
use serde_json::{Map, Value, json};

/// The ECS form of `original`, or `None` when it is not a Teleport event
/// (no string `event`).
pub(crate) fn to_ecs(id: &str, dataset: &str, original: Map<String, Value>) -> Option<Map<String, Value>> {
    let action = original.get("event")?.as_str()?;
    let text = |key: &str| original.get(key).and_then(Value::as_str).filter(|text| !text.is_empty());
    let mut out = Map::new();
    if let Some(time) = text("time") {
        out.insert("@timestamp".into(), time.into());
    }
    out.insert("ecs".into(), json!({ "version": ECS_VERSION }));
    out.insert("event".into(), Value::Object(event_fields(id, dataset, action, &original)));
    if let Some(message) = text("message") {
        out.insert("message".into(), message.into());
    }
    if let Some(error) = text("error") {
        out.insert("error".into(), json!({ "message": error }));
    }
    if let Some(user) = text("user") {
        out.insert("user".into(), json!({ "name": user }));
    }
    let source = text("addr.remote").and_then(|text| endpoint(text, &mut out, "source"));
    let destination = text("addr.local").and_then(|text| endpoint(text, &mut out, "destination"));
    let mut host = Map::new();
    put(&mut host, "name", text("server_hostname"));
    put(&mut host, "id", text("server_id"));
    insert_object(&mut out, "host", host);
    let mut labels = Map::new();
    put(&mut labels, "teleport_cluster", text("cluster_name"));
    put(&mut labels, "session_id", text("sid"));
    insert_object(&mut out, "labels", labels);
    if let Some(cluster) = text("kubernetes_cluster") {
        out.insert("orchestrator".into(), json!({ "cluster": { "name": cluster }, "type": "kubernetes" }));
    }
    if action == "session.command" {
        insert_object(&mut out, "process", process_fields(&original));
    }
    if matches!(action, "sftp" | "scp")
        && let Some(path) = text("path")
    {
        out.insert("file".into(), json!({ "path": path }));
    }
    let mut related = Map::new();
    let users: Vec<&str> = dedup([text("user"), text("login")]);
    let ips: Vec<String> = dedup([source.map(|ip| ip.to_string()), destination.map(|ip| ip.to_string())]);
    if !users.is_empty() {
        related.insert("user".into(), users.into());
    }
    if !ips.is_empty() {
        related.insert("ip".into(), ips.into());
    }
    insert_object(&mut out, "related", related);
    out.insert("teleport".into(), Value::Object(original));
    Some(out)
}

/// The `event` object: id, action, code, kind, category, type, outcome,
/// module, dataset, sequence.
fn event_fields(id: &str, dataset: &str, action: &str, original: &Map<String, Value>) -> Map<String, Value> {
    let mut event = Map::new();
    if !id.is_empty() {
        event.insert("id".into(), id.into());
    }
    event.insert("action".into(), action.into());
    let code = original.get("code").and_then(Value::as_str);
    if let Some(code) = code {
        event.insert("code".into(), code.into());
    }
    event.insert("kind".into(), "event".into());
    if let Some((categories, types)) = category::of(action) {
        event.insert("category".into(), categories.to_vec().into());
        event.insert("type".into(), types.to_vec().into());
    }
    if let Some(outcome) = outcome(original.get("success").and_then(Value::as_bool), code) {
        event.insert("outcome".into(), outcome.into());
    }
    event.insert("module".into(), "teleport".into());
    event.insert("dataset".into(), dataset.into());
    if let Some(sequence) = original.get("ei").and_then(Value::as_i64) {
        event.insert("sequence".into(), sequence.into());
    }
    event
}

/// `success` decides when Teleport wrote it; otherwise the code's severity
/// letter does: `I`nfo is a success, `W`arning and `E`rror are failures.
pub(crate) fn outcome(success: Option<bool>, code: Option<&str>) -> Option<&'static str> {
    match (success, code.and_then(|code| code.chars().last())) {
        (Some(true), _) => Some("success"),
        (Some(false), _) => Some("failure"),
        (None, Some('I')) => Some("success"),
        (None, Some('W' | 'E')) => Some("failure"),
        _ => None,
    }
}

/// Writes `source` or `destination` from an address text; returns its IP.
fn endpoint(text: &str, out: &mut Map<String, Value>, key: &str) -> Option<std::net::IpAddr> {
    let mut fields = Map::new();
    fields.insert("address".into(), text.into());
    let Some(Address { ip, domain, port }) = address::split(text) else {
        out.insert(key.into(), Value::Object(fields));
        return None;
    };
    if let Some(ip) = ip {
        fields.insert("ip".into(), ip.to_string().into());
    }
    put(&mut fields, "domain", domain);
    if let Some(port) = port {
        fields.insert("port".into(), port.into());
    }
    out.insert(key.into(), Value::Object(fields));
    ip
}

/// `process.*` of a `session.command` (enhanced session recording).
fn process_fields(original: &Map<String, Value>) -> Map<String, Value> {
    let mut process = Map::new();
    let number = |key: &str| original.get(key).filter(|value| value.is_i64() || value.is_u64()).cloned();
    if let Some(pid) = number("pid") {
        process.insert("pid".into(), pid);
    }
    if let Some(ppid) = number("ppid") {
        process.insert("parent".into(), json!({ "pid": ppid }));
    }
    put(&mut process, "name", original.get("program").and_then(Value::as_str));
    put(&mut process, "executable", original.get("path").and_then(Value::as_str));
    if let Some(argv) = original.get("argv").filter(|argv| argv.as_array().is_some_and(|items| items.iter().all(Value::is_string))) {
        process.insert("args".into(), argv.clone());
    }
    if let Some(code) = number("return_code") {
        process.insert("exit_code".into(), code);
    }
    process
}

fn put(object: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        object.insert(key.into(), value.into());
    }
}

/// Inserts an object unless it is empty: ECS readers expect absent rather
/// than empty objects.
fn insert_object(out: &mut Map<String, Value>, key: &str, object: Map<String, Value>) {
    if !object.is_empty() {
        out.insert(key.into(), Value::Object(object));
    }
}

/// The values present, each once, in order.
fn dedup<T: PartialEq, const N: usize>(values: [Option<T>; N]) -> Vec<T> {
    let mut out = Vec::new();
    for value in values.into_iter().flatten() {
        if !out.contains(&value) {
            out.push(value);
        }
    }
    out
}
