//! `ferry configure` on real folders: every file, 0600; certificates that
//! verify against the CA with the right usages and names; keys that match
//! them; the encrypted key and its passphrase; the refusal to overwrite;
//! and the generated configs read back by their own parsers.

use super::output::{FILES, configure};
use super::{ConfigureArgs, ConfigureError};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

fn args(out: &Path, extra: &[&str]) -> ConfigureArgs {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Line {
        #[command(flatten)]
        args: ConfigureArgs,
    }
    let mut line = vec!["configure".to_owned(), out.display().to_string()];
    line.extend(extra.iter().map(|s| s.to_string()));
    Line::try_parse_from(line).expect("the command line parses").args
}

fn run(out: &Path, extra: &[&str]) -> Result<std::path::PathBuf, ConfigureError> {
    configure(&args(out, extra).check()?)
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|err| panic!("{name}: {err}"))
}

fn cert(dir: &Path, name: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(read(dir, name).as_bytes()).unwrap_or_else(|err| panic!("{name}: {err:?}"))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A verifier that trusts only the generated CA, as ferry's sink does.
fn server_verifier(dir: &Path) -> Arc<rustls::client::WebPkiServerVerifier> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert(dir, "ca.crt")).expect("the CA is a usable root");
    rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build().expect("verifier")
}

fn verify_server(dir: &Path, leaf: &str, name: &str) -> Result<(), rustls::Error> {
    let name = ServerName::try_from(name.to_owned()).expect("a server name");
    server_verifier(dir).verify_server_cert(&cert(dir, leaf), &[], &name, &[], UnixTime::now()).map(|_| ())
}

fn verify_client(dir: &Path, leaf: &str) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert(dir, "ca.crt")).expect("root");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build().expect("verifier");
    verifier.verify_client_cert(&cert(dir, leaf), &[], UnixTime::now()).map(|_| ())
}

/// The public key a certificate carries, and the one derived from a key file.
fn cert_public_key(dir: &Path, name: &str) -> Vec<u8> {
    let der = cert(dir, name);
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("x509");
    parsed.public_key().raw.to_vec()
}

fn key_public_key(pem: &str) -> Vec<u8> {
    rcgen::PublicKeyData::subject_public_key_info(&rcgen::KeyPair::from_pem(pem).expect("a PKCS#8 key rcgen reads"))
}

#[test]
fn an_empty_folder_gets_every_file_private_and_certificates_that_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let written = run(
        &out,
        &[
            "teleport.example.com:443",
            "--key-type",
            "ecdsa",
            "--dns-names",
            "logstash.example.com,localhost",
            "--ip",
            "10.0.0.5",
            "--ip",
            "::1",
        ],
    )
    .expect("configured");
    for name in FILES {
        let mode = std::fs::metadata(written.join(name)).unwrap_or_else(|err| panic!("{name}: {err}")).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    let mut listed: Vec<String> =
        std::fs::read_dir(&written).expect("list").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    listed.sort();
    let mut expected: Vec<String> = FILES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected, "exactly the listed files, no temporary left behind");

    // The server certificate: chain to the CA, every name given, server auth only.
    for name in ["logstash.example.com", "localhost", "10.0.0.5", "::1"] {
        verify_server(&written, "server.crt", name).unwrap_or_else(|err| panic!("server.crt for {name}: {err}"));
    }
    assert!(verify_server(&written, "server.crt", "other.example.com").is_err(), "a name not given is refused");
    assert!(verify_server(&written, "server.crt", "10.0.0.6").is_err(), "an address not given is refused");
    assert!(verify_client(&written, "server.crt").is_err(), "the server certificate is not a client certificate");
    // The client certificate: chain to the CA, client auth only.
    verify_client(&written, "client.crt").expect("client.crt verifies as a client");
    assert!(verify_server(&written, "client.crt", "localhost").is_err(), "the client certificate is not a server certificate");

    let der = cert(&written, "ca.crt");
    let (_, ca) = x509_parser::parse_x509_certificate(&der).expect("x509");
    assert!(ca.is_ca(), "ca.crt is a CA");
    let der = cert(&written, "server.crt");
    let (_, server) = x509_parser::parse_x509_certificate(&der).expect("x509");
    let eku = server.extended_key_usage().expect("parses").expect("present").value;
    assert!(eku.server_auth && !eku.client_auth, "{eku:?}");
    let ttl = server.validity().not_after.timestamp() - server.validity().not_before.timestamp();
    assert!(
        (87_600 * 3600..=87_601 * 3600).contains(&ttl),
        "the default TTL is the event handler's 87600h (plus the hour of skew): {ttl}s"
    );
}

