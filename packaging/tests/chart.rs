//! The Helm chart (`packaging/helm/ferry`) takes every value of Teleport's
//! teleport-plugin-event-handler chart, reads none that it does not define,
//! honours each (in ferry.toml, in the event handler's own key spelling, or
//! in the Kubernetes objects) or refuses it with a message saying what to do
//! instead, and refuses a key it does not know (values.schema.json).
//!
//! The chart is rendered for real, by Helm's own Go code: `render.py` beside
//! this file drives PyPI's helm-python-sdk (Helm through its C library),
//! which `./test` installs under target/chart-renderer and names in
//! `FERRY_CHART_PYTHON`. The text checks at the top need no renderer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
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

/// Every value of teleport-plugin-event-handler's chart (values.yaml,
/// values.schema.json, the templates and the generated chart reference of
/// Teleport's `examples/chart/event-handler` across its versions), with its
/// kind.
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
    ("eventHandler.startTime", Kind::Text),
    ("eventHandler.dryRun", Kind::Flag),
    ("eventHandler.concurrency", Kind::Number),
    ("eventHandler.namespace", Kind::Text),
    ("eventHandler.lock.enabled", Kind::Flag),
    ("eventHandler.lock.failedAttemptsCount", Kind::Number),
    ("eventHandler.lock.period", Kind::Text),
    ("eventHandler.lock.for", Kind::Text),
    ("fluentd.url", Kind::Text),
    ("fluentd.sessionUrl", Kind::Text),
    ("fluentd.certificate.secretName", Kind::Text),
    ("fluentd.certificate.caPath", Kind::Text),
    ("fluentd.certificate.certPath", Kind::Text),
    ("fluentd.certificate.keyPath", Kind::Text),
    ("fluentd.maxConnections", Kind::Number),
    ("tbot.enabled", Kind::Flag),
    ("tbot.clusterName", Kind::Text),
    ("tbot.teleportProxyAddress", Kind::Text),
    ("tbot.teleportAuthAddress", Kind::Text),
    ("tbot.joinMethod", Kind::Text),
    ("tbot.token", Kind::Text),
    ("tbot.nameOverride", Kind::Text),
    ("tbot.defaultOutput.enabled", Kind::Flag),
    ("tbot.serviceAccount.name", Kind::Text),
    ("certManager.enabled", Kind::Flag),
    ("certManager.dnsNames", Kind::List),
    ("certManager.ipAddresses", Kind::List),
    ("certManager.ttl", Kind::Text),
    ("certManager.renewBefore", Kind::Text),
    ("certManager.namespace", Kind::Text),
    ("certManager.issuer.create", Kind::Flag),
    ("certManager.issuer.name", Kind::Text),
    ("certManager.issuer.kind", Kind::Text),
    ("certManager.issuer.group", Kind::Text),
    ("certManager.issuerName", Kind::Text),
    ("certManager.issuerKind", Kind::Text),
    ("certManager.issuerGroup", Kind::Text),
    ("crd.create", Kind::Flag),
    ("crd.namespace", Kind::Text),
    ("crd.tokenSpecOverride", Kind::Map),
    ("serviceAccount.create", Kind::Flag),
    ("serviceAccount.name", Kind::Text),
    ("serviceAccount.automount", Kind::Flag),
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
    ("tls.existingCASecretKeyName", Kind::Text),
    ("tolerations", Kind::List),
    ("affinity", Kind::Map),
    ("volumes", Kind::List),
    ("volumeMounts", Kind::List),
    ("annotations.config", Kind::Map),
    ("annotations.deployment", Kind::Map),
    ("annotations.pod", Kind::Map),
    ("annotations.certSecret", Kind::Map),
    ("extraLabels.config", Kind::Map),
    ("extraLabels.deployment", Kind::Map),
    ("extraLabels.pod", Kind::Map),
    ("extraLabels.certSecret", Kind::Map),
    ("extraArgs", Kind::List),
    ("extraEnv", Kind::List),
];

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

/// The dotted path that starts `text` (`eventHandler.lock.enabled }}` gives
/// `eventHandler.lock.enabled`).
fn dotted(text: &str) -> &str {
    let end = text.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(text.len());
    text[..end].trim_end_matches('.')
}

