//! The Helm chart (`packaging/helm/ferry`) takes every value of Teleport's
//! teleport-plugin-event-handler chart, reads none that it does not define,
//! and renders a config that ferry loads.
//!
//! There is no `helm` on the machines that run these tests (Debian does not
//! package it and its download site is out of reach), so the templates are
//! checked as text against the values file, read as YAML.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

/// The kinds of value a key may hold, as the upstream chart gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Number,
    Flag,
    Map,
    List,
}

/// Every value of teleport-plugin-event-handler's chart (values.yaml and
/// values.schema.json of Teleport's `examples/chart/event-handler`, and the
/// `annotations`, `extraArgs` and `extraEnv` its later versions take), with
/// its kind.
const UPSTREAM: &[(&str, Kind)] = &[
    ("teleport.address", Kind::Text),
    ("teleport.identitySecretName", Kind::Text),
    ("teleport.identitySecretPath", Kind::Text),
    ("teleport.debug", Kind::Flag),
    ("eventHandler.storagePath", Kind::Text),
    ("eventHandler.timeout", Kind::Text),
    ("eventHandler.batch", Kind::Number),
    ("eventHandler.windowSize", Kind::Text),
    ("eventHandler.debug", Kind::Flag),
    ("eventHandler.types", Kind::List),
    ("eventHandler.skipEventTypes", Kind::List),
    ("eventHandler.skipSessionTypes", Kind::List),
    ("fluentd.url", Kind::Text),
    ("fluentd.sessionUrl", Kind::Text),
    ("fluentd.certificate.secretName", Kind::Text),
    ("fluentd.certificate.caPath", Kind::Text),
    ("fluentd.certificate.certPath", Kind::Text),
    ("fluentd.certificate.keyPath", Kind::Text),
    ("tbot.enabled", Kind::Flag),
    ("tbot.clusterName", Kind::Text),
    ("tbot.teleportProxyAddress", Kind::Text),
    ("tbot.teleportAuthAddress", Kind::Text),
    ("tbot.joinMethod", Kind::Text),
    ("tbot.token", Kind::Text),
    ("persistentVolumeClaim.enabled", Kind::Flag),
    ("persistentVolumeClaim.size", Kind::Text),
    ("persistentVolumeClaim.storageClassName", Kind::Text),
    ("persistentVolumeClaim.existingClaim", Kind::Text),
    ("persistentVolumeClaim.volumeName", Kind::Text),
    ("image.repository", Kind::Text),
    ("image.pullPolicy", Kind::Text),
    ("image.tag", Kind::Text),
    ("imagePullSecrets", Kind::List),
    ("nameOverride", Kind::Text),
    ("fullnameOverride", Kind::Text),
    ("podAnnotations", Kind::Map),
    ("podSecurityContext", Kind::Map),
    ("securityContext", Kind::Map),
    ("resources", Kind::Map),
    ("nodeSelector", Kind::Map),
    ("tls.existingCASecretName", Kind::Text),
    ("tolerations", Kind::List),
    ("affinity", Kind::Map),
    ("volumes", Kind::List),
    ("volumeMounts", Kind::List),
    ("annotations", Kind::Map),
    ("extraArgs", Kind::List),
    ("extraEnv", Kind::List),
];

/// tbot's own settings: the upstream chart hands them to its tbot
/// sub-chart. ferry's chart keeps them (a values file with them still
/// installs) but refuses `tbot.enabled: true` with a message saying to
/// deploy Teleport's tbot chart, so no template needs the rest.
const READ_ONLY_WITH_TBOT: &[&str] =
    &["tbot.clusterName", "tbot.teleportProxyAddress", "tbot.teleportAuthAddress", "tbot.joinMethod", "tbot.token"];

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/ferry")
}

fn values() -> Yaml {
    let path = chart().join("values.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    YamlLoader::load_from_str(&text).expect("values.yaml is YAML").remove(0)
}

/// The value at a dotted `path`, if the values define it.
fn lookup<'y>(values: &'y Yaml, path: &str) -> Option<&'y Yaml> {
    path.split('.').try_fold(values, |node, key| match &node[key] {
        Yaml::BadValue => None,
        found => Some(found),
    })
}

fn kind(value: &Yaml) -> Option<Kind> {
    match value {
        Yaml::String(_) => Some(Kind::Text),
        Yaml::Integer(_) | Yaml::Real(_) => Some(Kind::Number),
        Yaml::Boolean(_) => Some(Kind::Flag),
        Yaml::Hash(_) => Some(Kind::Map),
        Yaml::Array(_) => Some(Kind::List),
        _ => None,
    }
}

/// Every template of the chart, with its name.
fn templates() -> Vec<(String, String)> {
    let dir = chart().join("templates");
    let mut found: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("read {}: {err}", dir.display()))
        .map(|entry| entry.expect("list templates").path())
        .map(|path| {
            (path.file_name().expect("a file").to_string_lossy().into_owned(), std::fs::read_to_string(&path).expect("read a template"))
        })
        .collect();
    found.sort();
    found
}