#[test]
fn the_keys_are_pkcs8_and_match_their_certificates_and_the_encrypted_one_opens_with_its_passphrase() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = run(dir.path(), &["--key-type", "ecdsa"]).expect("configured");
    for (key, cert) in [("ca.key", "ca.crt"), ("server.key", "server.crt"), ("client.key", "client.crt")] {
        let pem = read(&written, key);
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{key} is unencrypted PKCS#8 (Logstash's ssl_key), not {}",
            pem.lines().next().unwrap_or("")
        );
        assert!(matches!(PrivateKeyDer::from_pem_slice(pem.as_bytes()), Ok(PrivateKeyDer::Pkcs8(_))), "{key}");
        assert_eq!(key_public_key(&pem), cert_public_key(&written, cert), "{key} is the key of {cert}");
    }
    // ferry's own TLS code takes the client pair as the config names it.
    let client = crate::tls::ClientFiles {
        ca: Some(written.join("ca.crt")),
        cert: Some(written.join("client.crt")),
        key: Some(written.join("client.key")),
    };
    assert!(crate::tls::client_config(&client, &[]).is_ok(), "the sink's TLS loads the generated client pair");

    let encrypted = read(&written, "server.encrypted.key");
    assert!(encrypted.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"), "{encrypted}");
    let passphrase = read(&written, "server.key.passphrase");
    let passphrase = passphrase.trim_end();
    assert_eq!(passphrase.len(), 64, "32 random bytes in hex");
    let (label, der) = pkcs8::der::pem::decode_vec(encrypted.as_bytes()).expect("PEM");
    assert_eq!(label, "ENCRYPTED PRIVATE KEY");
    let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_slice()).expect("PKCS#8 encrypted");
    assert!(info.encryption_algorithm.pbes2().and_then(|p| p.kdf.pbkdf2()).is_some(), "PBKDF2, which every OpenSSL reads");
    let decrypted = info.decrypt(passphrase).expect("the passphrase opens it");
    let (_, plain) = pkcs8::der::pem::decode_vec(read(&written, "server.key").as_bytes()).expect("PEM");
    assert_eq!(decrypted.as_bytes(), plain.as_slice(), "the same key as server.key");
    assert!(info.decrypt("0".repeat(64)).is_err(), "another passphrase does not");
    assert!(
        read(&written, "fluent.conf").contains(&format!("File.read('{}')", written.join("server.key.passphrase").display())),
        "fluent.conf reads the passphrase from its file"
    );
}

#[test]
fn rsa_keys_have_the_asked_length_and_sign_certificates_that_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = run(dir.path(), &["--length", "2048", "--ip", "127.0.0.1"]).expect("configured");
    verify_server(&written, "server.crt", "localhost").expect("server.crt verifies");
    verify_server(&written, "server.crt", "127.0.0.1").expect("server.crt verifies for its IP");
    verify_client(&written, "client.crt").expect("client.crt verifies");
    for (key, cert) in [("server.key", "server.crt"), ("client.key", "client.crt")] {
        let pem = read(&written, key);
        let (_, der) = pkcs8::der::pem::decode_vec(pem.as_bytes()).expect("PEM");
        let parsed = <rsa::PrivateKey as pkcs8::DecodePrivateKey>::from_pkcs8_der(&der).expect("an RSA PKCS#8 key");
        assert_eq!(rsa::traits::PublicKeyParts::size(&parsed) * 8, 2048, "{key}");
        assert_eq!(key_public_key(&pem), cert_public_key(&written, cert), "{key} is the key of {cert}");
    }
}