/// The dotted paths the templates read as `.Values.…`, or through a
/// variable holding part of them (`$eh := .Values.eventHandler`, then
/// `$eh.startTime`). Taking a part into a variable reads nothing by itself.
fn paths_read() -> BTreeSet<String> {
    let mut read = BTreeSet::new();
    for (_, text) in templates() {
        let mut aliases = BTreeMap::new();
        for (at, _) in text.match_indices(" := .Values") {
            let name_start = text[..at].rfind('$').expect("a variable");
            let path = dotted(text[at + " := .Values".len()..].trim_start_matches('.'));
            aliases.insert(text[name_start..at].to_owned(), path.to_owned());
        }
        for (at, _) in text.match_indices(".Values.") {
            if !text[..at].ends_with(" := ") {
                read.insert(dotted(&text[at + ".Values.".len()..]).to_owned());
            }
        }
        for (name, base) in &aliases {
            for (at, _) in text.match_indices(&format!("{name}.")) {
                let rest = dotted(&text[at + name.len() + 1..]);
                read.insert(if base.is_empty() { rest.to_owned() } else { format!("{base}.{rest}") });
            }
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
        // Read itself, as a whole with its parent (`toYaml .Values.resources`),
        // or, for a map, key by key (`.Values.annotations.pod`).
        .filter(|path| !read.iter().any(|r| path == r || path.starts_with(&format!("{r}.")) || r.starts_with(&format!("{path}."))))
        .collect();
    assert!(unread.is_empty(), "values the templates never read (a user's setting would be ignored without a word): {unread:?}");
}

/// The dotted paths of every key values.schema.json takes (JSON is YAML),
/// with whether the schema says it is refused.
fn schema_keys() -> Vec<(String, bool)> {
    fn walk(node: &Yaml, prefix: &str, found: &mut Vec<(String, bool)>) {
        let Some(properties) = node["properties"].as_hash() else { return };
        for (key, child) in properties {
            let path = format!("{prefix}{}", key.as_str().expect("a key"));
            if child["properties"].as_hash().is_some() {
                walk(child, &format!("{path}."), found);
            } else {
                let refused = child["description"].as_str().is_some_and(|text| text.starts_with("refused"));
                found.push((path, refused));
            }
        }
    }
    let path = chart().join("values.schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    let schema = YamlLoader::load_from_str(&text).expect("values.schema.json is JSON").remove(0);
    let mut found = Vec::new();
    walk(&schema, "", &mut found);
    found
}

/// A key the schema takes is one a template reads (or, refused, one the
/// checks name): the schema lets nothing through that is then ignored.
#[test]
fn every_key_the_schema_takes_is_read_or_refused() {
    let read = paths_read();
    let checks = templates().into_iter().find(|(name, _)| name == "_checks.tpl").expect("templates/_checks.tpl").1;
    let ignored: Vec<String> = schema_keys()
        .into_iter()
        .filter(|(path, refused)| {
            if *refused {
                let key = path.rsplit('.').next().unwrap_or(path);
                return !checks.contains(&format!("\"{key}\""));
            }
            !read.iter().any(|r| path == r || path.starts_with(&format!("{r}.")))
        })
        .map(|(path, _)| path)
        .collect();
    assert!(ignored.is_empty(), "keys the schema takes but no template reads or refuses (they would be ignored): {ignored:?}");
}

#[test]
fn the_templates_read_only_values_that_values_yaml_defines() {
    let values = values();
    let undefined: Vec<String> = paths_read().into_iter().filter(|path| lookup(&values, path).is_none()).collect();
    assert!(undefined.is_empty(), "templates read values that values.yaml does not define (a typo renders as empty): {undefined:?}");
}

#[test]
fn probes_on_healthz_and_readyz_and_one_recreated_pod_on_sqlite() {
    let (_, deployment) = templates().into_iter().find(|(name, _)| name == "deployment.yaml").expect("templates/deployment.yaml");
    for needed in
        ["type: Recreate", "path: /healthz", "path: /readyz", "--http-addr", "mountPath: {{ .Values.eventHandler.storagePath | quote }}"]
    {
        assert!(deployment.contains(needed), "deployment.yaml lacks `{needed}`");
    }
}

// ---------------------------------------------------------------------------
// The chart rendered by Helm's own code.

/// The Python that has helm-python-sdk: `FERRY_CHART_PYTHON` (set by
/// `./test`), else the venv `./test` makes under target/chart-renderer.
fn renderer_python() -> PathBuf {
    let python = std::env::var_os("FERRY_CHART_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/chart-renderer/bin/python"));
    assert!(
        python.exists(),
        "no chart renderer at {} (FERRY_CHART_PYTHON): run ./test to install the chart renderer (helm-python-sdk)",
        python.display()
    );
    python
}

/// What `helm install` makes of values files: the rendered templates by
/// file name, or the one-line refusal (schema, `fail`, `required`).
fn render(values: &[&str]) -> Result<Rendered, String> {
    let dir = tempfile::tempdir().expect("a scratch folder");
    let out = dir.path().join("out");
    let mut command = Command::new(renderer_python());
    command.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/render.py")).arg(chart()).arg(&out);
    for (n, text) in values.iter().enumerate() {
        let path = dir.path().join(format!("values-{n}.yaml"));
        std::fs::write(&path, text).expect("write a values file");
        command.arg(path);
    }
    let output = command.output().expect("run the chart renderer");
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    match output.status.code() {
        Some(0) => {}
        Some(1) => return Err(stderr),
        _ => panic!("the chart renderer failed: {stderr}"),
    }
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&out).expect("read the rendered templates") {
        let path = entry.expect("list the rendered templates").path();
        let name = path.file_name().expect("a file").to_string_lossy().into_owned();
        files.insert(name, std::fs::read_to_string(&path).expect("read a rendered template"));
    }
    Ok(Rendered { files })
}

/// `render` that must succeed.
fn installs(values: &[&str]) -> Rendered {
    render(values).unwrap_or_else(|refusal| panic!("the chart refuses the values: {refusal}"))
}

/// `render` that must fail with a message holding every one of `words`.
fn refused(values: &[&str], words: &[&str]) -> String {
    match render(values) {
        Ok(_) => panic!("the chart renders values it should refuse (expected a message with {words:?})"),
        Err(message) => {
            let missing: Vec<&&str> = words.iter().filter(|word| !message.contains(**word)).collect();
            assert!(missing.is_empty(), "the refusal does not say {missing:?}: {message}");
            message
        }
    }
}

struct Rendered {
    files: BTreeMap<String, String>,
}

impl Rendered {
    /// Every Kubernetes object rendered.
    fn objects(&self) -> Vec<Yaml> {
        self.files
            .iter()
            .flat_map(|(name, text)| {
                YamlLoader::load_from_str(text).unwrap_or_else(|err| panic!("{name} renders as bad YAML: {err}\n{text}"))
            })
            .filter(|doc| !doc.is_null() && !doc.is_badvalue())
            .collect()
    }

    /// The object of `kind` named `name`.
    fn object(&self, kind: &str, name: &str) -> Yaml {
        let objects = self.objects();
        let found = objects.iter().find(|o| o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name)).cloned();
        found.unwrap_or_else(|| {
            let all: Vec<String> = objects
                .iter()
                .map(|o| format!("{}/{}", o["kind"].as_str().unwrap_or("?"), o["metadata"]["name"].as_str().unwrap_or("?")))
                .collect();
            panic!("no {kind} {name} rendered; rendered: {all:?}")
        })
    }

    fn kinds(&self) -> BTreeSet<String> {
        self.objects().iter().filter_map(|o| o["kind"].as_str().map(str::to_owned)).collect()
    }

    /// ferry.toml as the config map holds it.
    fn ferry_toml(&self) -> String {
        self.object("ConfigMap", "ferry")["data"]["ferry.toml"].as_str().expect("the config map holds ferry.toml").to_owned()
    }

    /// ferry.toml, loaded by ferry as `ferry start` loads it.
    fn ferry_config(&self) -> ferry::app::FerryConfig {
        let dir = tempfile::tempdir().expect("a scratch folder");
        let path = dir.path().join("ferry.toml");
        std::fs::write(&path, self.ferry_toml()).expect("write ferry.toml");
        ferry::app::FerryConfig::load(&path)
            .unwrap_or_else(|err| panic!("ferry does not load the chart's config: {err}\n{}", self.ferry_toml()))
    }

    fn deployment(&self) -> Yaml {
        self.object("Deployment", "ferry")
    }

    fn pod(&self) -> Yaml {
        self.deployment()["spec"]["template"]["spec"].clone()
    }

    fn ferry_container(&self) -> Yaml {
        self.pod()["containers"][0].clone()
    }
}