/// The dotted paths the templates read as `.Values.…`.
fn paths_read() -> BTreeSet<String> {
    let mut read = BTreeSet::new();
    for (_, text) in templates() {
        for (at, _) in text.match_indices(".Values.") {
            let rest = &text[at + ".Values.".len()..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(rest.len());
            read.insert(rest[..end].trim_end_matches('.').to_owned());
        }
    }
    read
}

#[test]
fn every_value_of_the_event_handlers_chart_is_defined_with_its_kind() {
    let values = values();
    let mismatched: Vec<String> = UPSTREAM
        .iter()
        .filter_map(|(path, expected)| match lookup(&values, path) {
            None => Some(format!("{path}: missing")),
            Some(value) if kind(value) != Some(*expected) => Some(format!("{path}: {:?}, upstream {expected:?}", kind(value))),
            Some(_) => None,
        })
        .collect();
    assert!(mismatched.is_empty(), "values.yaml does not take the upstream chart's values:\n{}", mismatched.join("\n"));
}

#[test]
fn every_value_of_the_event_handlers_chart_is_read_by_a_template() {
    let read = paths_read();
    let unread: Vec<&str> = UPSTREAM
        .iter()
        .map(|(path, _)| *path)
        .filter(|path| !READ_ONLY_WITH_TBOT.contains(path))
        // Read itself, as a whole with its parent (`toYaml .Values.resources`),
        // or, for a map, key by key (`.Values.annotations.pod`).
        .filter(|path| !read.iter().any(|r| path == r || path.starts_with(&format!("{r}.")) || r.starts_with(&format!("{path}."))))
        .collect();
    assert!(unread.is_empty(), "values the templates never read (a user's setting would be ignored without a word): {unread:?}");
}

#[test]
fn the_templates_read_only_values_that_values_yaml_defines() {
    let values = values();
    let undefined: Vec<String> = paths_read().into_iter().filter(|path| lookup(&values, path).is_none()).collect();
    assert!(undefined.is_empty(), "templates read values that values.yaml does not define (a typo renders as empty): {undefined:?}");
}

#[test]
fn one_pod_at_a_time_with_probes_on_healthz_and_readyz() {
    let (_, deployment) = templates().into_iter().find(|(name, _)| name == "deployment.yaml").expect("templates/deployment.yaml");
    for needed in [
        "replicas: 1",
        "type: Recreate",
        "path: /healthz",
        "path: /readyz",
        "--http-addr",
        "mountPath: {{ .Values.eventHandler.storagePath | quote }}",
    ] {
        assert!(deployment.contains(needed), "deployment.yaml lacks `{needed}`");
    }
    assert!(!deployment.contains("replicas: {{"), "the replica count must not be a value: two readers of one state race on the cursor");
}

#[test]
fn tbot_enabled_is_refused_with_a_message_saying_what_to_do() {
    let (_, configmap) = templates().into_iter().find(|(name, _)| name == "configmap.yaml").expect("templates/configmap.yaml");
    let refusal = configmap.lines().skip_while(|line| !line.contains("if .Values.tbot.enabled")).nth(1).unwrap_or_default();
    assert!(
        refusal.contains("fail") && refusal.contains("tbot chart") && refusal.contains("identitySecretName"),
        "tbot.enabled is not refused clearly: {refusal}"
    );
}

/// The keys the config map writes, in the order it writes them.
fn keys_written(configmap: &str) -> Vec<String> {
    configmap
        .lines()
        .skip_while(|line| !line.contains("ferry.toml: |"))
        .filter_map(|line| line.trim().split_once(" = ").map(|(key, _)| key.to_owned()))
        .collect()
}

#[test]
fn the_rendered_config_is_one_ferry_loads() {
    let (_, configmap) = templates().into_iter().find(|(name, _)| name == "configmap.yaml").expect("templates/configmap.yaml");
    let rendered_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chart-rendered-ferry.toml");
    let rendered = std::fs::read_to_string(&rendered_path).expect("read the rendered config");
    // The hand rendering (for ci/example-values.yaml) has every key the
    // template can write, but `types` and `skip-event-types`, which that
    // example leaves empty.
    let rendered_keys: Vec<String> = rendered.lines().filter_map(|line| line.split_once(" = ").map(|(key, _)| key.to_owned())).collect();
    let missing: Vec<String> = keys_written(&configmap)
        .into_iter()
        .filter(|key| !rendered_keys.contains(key) && key != "types" && key != "skip-event-types")
        .collect();
    assert!(missing.is_empty(), "the hand-rendered config lacks keys the template writes: {missing:?}");

    let config =
        ferry::app::FerryConfig::load(&rendered_path).unwrap_or_else(|err| panic!("ferry does not load the chart's config: {err}"));
    assert_eq!(
        config.sinks.len(),
        2,
        "[forward.fluentd] becomes the events and the sessions sinks: {:?}",
        config.sinks.keys().collect::<Vec<_>>()
    );
    let source = format!("{:?}", config.source.expect("[teleport] becomes the source"));
    assert!(source.contains("teleport.example.com:443"), "the Teleport address is not the chart's: {source}");
}