#[test]
fn a_second_run_refuses_before_writing_anything_and_force_overwrites() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = run(dir.path(), &["--key-type", "ecdsa"]).expect("configured");
    let before: Vec<String> = FILES.iter().map(|name| read(&written, name)).collect();
    let err = run(dir.path(), &["--key-type", "ecdsa"]).expect_err("refused");
    assert_eq!(
        err.to_string(),
        format!("{} exists; nothing was written (pass --force to overwrite the files of a previous run)", written.join("ca.crt").display())
    );
    let after: Vec<String> = FILES.iter().map(|name| read(&written, name)).collect();
    assert_eq!(before, after, "nothing changed");

    run(dir.path(), &["--key-type", "ecdsa", "--force"]).expect("--force overwrites");
    for name in ["ca.crt", "ca.key", "server.key", "client.crt", "server.key.passphrase"] {
        assert_ne!(read(&written, name), before[FILES.iter().position(|n| *n == name).expect("listed")], "{name} is new");
    }
    let mode = std::fs::metadata(written.join("ca.key")).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "an overwritten file is still private");
}

#[test]
fn one_file_left_from_elsewhere_is_named_and_no_other_file_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("fluent.conf"), "mine").expect("write");
    let err = run(dir.path(), &["--key-type", "ecdsa"]).expect_err("refused");
    assert!(matches!(&err, ConfigureError::Exists { path } if path.ends_with("fluent.conf")), "{err}");
    let listed: Vec<_> = std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(listed, ["fluent.conf"], "nothing else was written");
    assert_eq!(std::fs::read_to_string(dir.path().join("fluent.conf")).expect("read"), "mine");
}

#[test]
fn bad_values_and_an_unwritable_folder_are_one_line_naming_what() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&[&str], &str); 8] = [
        (&["--ttl", "soon"], "--ttl `soon`: `soon` is not a duration"),
        (&["--ttl", "10m"], "--ttl `10m`: shorter than an hour"),
        (&["--ip", "10.0.0.300"], "--ip `10.0.0.300`: not an IP address"),
        (&["--dns-names", "bad name"], "--dns-names `bad name`: not a DNS name"),
        (&["--length", "1024"], "--length `1024`: RSA keys are 2048, 3072 or 4096 bits"),
        (&["--dns-names", ","], "--dns-names `,`: give at least one name"),
        (
            &["teleport.example.com"],
            "ADDR `teleport.example.com`: has no port; write `teleport.example.com:443` (a Proxy, or Teleport Cloud)",
        ),
        (
            &["https://teleport.example.com:443"],
            "ADDR `https://teleport.example.com:443`: is a URL, but ferry wants host:port without `https://`; write `teleport.example.com:443`",
        ),
    ];
    for (extra, expected) in cases {
        let err = run(&dir.path().join("out"), extra).expect_err("refused");
        let text = err.to_string();
        assert!(text.starts_with(expected) && !text.contains('\n'), "{extra:?}: {text}");
    }
    assert!(!dir.path().join("out").exists(), "a bad flag is refused before the folder is made");
    // --length matters only for RSA.
    run(&dir.path().join("ec"), &["--key-type", "ecdsa", "--length", "1024"]).expect("ECDSA ignores --length");

    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).expect("mkdir");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).expect("chmod");
    let probe = locked.join("probe");
    if std::fs::write(&probe, b"").is_ok() {
        eprintln!("running as a user who writes anywhere (root): the unwritable folder case is not checked here");
    } else {
        let err = run(&locked, &["--key-type", "ecdsa"]).expect_err("refused");
        assert_eq!(err.to_string().lines().count(), 1, "{err}");
        assert!(err.to_string().starts_with(&format!("cannot write {}", locked.join("ca.crt").display())), "{err}");
    }
    // A folder nobody can make, root included.
    let err = run(Path::new("/proc/ferry-configure"), &["--key-type", "ecdsa"]).expect_err("refused");
    assert!(err.to_string().starts_with("cannot use the folder /proc/ferry-configure: ") && !err.to_string().contains('\n'), "{err}");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").expect("write");
    let err = run(&file, &["--key-type", "ecdsa"]).expect_err("refused");
    assert!(err.to_string().starts_with(&format!("cannot use the folder {}", file.display())), "{err}");
}