/// The fewest values that install: what every guide has the user set.
const MINIMAL: &str = "
teleport:
  address: teleport.example.com:443
  identitySecretName: teleport-event-handler-identity
fluentd:
  url: https://logstash.example.com:9601/events.log
  sessionUrl: https://logstash.example.com:9601/session
  certificate:
    secretName: teleport-event-handler-client-tls
";

fn example_values() -> String {
    let path = chart().join("ci/example-values.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

fn the_teleport_source(config: &ferry::app::FerryConfig) -> &ferry::source::teleport::TeleportSourceConfig {
    match config.source.as_ref().expect("[teleport] becomes the source") {
        ferry::source::SourceConfig::Teleport(teleport) => teleport,
        ferry::source::SourceConfig::File(_) => panic!("the chart's config reads a file, not Teleport"),
    }
}

fn max_connections(config: &ferry::app::FerryConfig) -> Vec<Option<usize>> {
    config
        .sinks
        .values()
        .filter_map(|sink| match sink {
            ferry::sink::SinkConfig::Logstash(http) | ferry::sink::SinkConfig::Http(http) => Some(http.max_connections),
            _ => None,
        })
        .collect()
}

/// A map in the rendered YAML, as text pairs.
fn pairs(map: &Yaml) -> BTreeMap<String, String> {
    map.as_hash()
        .map(|hash| hash.iter().filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default()
}

fn has_pair(map: &Yaml, key: &str, value: &str) -> bool {
    pairs(map).get(key).map(String::as_str) == Some(value)
}

#[test]
fn the_example_values_install_and_render_a_config_ferry_loads() {
    let rendered = installs(&[&example_values()]);
    let config = rendered.ferry_config();
    assert_eq!(
        config.sinks.len(),
        2,
        "[forward.fluentd] becomes the events and the sessions sinks: {:?}",
        config.sinks.keys().collect::<Vec<_>>()
    );
    let teleport = the_teleport_source(&config);
    assert_eq!(teleport.addr, "teleport.example.com:443");
    assert_eq!(teleport.page_size, 500, "eventHandler.batch");
    assert_eq!(teleport.skip_session_types, ["print", "desktop.recording"], "eventHandler.skipSessionTypes");
    assert!(teleport.refresh.enabled, "the identity is re-read when renewed");
    assert!(rendered.kinds().contains("PersistentVolumeClaim"), "persistentVolumeClaim.enabled");
}

/// `helm lint --strict` finds nothing to warn about with each example
/// values file under ci/ (the files chart-testing installs).
#[test]
fn helm_lint_passes_with_every_example_values_file() {
    let dir = chart().join("ci");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).expect("read ci/").map(|entry| entry.expect("list ci/").path()).collect();
    files.sort();
    assert!(files.len() >= 3, "ci/ holds the plain, tbot and cert-manager examples: {files:?}");
    for file in files {
        installs(&[&std::fs::read_to_string(&file).expect("read a values file")]).ferry_config();
        let output = Command::new(renderer_python())
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/render.py"))
            .arg("--lint")
            .arg(chart())
            .arg(&file)
            .output()
            .expect("run helm lint");
        assert!(output.status.success(), "helm lint --strict with {}: {}", file.display(), String::from_utf8_lossy(&output.stderr));
    }
}

#[test]
fn the_event_handlers_settings_reach_ferry_toml_in_its_own_key_spelling() {
    let rendered = installs(&[
        MINIMAL,
        "
eventHandler:
  startTime: 2024-05-01T00:00:00Z
  dryRun: true
  concurrency: 8
  lock:
    enabled: true
    failedAttemptsCount: 7
    period: 5m
    for: 1h
  skipEventTypes: app.session.chunk,cert.create
fluentd:
  maxConnections: 12
",
    ]);
    let text = rendered.ferry_toml();
    for key in [
        "start-time = ",
        "dry-run = true",
        "concurrency = 8",
        "lock-enabled = true",
        "lock-failed-attempts-count = 7",
        "lock-period = ",
        "lock-for = ",
        "max-connections = 12",
    ] {
        assert!(text.contains(key), "ferry.toml lacks `{key}` (the event handler's spelling, which ferry reads):\n{text}");
    }
    let config = rendered.ferry_config();
    assert!(config.dry_run, "eventHandler.dryRun");
    let teleport = the_teleport_source(&config);
    let start = teleport.start_time.as_deref().expect("eventHandler.startTime");
    let start = ferry::source::teleport::config::parse_start_time(start).expect("an RFC 3339 start time");
    assert_eq!(start, std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_714_521_600), "eventHandler.startTime");
    assert_eq!(teleport.concurrency, 8, "eventHandler.concurrency");
    assert_eq!(teleport.skip_event_types, ["app.session.chunk", "cert.create"], "a comma-separated string, as a list");
    assert!(teleport.lock.enabled, "eventHandler.lock.enabled");
    assert_eq!(teleport.lock.failed_attempts_count, 7, "eventHandler.lock.failedAttemptsCount");
    assert_eq!(teleport.lock.period.0, std::time::Duration::from_secs(300), "eventHandler.lock.period");
    assert_eq!(teleport.lock.lock_for.0, std::time::Duration::from_secs(3600), "eventHandler.lock.for");
    assert_eq!(max_connections(&config), [Some(12), Some(12)], "fluentd.maxConnections, for events and sessions");
}

#[test]
fn the_event_handlers_defaults_render_as_its_defaults() {
    let config = installs(&[MINIMAL]).ferry_config();
    assert!(!config.dry_run);
    let teleport = the_teleport_source(&config);
    assert_eq!((teleport.concurrency, teleport.lock.enabled, teleport.start_time.as_deref()), (5, false, None));
    assert_eq!(teleport.lock.failed_attempts_count, 3);
    assert_eq!(teleport.lock.period.0, std::time::Duration::from_secs(60));
    // 0 is not rendered: ferry's default is the event handler's, twice concurrency.
    assert_eq!(max_connections(&config), [Some(10), Some(10)], "fluentd.maxConnections 0");
}

#[test]
fn a_namespace_other_than_default_is_refused() {
    installs(&[MINIMAL, "eventHandler: {namespace: default}"]);
    refused(&[MINIMAL, "eventHandler: {namespace: audit}"], &["eventHandler.namespace", "default"]);
}

#[test]
fn a_typo_fails_the_schema() {
    refused(&[MINIMAL, "eventHandler: {batchh: 50}"], &["batchh"]);
    refused(&[MINIMAL, "fluentd: {ulr: https://x}"], &["ulr"]);
    refused(&[MINIMAL, "eventHandler: {lock: {enabeld: true}}"], &["enabeld"]);
    refused(&[MINIMAL, "teleprot: {address: x:443}"], &["teleprot"]);
    refused(&[MINIMAL, "eventHandler: {concurrency: 0}"], &["concurrency"]);
}

#[test]
fn extra_labels_and_annotations_reach_their_objects() {
    let rendered = installs(&[
        MINIMAL,
        "
extraLabels:
  config: {team: config}
  deployment: {team: deployment}
  pod: {team: pod}
annotations:
  config: {note: config}
  deployment: {note: deployment}
  pod: {note: pod}
",
    ]);
    let config_map = rendered.object("ConfigMap", "ferry");
    let deployment = rendered.deployment();
    for (what, meta, value) in [
        ("config", &config_map["metadata"], "config"),
        ("deployment", &deployment["metadata"], "deployment"),
        ("pod", &deployment["spec"]["template"]["metadata"], "pod"),
    ] {
        assert!(has_pair(&meta["labels"], "team", value), "extraLabels.{what} missing: {:?}", pairs(&meta["labels"]));
        assert!(has_pair(&meta["annotations"], "note", value), "annotations.{what} missing: {:?}", pairs(&meta["annotations"]));
    }
    // The upstream chart's older key too, annotations.pod winning a clash.
    let both = installs(&[MINIMAL, "podAnnotations: {note: old, scrape: 'true'}", "annotations: {pod: {note: pod}}"]);
    let pod_meta = both.deployment()["spec"]["template"]["metadata"].clone();
    assert!(
        has_pair(&pod_meta["annotations"], "note", "pod") && has_pair(&pod_meta["annotations"], "scrape", "true"),
        "{:?}",
        pairs(&pod_meta["annotations"])
    );
    // The selector is the chart's own: extra pod labels never change it.
    assert!(!pairs(&deployment["spec"]["selector"]["matchLabels"]).contains_key("team"));
}

#[test]
fn the_trusted_ca_is_read_from_the_key_tls_names() {
    let rendered = installs(&[MINIMAL, "tls: {existingCASecretName: corp-root-ca, existingCASecretKeyName: bundle.pem}"]);
    let container = rendered.ferry_container();
    let env = container["env"].as_vec().expect("env");
    let ssl = env.iter().find(|e| e["name"].as_str() == Some("SSL_CERT_FILE")).expect("SSL_CERT_FILE is set");
    let file = ssl["value"].as_str().expect("a path");
    assert!(file.ends_with("/bundle.pem"), "tls.existingCASecretKeyName: {file}");
    let mount = container["volumeMounts"]
        .as_vec()
        .expect("mounts")
        .iter()
        .find(|m| file.starts_with(m["mountPath"].as_str().unwrap_or("-")))
        .cloned();
    let mount = mount.unwrap_or_else(|| panic!("nothing is mounted where SSL_CERT_FILE points ({file})"));
    let volume =
        rendered.pod()["volumes"].as_vec().expect("volumes").iter().find(|v| v["name"] == mount["name"]).cloned().expect("its volume");
    assert_eq!(volume["secret"]["secretName"].as_str(), Some("corp-root-ca"), "tls.existingCASecretName");
    refused(&[MINIMAL, "tls: {existingCASecretName: corp-root-ca, existingCASecretKeyName: ''}"], &["tls.existingCASecretKeyName"]);
}

#[test]
fn the_service_account_values_make_and_use_an_account() {
    let rendered = installs(&[MINIMAL, "serviceAccount: {create: true, name: ferry-reader, automount: false}"]);
    let account = rendered.object("ServiceAccount", "ferry-reader");
    assert_eq!(account["automountServiceAccountToken"].as_bool(), Some(false), "serviceAccount.automount");
    let pod = rendered.pod();
    assert_eq!(pod["serviceAccountName"].as_str(), Some("ferry-reader"), "the pod runs as serviceAccount.name");
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));

    let existing = installs(&[MINIMAL, "serviceAccount: {create: false, name: their-account, automount: true}"]);
    assert!(!existing.kinds().contains("ServiceAccount"), "serviceAccount.create false makes none");
    assert_eq!(existing.pod()["serviceAccountName"].as_str(), Some("their-account"));
    assert_eq!(existing.pod()["automountServiceAccountToken"].as_bool(), Some(true), "serviceAccount.automount");
}