#[test]
fn the_generated_ferry_toml_loads_and_names_the_generated_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written =
        run(dir.path(), &["teleport.example.com:3025", "--key-type", "ecdsa", "--dns-names", "logstash.internal"]).expect("configured");
    let config = crate::app::FerryConfig::load(&written.join("ferry.toml")).expect("ferry.toml loads");
    assert_eq!(config.storage, Path::new("/var/lib/ferry"), "the systemd unit's StateDirectory");
    let text = read(&written, "ferry.toml");
    let table: toml::Table = text.parse().expect("TOML");
    assert_eq!(table["source"]["teleport"]["addr"].as_str(), Some("teleport.example.com:3025"));
    assert_eq!(table["sinks"]["default"]["url"].as_str(), Some("https://logstash.internal:9601/"));
    assert_eq!(table["source"]["teleport"]["lock"]["enabled"].as_bool(), Some(false));
    for sink in ["default", "sessions"] {
        for key in ["ca", "cert", "key"] {
            let name = table["sinks"][sink][key].as_str().expect("a path");
            assert!(written.join(name).is_file(), "sinks.{sink}.{key} = {name} is a generated file");
        }
    }
    assert!(text.contains("\n# http-addr = "), "the metrics address is shown, commented");
    assert!(!read(&written, "teleport-event-handler-role.yaml").contains("'lock'"), "no lock rule without --lock");

    let locked = dir.path().join("locked");
    let written = run(&locked, &["--key-type", "ecdsa", "--lock"]).expect("configured");
    let table: toml::Table = read(&written, "ferry.toml").parse().expect("TOML");
    assert_eq!(table["source"]["teleport"]["lock"]["enabled"].as_bool(), Some(true));
    let role = read(&written, "teleport-event-handler-role.yaml");
    assert!(role.contains("- resources: ['lock']\n        verbs: ['list', 'read', 'create', 'update']"), "{role}");
}

#[tokio::test]
async fn ferry_check_accepts_the_generated_config_once_the_identity_exists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = run(dir.path(), &["--key-type", "ecdsa"]).expect("configured");
    let config = crate::app::FerryConfig::load(&written.join("ferry.toml")).expect("loads");
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let err = crate::app::build_parts(&config, metrics.clone(), false).await.err().expect("no identity yet");
    let text = crate::error::one_line(&err);
    assert!(text.contains(&written.join("identity").display().to_string()), "the one thing missing is the identity file: {text}");
    let teleport = ferry_standin::teleport::TeleportStandIn::start(ferry_standin::teleport::StandInOptions::default())
        .await
        .expect("a stand-in Teleport");
    teleport.write_identity(&written.join("identity")).expect("an identity file in Teleport's format");
    let parts = crate::app::build_parts(&config, metrics, false).await;
    assert!(parts.is_ok(), "everything else checks: {}", parts.err().map(|err| crate::error::one_line(&err)).unwrap_or_default());
}

#[test]
fn the_logstash_pipeline_has_what_logstash_8_8_and_9_need_and_names_existing_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = run(dir.path(), &["--key-type", "ecdsa"]).expect("configured");
    let pipeline = read(&written, "logstash-ferry.conf");
    for setting in [
        "ssl_enabled => true",
        "ssl_client_authentication => \"required\"",
        "ecs_compatibility => disabled",
        "match => [\"time\", \"ISO8601\"]",
        "document_id => \"%{uid}\"",
        "action => \"create\"",
    ] {
        assert!(pipeline.contains(setting), "the pipeline sets {setting}");
    }
    // Options that Logstash 9 removed must not be there.
    for removed in ["ssl =>", "ssl_verify_mode", "cacert =>", "keystore =>"] {
        assert!(!pipeline.contains(removed), "the pipeline does not use {removed}");
    }
    let quoted = regex_paths(&pipeline);
    assert!(quoted.len() >= 4, "{quoted:?}");
    for path in quoted {
        assert!(Path::new(&path).is_file(), "the pipeline names {path}, which exists");
    }
    let pipelines = read(&written, "logstash-pipelines.yml");
    assert!(pipelines.contains("pipeline.ecs_compatibility: disabled"), "{pipelines}");
    // A 200 from Logstash must mean the events are on disk: a persisted
    // queue checkpointed at every write, and a dead-letter queue for what
    // Elasticsearch refuses.
    for setting in ["queue.type: persisted", "queue.checkpoint.writes: 1", "dead_letter_queue.enable: true"] {
        assert!(pipelines.lines().any(|line| line.trim() == setting), "pipelines.yml sets {setting}: {pipelines}");
    }
    assert!(pipelines.contains(&format!("path.config: \"{}\"", written.join("logstash-ferry.conf").display())), "{pipelines}");
}

/// The absolute paths quoted in a config.
fn regex_paths(text: &str) -> Vec<String> {
    text.split('"').skip(1).step_by(2).filter(|s| s.starts_with('/') && !s.starts_with("/etc/")).map(str::to_owned).collect()
}

#[test]
fn the_index_template_pins_every_field_the_fixtures_give_two_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = run(dir.path(), &["--key-type", "ecdsa"]).expect("configured");
    let template: serde_json::Value = serde_json::from_str(&read(&written, "elasticsearch-index-template.json")).expect("JSON");
    let properties = &template["template"]["mappings"]["properties"];
    // Top-level fields of the fixtures seen with two JSON types (strings or
    // numbers; null and absent do not count: they conflict with nothing).
    let mut kinds: std::collections::BTreeMap<String, std::collections::BTreeSet<&str>> = Default::default();
    for file in ["teleport-events.jsonl", "teleport-session-events.jsonl"] {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(file))
            .unwrap_or_else(|err| panic!("{file}: {err}"));
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let event: serde_json::Value = serde_json::from_str(line).expect("a fixture event");
            for (key, value) in event.as_object().expect("an object") {
                let kind = match value {
                    serde_json::Value::Null => continue,
                    serde_json::Value::Bool(_) => "bool",
                    serde_json::Value::Number(_) => "number",
                    serde_json::Value::String(_) => "string",
                    serde_json::Value::Array(_) => continue,
                    serde_json::Value::Object(_) => "object",
                };
                kinds.entry(key.clone()).or_default().insert(kind);
            }
        }
    }
    let conflicting: Vec<&String> = kinds.iter().filter(|(_, k)| k.len() > 1).map(|(key, _)| key).collect();
    assert!(
        conflicting.iter().any(|k| *k == "action") && conflicting.iter().any(|k| *k == "expires"),
        "the fixtures show the known conflicts: {conflicting:?}"
    );
    let pipeline = read(&written, "logstash-ferry.conf");
    assert!(
        pipeline.contains(r#"if user.is_a?(Hash) then event.remove("user"); event.set("user_object", user) end"#),
        "the pipeline moves a user object out of the keyword `user`"
    );
    for key in conflicting {
        if key == "user" {
            assert_eq!(properties["user"]["type"], "keyword");
            continue;
        }
        let mapping = &properties[key.as_str()];
        // A keyword takes strings and numbers; an object that is not parsed
        // (`enabled: false`) takes anything and keeps it in `_source`.
        let pinned = mapping["type"] == "keyword" || (mapping["type"] == "object" && mapping["enabled"] == false);
        assert!(pinned, "{key} is pinned: {mapping}");
    }
    assert_eq!(properties["action"]["type"], "keyword");
    assert_eq!(properties["expires"]["type"], "keyword");
    assert_eq!(properties["time"]["type"], "date");
    assert_eq!(properties["uid"]["type"], "keyword");
}