/// cert-manager values of the upstream chart's own lint file.
const CERT_MANAGER: &str = "
certManager:
  enabled: true
  dnsNames: [logstash.example.com, logstash.logging.svc]
  ipAddresses: [10.0.0.5]
  renewBefore: 720h
";

#[test]
fn cert_manager_issues_the_certificates_and_ferry_mounts_its_client_certificate() {
    let no_secret = "
teleport: {address: teleport.example.com:443, identitySecretName: id}
fluentd: {url: https://logstash.example.com:9601/events.log}
annotations: {certSecret: {reflector: 'yes'}}
extraLabels: {certSecret: {team: audit}}
";
    let rendered = installs(&[no_secret, CERT_MANAGER]);
    let server = rendered.object("Certificate", "ferry-server");
    let client = rendered.object("Certificate", "ferry-client");
    let names: Vec<&str> = server["spec"]["dnsNames"].as_vec().expect("dnsNames").iter().filter_map(Yaml::as_str).collect();
    assert_eq!(names, ["logstash.example.com", "logstash.logging.svc"], "certManager.dnsNames");
    assert_eq!(server["spec"]["ipAddresses"][0].as_str(), Some("10.0.0.5"), "certManager.ipAddresses");
    assert_eq!(server["spec"]["duration"].as_str(), Some("87600h"), "certManager.ttl");
    assert_eq!(server["spec"]["renewBefore"].as_str(), Some("720h"), "certManager.renewBefore");
    assert_eq!(server["spec"]["usages"][0].as_str(), Some("server auth"));
    assert_eq!(client["spec"]["usages"][0].as_str(), Some("client auth"));
    for certificate in [&server, &client] {
        assert_eq!(certificate["spec"]["issuerRef"]["name"].as_str(), Some("ferry-ca-issuer"), "certManager.issuer.create");
        let template = &certificate["spec"]["secretTemplate"];
        assert!(has_pair(&template["annotations"], "reflector", "yes"), "annotations.certSecret");
        assert!(has_pair(&template["labels"], "team", "audit"), "extraLabels.certSecret");
    }
    rendered.object("Issuer", "ferry-selfsigned-issuer");
    rendered.object("Issuer", "ferry-ca-issuer");
    rendered.object("Certificate", "ferry-selfsigned-ca");

    // ferry presents the client certificate cert-manager wrote.
    let client_secret = client["spec"]["secretName"].as_str().expect("a secret");
    let certificate_volume =
        rendered.pod()["volumes"].as_vec().expect("volumes").iter().find(|v| v["name"].as_str() == Some("certificate")).cloned();
    assert_eq!(certificate_volume.expect("the certificate volume")["secret"]["secretName"].as_str(), Some(client_secret));
    let sub_paths: BTreeSet<String> = rendered.ferry_container()["volumeMounts"]
        .as_vec()
        .expect("mounts")
        .iter()
        .filter(|m| m["name"].as_str() == Some("certificate"))
        .filter_map(|m| m["subPath"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(sub_paths, ["ca.crt", "tls.crt", "tls.key"].map(str::to_owned).into(), "cert-manager's keys in the client secret");
    rendered.ferry_config();
}

#[test]
fn cert_manager_takes_an_issuer_of_the_users() {
    let rendered = installs(&[
        MINIMAL,
        CERT_MANAGER,
        "certManager: {issuer: {create: false, name: corp, kind: ClusterIssuer, group: cert-manager.io}}",
    ]);
    assert!(!rendered.kinds().contains("Issuer"), "no issuer of the release's own");
    let reference = &rendered.object("Certificate", "ferry-client")["spec"]["issuerRef"];
    assert_eq!((reference["name"].as_str(), reference["kind"].as_str()), (Some("corp"), Some("ClusterIssuer")));
    // The older flat spelling.
    let older = installs(&[
        MINIMAL,
        CERT_MANAGER,
        "certManager: {issuer: {create: false}, issuerName: old, issuerKind: Issuer, issuerGroup: cert-manager.io}",
    ]);
    assert_eq!(older.object("Certificate", "ferry-server")["spec"]["issuerRef"]["name"].as_str(), Some("old"));
    refused(&[MINIMAL, CERT_MANAGER, "certManager: {issuer: {create: false}}"], &["certManager.issuer.name"]);
}

#[test]
fn cert_manager_values_that_cannot_work_are_refused() {
    refused(&[MINIMAL, "certManager: {enabled: true}"], &["certManager.dnsNames", "certManager.ipAddresses"]);
    refused(&[MINIMAL, CERT_MANAGER, "certManager: {namespace: elsewhere}"], &["certManager.namespace", "elsewhere"]);
    installs(&[MINIMAL, CERT_MANAGER, "certManager: {namespace: teleport}"]);
    refused(&[MINIMAL, "annotations: {certSecret: {a: b}}"], &["annotations.certSecret", "certManager.enabled"]);
    refused(&[MINIMAL, "extraLabels: {certSecret: {a: b}}"], &["extraLabels.certSecret", "certManager.enabled"]);
}

/// tbot values as the upstream chart's lint file has them, and the image tag
/// ferry's chart cannot guess.
const TBOT: &str = "
tbot:
  enabled: true
  clusterName: test.teleport.sh
  teleportProxyAddress: test.teleport.sh:443
  token: test-token
  teleportVersionOverride: 18.1.0
";

#[test]
fn tbot_runs_beside_ferry_and_ferry_reads_the_identity_it_writes() {
    let values = "
fluentd:
  url: https://logstash.example.com:9601/events.log
  certificate: {secretName: client-tls}
";
    let rendered = installs(&[values, TBOT]);
    let tbot = rendered.object("Deployment", "ferry-tbot");
    let container = &tbot["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"].as_str(), Some("public.ecr.aws/gravitational/tbot-distroless:18.1.0"));
    assert_eq!(tbot["spec"]["template"]["spec"]["serviceAccountName"].as_str(), Some("ferry-tbot"));
    let token_volume =
        tbot["spec"]["template"]["spec"]["volumes"].as_vec().expect("volumes").iter().find(|v| !v["projected"].is_badvalue()).cloned();
    let audience = &token_volume.expect("the projected join token")["projected"]["sources"][0]["serviceAccountToken"]["audience"];
    assert_eq!(audience.as_str(), Some("test.teleport.sh"), "the kubernetes join token's audience is tbot.clusterName");

    let config = rendered.object("ConfigMap", "ferry-tbot");
    let config = YamlLoader::load_from_str(config["data"]["tbot.yaml"].as_str().expect("tbot.yaml")).expect("tbot.yaml is YAML").remove(0);
    assert_eq!(config["proxy_server"].as_str(), Some("test.teleport.sh:443"), "tbot.teleportProxyAddress");
    assert_eq!(config["onboarding"]["join_method"].as_str(), Some("kubernetes"), "tbot.joinMethod");
    assert_eq!(config["onboarding"]["token"].as_str(), Some("test-token"), "tbot.token");
    let output = &config["outputs"][0];
    assert_eq!((output["type"].as_str(), output["destination"]["type"].as_str()), (Some("identity"), Some("kubernetes_secret")));
    let secret = output["destination"]["name"].as_str().expect("the output secret");

    // tbot may write that secret...
    rendered.object("ServiceAccount", "ferry-tbot");
    let role = rendered.object("Role", "ferry-tbot");
    let verbs: BTreeSet<&str> = role["rules"][0]["verbs"].as_vec().expect("verbs").iter().filter_map(Yaml::as_str).collect();
    assert!(role["rules"][0]["resources"][0].as_str() == Some("secrets") && verbs.contains("create") && verbs.contains("update"));
    let binding = rendered.object("RoleBinding", "ferry-tbot");
    assert_eq!(binding["subjects"][0]["name"].as_str(), Some("ferry-tbot"));
    assert_eq!(binding["roleRef"]["name"].as_str(), Some("ferry-tbot"));

    // ...which ferry mounts, reading the identity file tbot names `identity`,
    // from the address tbot joins (teleport.address is empty).
    let identity =
        rendered.pod()["volumes"].as_vec().expect("volumes").iter().find(|v| v["name"].as_str() == Some("teleport-identity")).cloned();
    assert_eq!(identity.expect("the identity volume")["secret"]["secretName"].as_str(), Some(secret));
    let ferry_config = rendered.ferry_config();
    let teleport = the_teleport_source(&ferry_config);
    assert_eq!(teleport.addr, "test.teleport.sh:443", "teleport.address falls back to tbot's");
    assert!(teleport.identity.as_ref().is_some_and(|path| path.ends_with("identity")), "{:?}", teleport.identity);
    assert!(teleport.refresh.enabled, "ferry re-reads the identity tbot renews");

    let named = installs(&[values, TBOT, "tbot: {defaultOutput: {secretName: ferry-identity}}"]);
    let volumes = named.pod()["volumes"].clone();
    let identity = volumes.as_vec().expect("volumes").iter().find(|v| v["name"].as_str() == Some("teleport-identity")).cloned();
    assert_eq!(
        identity.expect("the identity volume")["secret"]["secretName"].as_str(),
        Some("ferry-identity"),
        "tbot.defaultOutput.secretName"
    );
    assert!(
        named.object("ConfigMap", "ferry-tbot")["data"]["tbot.yaml"]
            .as_str()
            .is_some_and(|config| config.contains("name: \"ferry-identity\""))
    );
}

#[test]
fn tbot_values_ferrys_chart_cannot_honour_are_refused_with_what_to_do() {
    let base = MINIMAL;
    refused(&[base, TBOT, "tbot: {clusterName: ''}"], &["tbot.clusterName"]);
    refused(&[base, TBOT, "tbot: {teleportVersionOverride: ''}"], &["tbot.teleportVersionOverride", "Teleport version"]);
    refused(&[base, TBOT, "tbot: {teleportAuthAddress: auth:3025}"], &["teleportProxyAddress", "teleportAuthAddress"]);
    refused(&[base, TBOT, "tbot: {teleportProxyAddress: ''}"], &["teleportProxyAddress", "teleportAuthAddress"]);
    refused(&[base, TBOT, "tbot: {defaultOutput: {enabled: false}}"], &["tbot.defaultOutput.enabled"]);
    refused(&[base, TBOT, "tbot: {nameOverride: bot}"], &["tbot.nameOverride"]);
    refused(&[base, TBOT, "tbot: {outputs: [{type: identity}]}"], &["tbot.outputs", "tbot chart", "teleport.identitySecretName"]);
    refused(&[base, TBOT, "tbot: {unknownKey: 1}"], &["unknownKey"]);
}

#[test]
fn crd_create_renders_the_operators_role_bot_and_token() {
    let rendered = installs(&[MINIMAL, TBOT, "crd: {create: true}", "eventHandler: {lock: {enabled: true}}"]);
    let role = rendered.object("TeleportRoleV8", "ferry");
    let rules = role["spec"]["allow"]["rules"].as_vec().expect("rules");
    let read = rules.iter().find(|r| r["resources"][0].as_str() == Some("event")).expect("a rule for events");
    assert_eq!(read["resources"][1].as_str(), Some("session"));
    assert!(rules.iter().any(|r| r["resources"][0].as_str() == Some("lock")), "eventHandler.lock.enabled: the role may create locks");
    let bot = rendered.object("TeleportBotV1", "ferry");
    assert_eq!(bot["spec"]["roles"][0].as_str(), Some("ferry"));
    let token = rendered.object("TeleportProvisionToken", "test-token");
    assert_eq!(token["spec"]["bot_name"].as_str(), Some("ferry"));
    assert_eq!(token["spec"]["join_method"].as_str(), Some("kubernetes"));
    assert_eq!(token["spec"]["kubernetes"]["type"].as_str(), Some("in_cluster"));
    assert_eq!(token["spec"]["kubernetes"]["allow"][0]["service_account"].as_str(), Some("teleport:ferry-tbot"));
    assert_eq!(token["metadata"]["namespace"].as_str(), Some("teleport"));

    let elsewhere = installs(&[
        MINIMAL,
        TBOT,
        "crd: {create: true, namespace: operator, tokenSpecOverride: {kubernetes: {type: static_jwks, static_jwks: {jwks: test}}}}",
    ]);
    let token = elsewhere.object("TeleportProvisionToken", "test-token");
    assert_eq!(token["metadata"]["namespace"].as_str(), Some("operator"), "crd.namespace");
    assert_eq!(token["spec"]["kubernetes"]["type"].as_str(), Some("static_jwks"), "crd.tokenSpecOverride is merged over the default");
    assert_eq!(token["spec"]["kubernetes"]["allow"][0]["service_account"].as_str(), Some("teleport:ferry-tbot"));

    // Without tbot, the token's spec is the user's, with its join method.
    let own_bot =
        installs(&[MINIMAL, "crd: {create: true, tokenSpecOverride: {join_method: github, github: {allow: [{repository: a/b}]}}}"]);
    assert_eq!(own_bot.object("TeleportProvisionToken", "ferry-tbot")["spec"]["join_method"].as_str(), Some("github"));
    refused(&[MINIMAL, "crd: {create: true}"], &["crd.tokenSpecOverride", "join_method"]);
    refused(&[MINIMAL, TBOT, "crd: {create: true, tokenSpecOverride: {join_method: token}}"], &["tbot.joinMethod"]);
}

// ---------------------------------------------------------------------------
// Several replicas, sharing their state in PostgreSQL.

const POSTGRES_URL: &str = "postgres://ferry@db.example:5432/ferry?sslmode=verify-full&sslrootcert=/etc/ferry/pg/ca.pem&sslcert=/etc/ferry/pg/client.pem&sslkey=/etc/ferry/pg/client.key";

fn postgres_values(replicas: u32) -> String {
    format!(
        "
storage:
  postgres:
    url: \"{POSTGRES_URL}\"
    passwordSecret: {{name: ferry-db, key: pw}}
    tlsSecretName: ferry-db-tls
    lease: 20s
replicas: {replicas}
"
    )
}

/// ferry.toml as TOML (the keys of several instances may be newer than the
/// ferry this crate builds against).
fn ferry_toml_table(rendered: &Rendered) -> toml::Table {
    let text = rendered.ferry_toml();
    text.parse().unwrap_or_else(|err| panic!("the chart's ferry.toml is not TOML: {err}\n{text}"))
}

fn volume(rendered: &Rendered, name: &str) -> Option<Yaml> {
    rendered.pod()["volumes"].as_vec().expect("volumes").iter().find(|v| v["name"].as_str() == Some(name)).cloned()
}

/// The mount of `name` in ferry's container, if any.
fn mount(rendered: &Rendered, name: &str) -> Option<Yaml> {
    rendered.ferry_container()["volumeMounts"].as_vec().expect("mounts").iter().find(|m| m["name"].as_str() == Some(name)).cloned()
}

fn env_var(rendered: &Rendered, name: &str) -> Option<Yaml> {
    rendered.ferry_container()["env"].as_vec().and_then(|env| env.iter().find(|e| e["name"].as_str() == Some(name)).cloned())
}

#[test]
fn sqlite_storage_runs_one_pod_recreated_on_its_volume() {
    let rendered = installs(&[MINIMAL, "persistentVolumeClaim: {enabled: true}"]);
    let deployment = rendered.deployment();
    assert_eq!(deployment["spec"]["replicas"].as_i64(), Some(1));
    assert_eq!(deployment["spec"]["strategy"]["type"].as_str(), Some("Recreate"), "two pods must never open one SQLite state");
    assert!(!rendered.kinds().contains("PodDisruptionBudget"), "one pod: nothing to keep available during a drain");
    assert!(rendered.kinds().contains("PersistentVolumeClaim"));
    let config = ferry_toml_table(&rendered);
    assert_eq!(config["storage"].as_str(), Some("/var/lib/teleport/plugins/event-handler/storage"), "eventHandler.storagePath");
    assert!(!config.contains_key("plugin-cache") && !config.contains_key("leadership"), "{config:?}");
    assert_eq!(mount(&rendered, "storage").expect("the state's volume")["mountPath"].as_str(), config["storage"].as_str());
    assert!(env_var(&rendered, "FERRY_STORAGE_PASSWORD").is_none());
    rendered.ferry_config();
}

#[test]
fn postgres_storage_runs_several_pods_rolling_with_a_disruption_budget_and_no_volume() {
    let rendered = installs(&[MINIMAL, &postgres_values(3)]);
    let deployment = rendered.deployment();
    assert_eq!(deployment["spec"]["replicas"].as_i64(), Some(3), "replicas");
    let strategy = &deployment["spec"]["strategy"];
    assert_eq!(strategy["type"].as_str(), Some("RollingUpdate"));
    assert_eq!(strategy["rollingUpdate"]["maxUnavailable"].as_i64(), Some(0), "an update never leaves fewer pods ready");

    let budget = rendered.object("PodDisruptionBudget", "ferry");
    assert_eq!(budget["spec"]["minAvailable"].as_i64(), Some(1));
    assert_eq!(budget["spec"]["selector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"], "it covers ferry's pods");

    assert!(!rendered.kinds().contains("PersistentVolumeClaim"), "no claim: the state is in PostgreSQL");
    assert!(
        volume(&rendered, "storage").is_none() && mount(&rendered, "storage").is_none(),
        "no state volume: {:?}",
        rendered.pod()["volumes"]
    );

    let config = ferry_toml_table(&rendered);
    assert_eq!(config["storage"].as_str(), Some(POSTGRES_URL), "storage.postgres.url");
    assert!(!config.contains_key("storage-password-file"), "the password comes from the environment");
    assert_eq!(config["leadership"]["lease"].as_str(), Some("20s"), "storage.postgres.lease");
    assert!(config["leadership"].get("instance").is_none(), "each pod's name (the host name) names its instance");

    // The compiled plugins are each pod's own, on an emptyDir.
    let cache = config["plugin-cache"].as_str().expect("plugin-cache");
    assert_eq!(mount(&rendered, "plugin-cache").expect("the plugin cache's mount")["mountPath"].as_str(), Some(cache));
    assert!(!volume(&rendered, "plugin-cache").expect("the plugin cache's volume")["emptyDir"].is_badvalue());

    let password = env_var(&rendered, "FERRY_STORAGE_PASSWORD").expect("FERRY_STORAGE_PASSWORD");
    let reference = &password["valueFrom"]["secretKeyRef"];
    assert_eq!((reference["name"].as_str(), reference["key"].as_str()), (Some("ferry-db"), Some("pw")), "storage.postgres.passwordSecret");

    // The TLS files the URL names are where the Secret is mounted.
    let tls = mount(&rendered, "postgres-tls").expect("the TLS files' mount");
    assert_eq!(tls["readOnly"].as_bool(), Some(true));
    let dir = tls["mountPath"].as_str().expect("a path");
    for param in ["sslrootcert", "sslcert", "sslkey"] {
        assert!(POSTGRES_URL.contains(&format!("{param}={dir}/")), "{param} is under {dir}");
    }
    assert_eq!(volume(&rendered, "postgres-tls").expect("its volume")["secret"]["secretName"].as_str(), Some("ferry-db-tls"));

    // ferry itself loads it: the URL is its storage, the lease its [leadership] lease.
    let loaded = rendered.ferry_config();
    match loaded.state_location().expect("a state location") {
        ferry::state::Location::Postgres(postgres) => assert_eq!(postgres.url(), POSTGRES_URL),
        other => panic!("the chart's storage is not PostgreSQL: {other}"),
    }
    assert_eq!(loaded.leadership.lease(), std::time::Duration::from_secs(20));
    assert_eq!(loaded.leadership.instance, None, "each pod's host name names its instance");
}

#[test]
fn the_postgres_example_values_run_three_replicas_on_the_database_they_name() {
    let path = chart().join("ci/postgres-values.yaml");
    let values = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    let rendered = installs(&[&values]);
    assert_eq!(rendered.deployment()["spec"]["replicas"].as_i64(), Some(3));
    assert!(rendered.kinds().contains("PodDisruptionBudget"));
    let loaded = rendered.ferry_config();
    let Ok(ferry::state::Location::Postgres(postgres)) = loaded.state_location() else {
        panic!("ci/postgres-values.yaml runs on PostgreSQL: {}", rendered.ferry_toml())
    };
    assert!(postgres.url().starts_with("postgres://ferry@postgres.db.svc:5432/ferry?sslmode=verify-full"), "{}", postgres.url());
    assert!(env_var(&rendered, "FERRY_STORAGE_PASSWORD").is_some());
    assert!(mount(&rendered, "postgres-tls").is_some());
}

#[test]
fn one_pod_on_postgres_rolls_too_and_needs_no_budget_nor_tls_files() {
    let values = "storage: {postgres: {url: 'postgres://ferry@db.example/ferry', passwordSecret: {name: ferry-db}}}";
    let rendered = installs(&[MINIMAL, values]);
    assert_eq!(rendered.deployment()["spec"]["strategy"]["type"].as_str(), Some("RollingUpdate"), "a new pod stands by first");
    assert!(!rendered.kinds().contains("PodDisruptionBudget"), "one pod: a budget of one would block every drain");
    assert!(mount(&rendered, "postgres-tls").is_none() && volume(&rendered, "postgres-tls").is_none());
    let password = env_var(&rendered, "FERRY_STORAGE_PASSWORD").expect("FERRY_STORAGE_PASSWORD");
    assert_eq!(password["valueFrom"]["secretKeyRef"]["key"].as_str(), Some("password"), "the default key");
    assert_eq!(ferry_toml_table(&rendered)["leadership"]["lease"].as_str(), Some("15s"), "the default lease");
}

#[test]
fn storage_values_that_cannot_work_are_refused() {
    refused(&[MINIMAL, "replicas: 2"], &["replicas is 2", "storage.postgres.url"]);
    refused(&[MINIMAL, "replicas: 0"], &["replicas"]);
    let with_password = refused(
        &[MINIMAL, "storage: {postgres: {url: 'postgres://ferry:hunter2@db.example:5432/ferry'}}"],
        &["storage.postgres.url", "password", "storage.postgres.passwordSecret.name"],
    );
    assert!(!with_password.contains("hunter2"), "the refusal shows the password: {with_password}");
    // A colon after the host is a port or an option, not a password.
    installs(&[MINIMAL, "storage: {postgres: {url: 'postgres://db.example:5432/ferry?options=-c%20a%3Db@c'}}"]);
    refused(&[MINIMAL, "storage: {postgres: {url: 'mysql://db.example/ferry'}}"], &["storage.postgres.url", "postgres://"]);
    refused(&[MINIMAL, &postgres_values(2), "persistentVolumeClaim: {enabled: true}"], &["persistentVolumeClaim", "PostgreSQL"]);
    refused(&[MINIMAL, &postgres_values(2), "persistentVolumeClaim: {existingClaim: state}"], &["persistentVolumeClaim", "PostgreSQL"]);
    refused(&[MINIMAL, &postgres_values(2), "storage: {postgres: {passwordSecret: {key: ''}}}"], &["storage.postgres.passwordSecret.key"]);
    refused(&[MINIMAL, "storage: {postgres: {passwordSecret: {name: ferry-db}}}"], &["storage.postgres.url"]);
    refused(&[MINIMAL, "storage: {postgres: {tlsSecretName: ferry-db-tls}}"], &["storage.postgres.url"]);
    refused(&[MINIMAL, &postgres_values(2), "storage: {postgres: {lease: soon}}"], &["lease"]);
    refused(&[MINIMAL, &postgres_values(2), "storage: {postgres: {slots: 3}}"], &["storage.postgres.slots is 3", "replicas is 2"]);
    refused(&[MINIMAL, &postgres_values(2), "storage: {postgres: {slots: 0}}"], &["storage.postgres.slots is 0"]);
    refused(&[MINIMAL, "storage: {postgres: {slots: 2}}"], &["storage.postgres.slots is 2", "storage.postgres.url"]);
}

#[test]
fn slots_export_on_several_pods_at_once_on_the_export_engine() {
    let rendered = installs(&[MINIMAL, &postgres_values(4), "storage: {postgres: {slots: 3}}"]);
    let config = ferry_toml_table(&rendered);
    assert_eq!(config["leadership"]["slots"].as_integer(), Some(3), "storage.postgres.slots");
    assert_eq!(config["teleport"]["engine"].as_str(), Some("export"), "slots share the export engine's chunks");
    let loaded = rendered.ferry_config();
    assert_eq!(loaded.leadership.slots, 3);
    loaded.check_slots().expect("ferry takes the chart's slots");
    let one = ferry_toml_table(&installs(&[MINIMAL, &postgres_values(2)]));
    assert!(one["leadership"].get("slots").is_none() && one["teleport"].get("engine").is_none(), "one slot: the config as before");
}