#[test]
fn the_systemd_unit_is_the_shipped_one_and_runs_the_config_where_the_steps_put_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = run(dir.path(), &["--key-type", "ecdsa"]).expect("configured");
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd/ferry.service"))
        .expect("the shipped unit");
    let unit = read(&written, "ferry.service");
    assert_eq!(unit, shipped);
    assert!(unit.contains("--config /etc/ferry/ferry.toml") && unit.contains("StateDirectory=ferry"), "{unit}");
}

/// The metrics port named on a line about the HTTP endpoint (or just
/// below one, as a YAML key under `metrics:`): a 4- or 5-digit number after
/// `:` or a space.
fn metrics_ports(text: &str) -> Vec<u16> {
    let about = |line: &str| ["metrics", "http-addr", "healthz", "expose"].iter().any(|word| line.to_lowercase().contains(word));
    let lines: Vec<&str> = text.lines().collect();
    let mut ports = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !(about(line) || i > 0 && about(lines[i - 1]) && line.trim_start().starts_with("port:")) {
            continue;
        }
        let bytes = line.as_bytes();
        let mut start = 0;
        while start < bytes.len() {
            let end = start + bytes[start..].iter().take_while(|b| b.is_ascii_digit()).count();
            if end == start {
                start += 1;
                continue;
            }
            let after_separator = start > 0 && matches!(bytes[start - 1], b':' | b' ');
            if after_separator && (4..=5).contains(&(end - start)) {
                ports.push(line[start..end].parse().expect("digits"));
            }
            start = end;
        }
    }
    ports
}

/// Paths in ferry's folders (`/etc/ferry/…`, `/var/lib/ferry/…`) that end
/// in `identity`, but for tbot's output folder (`/etc/ferry/tbot/`), where
/// the deployment guide has tbot write a renewed one.
fn ferry_identity_paths(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || "\"'`(),=:[]".contains(c))
        .filter(|word| (word.starts_with("/etc/ferry/") || word.starts_with("/var/lib/ferry/")) && word.ends_with("identity"))
        .filter(|word| !word.starts_with("/etc/ferry/tbot/"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_metrics_port_and_the_identity_path_are_the_same_everywhere() {
    use super::{CONFIG_DIR, IDENTITY_PATH};
    let port = crate::observe::http::DEFAULT_PORT;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let file = |path: &str| std::fs::read_to_string(repo.join(path)).unwrap_or_else(|err| panic!("{path}: {err}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let written = run(dir.path(), &["--key-type", "ecdsa"]).expect("configured");
    // (where, text, names the port, names the identity's path)
    let places = [
        ("README.md", file("README.md"), false, true),
        ("docs/operating.md", file("docs/operating.md"), true, false),
        ("docs/deploying.md", file("docs/deploying.md"), true, true),
        ("docs/configuration.md", file("docs/configuration.md"), false, true),
        ("configure's ferry.toml", read(&written, "ferry.toml"), true, false),
        ("configure's chart values", read(&written, "teleport-plugin-event-handler-values.yaml"), false, false),
        ("packaging/Dockerfile", file("packaging/Dockerfile"), true, true),
        ("packaging/helm/ferry/values.yaml", file("packaging/helm/ferry/values.yaml"), true, false),
        ("packaging/systemd/ferry.service", file("packaging/systemd/ferry.service"), true, true),
        ("docs/event-handler-compatibility.md", file("docs/event-handler-compatibility.md"), false, false),
    ];
    for (place, text, names_port, names_identity) in &places {
        let ports = metrics_ports(text);
        assert!(ports.iter().all(|p| *p == port), "{place} names the metrics port as {ports:?}; ferry's is {port} (DEFAULT_PORT)");
        assert!(!names_port || !ports.is_empty(), "{place} should name the metrics port {port}");
        let paths = ferry_identity_paths(text);
        assert!(paths.iter().all(|p| p == IDENTITY_PATH), "{place} names the identity as {paths:?}; ferry's is {IDENTITY_PATH}");
        assert!(!names_identity || !paths.is_empty(), "{place} should name the identity's path {IDENTITY_PATH}");
    }

    // configure's ferry.toml names the identity beside itself, and the unit
    // and the image read that ferry.toml from CONFIG_DIR.
    let table: toml::Table = read(&written, "ferry.toml").parse().expect("TOML");
    let identity = table["source"]["teleport"]["identity"].as_str().expect("identity");
    assert_eq!(Path::new(CONFIG_DIR).join(identity), Path::new(IDENTITY_PATH), "ferry.toml's identity, installed in {CONFIG_DIR}");
    let config = format!("{CONFIG_DIR}/ferry.toml");
    assert!(file("packaging/systemd/ferry.service").contains(&format!("ExecStart=/usr/local/bin/ferry start --config {config}\n")));
    assert!(file("packaging/Dockerfile").contains(&format!("\"--config\", \"{config}\"")));

    // The scanners find what they look for.
    assert_eq!(metrics_ports("`/metrics` on port 9090, Logstash at :9601\nmetrics:\n  port: 9100\n"), [9090, 9601, 9100]);
    assert_eq!(
        ferry_identity_paths("identity = \"/var/lib/ferry/identity\" (`/etc/ferry/identity`)"),
        ["/var/lib/ferry/identity", "/etc/ferry/identity"]
    );
}

#[test]
fn group_makes_the_files_ferry_reads_0640_for_it_and_keeps_the_keys_it_must_not_read_private() {
    use super::READ_BY_FERRY;
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    // Our own group: one any user may give files to.
    let gid = rustix::process::getgid().as_raw();
    let name = crate::access::group_name(gid).expect("the test's group has a name");
    let written = run(dir.path(), &["--key-type", "ecdsa", "--group", &name]).expect("configured");
    for file in FILES {
        let meta = std::fs::metadata(written.join(file)).expect("stat");
        if READ_BY_FERRY.contains(&file) {
            assert_eq!((meta.gid(), meta.mode() & 0o777), (gid, 0o640), "{file}: readable by the group, written by the owner");
        } else {
            assert_eq!(meta.mode() & 0o777, 0o600, "{file}: the owner's alone");
        }
    }
    assert!(["ca.key", "server.key", "server.encrypted.key", "server.key.passphrase"].iter().all(|key| !READ_BY_FERRY.contains(key)));
    // A number is taken as it is.
    let by_number = tempfile::tempdir().expect("tempdir");
    let written = run(by_number.path(), &["--key-type", "ecdsa", "--group", &gid.to_string()]).expect("configured");
    assert_eq!(std::fs::metadata(written.join("client.key")).expect("stat").mode() & 0o777, 0o640);

    let err = run(dir.path().join("other").as_path(), &["--group", "no-such-group-for-ferry"]).expect_err("unknown group");
    let text = err.to_string();
    assert!(text.starts_with("--group `no-such-group-for-ferry`: no such group in the system's group database"), "{text}");
    assert!(!dir.path().join("other").exists(), "nothing written for a bad flag");
}
