//! What `ferry configure` writes and prints: the files in the order they
//! are written, who may read them, the refusal to overwrite (checked for
//! every file before any is written), and the steps left to the operator.

use super::args::{Group, Options};
use super::pki::{self, Material};
use super::{ConfigureArgs, ConfigureError, SERVICE_GROUP, render};
use std::path::{Path, PathBuf};

/// Every file `ferry configure` writes, in the order it writes them.
pub const FILES: [&str; 17] = [
    "ca.crt",
    "ca.key",
    "server.crt",
    "server.key",
    "server.encrypted.key",
    "server.key.passphrase",
    "client.crt",
    "client.key",
    "teleport-event-handler-role.yaml",
    "teleport-event-handler-impersonator.yaml",
    "ferry.toml",
    "logstash-ferry.conf",
    "logstash-pipelines.yml",
    "elasticsearch-index-template.json",
    "fluent.conf",
    "ferry.service",
    // The upstream chart's values file, by the name teleport-event-handler's
    // `configure` gives it: ferry's chart takes those values, so the guide's
    // `helm install ... --values teleport-plugin-event-handler-values.yaml`
    // reads the same (as the role file keeps its name too).
    "teleport-plugin-event-handler-values.yaml",
];

/// The files of [`FILES`] that ferry reads: with `--group`, 0640 root:GROUP
/// (the group reads, only root writes); every other file stays 0600, root's
/// alone (the CA key, Logstash's keys). The identity ferry also reads is
/// made later, by `tctl auth sign` or Machine ID, and given to the group then.
pub const READ_BY_FERRY: [&str; 4] = ["ferry.toml", "ca.crt", "client.crt", "client.key"];

/// Carries out `ferry configure`.
pub fn run(args: ConfigureArgs) -> anyhow::Result<()> {
    let options = args.check()?;
    let written = configure(&options)?;
    let mut out = crate::cli::out::Stdout::lock();
    std::io::Write::write_all(&mut out, summary(&options, &written).as_bytes())?;
    Ok(())
}

/// Checks, generates and writes; returns the folder written to (absolute).
pub(super) fn configure(options: &Options) -> Result<PathBuf, ConfigureError> {
    let dir = folder(&options.out)?;
    let quoted = render::quoted_folder(&dir)?;
    if !options.force
        && let Some(existing) = FILES.iter().map(|name| dir.join(name)).find(|path| path.symlink_metadata().is_ok())
    {
        return Err(ConfigureError::Exists { path: existing });
    }
    let material = pki::generate(&pki::Request {
        key_type: options.key_type,
        length: options.length,
        ttl: options.ttl,
        dns_names: &options.dns_names,
        ips: &options.ips,
    })?;
    for (name, text) in FILES.iter().zip(contents(options, &material, &quoted)) {
        let path = dir.join(name);
        // Everything 0600, certificates too, and then the files ferry reads
        // shared with its group when `--group` names it.
        crate::tls::write_private(&path, text.as_bytes()).map_err(|source| ConfigureError::Write { path: path.clone(), source })?;
        if let Some(group) = &options.group
            && READ_BY_FERRY.contains(name)
        {
            share_with_group(&path, group)?;
        }
    }
    Ok(dir)
}

/// Makes `path` readable by `group` and by no one else but its owner (0640).
fn share_with_group(path: &Path, group: &Group) -> Result<(), ConfigureError> {
    use std::os::unix::fs::PermissionsExt;
    let error = |source| ConfigureError::Group { path: path.to_owned(), group: group.name.clone(), source };
    std::os::unix::fs::chown(path, None, Some(group.gid)).map_err(error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640)).map_err(error)
}

/// The contents of [`FILES`], in the same order.
fn contents(options: &Options, material: &Material, dir: &str) -> [String; 17] {
    [
        material.ca_cert.clone(),
        material.ca_key.clone(),
        material.server_cert.clone(),
        material.server_key.clone(),
        material.server_key_encrypted.clone(),
        format!("{}\n", material.passphrase),
        material.client_cert.clone(),
        material.client_key.clone(),
        render::role(options.lock),
        render::impersonator(),
        render::ferry_toml(&options.addr, &options.dns_names[0], options.lock),
        render::logstash_pipeline(dir),
        render::logstash_pipelines_yml(dir),
        render::index_template(),
        render::fluent_conf(dir),
        render::systemd_unit(),
        render::chart_values(&options.addr, &options.dns_names[0], options.lock, dir),
    ]
}

/// The output folder, made when missing, as an absolute path (the Logstash
/// and Fluentd configs name files in it).
fn folder(out: &Path) -> Result<PathBuf, ConfigureError> {
    let error = |source| ConfigureError::Folder { path: out.to_owned(), source };
    std::fs::create_dir_all(out).map_err(error)?;
    let dir = out.canonicalize().map_err(error)?;
    if !dir.is_dir() {
        return Err(error(std::io::Error::other("not a folder")));
    }
    Ok(dir)
}

/// What was written and what is left to do, as the event handler prints it.
fn summary(options: &Options, dir: &Path) -> String {
    let d = dir.display();
    let key = match options.key_type {
        super::KeyType::Rsa => format!("RSA {} bits", options.length),
        super::KeyType::Ecdsa => "ECDSA P-256".to_owned(),
    };
    let days = options.ttl.as_secs() / 86_400;
    let group = options.group.as_ref().map_or(SERVICE_GROUP, |group| group.name.as_str());
    let access = match &options.group {
        Some(group) => format!(
            "ferry reads ferry.toml, ca.crt, client.crt and client.key: 0640 root:{}, its group reads them and only root writes them;
the other files are 0600, root's alone.",
            group.name
        ),
        None => format!(
            "Every file is 0600, root's alone: the service (group {SERVICE_GROUP}) cannot read them until the files it reads are given to
its group (step 5), or run configure again with --group {SERVICE_GROUP}."
        ),
    };
    format!(
        "ferry configure: wrote {count} files to {d}

[1] mTLS certificates ({key}, valid {days} days): ca.crt, ca.key (keep it offline: it signs clients Logstash trusts),
    server.crt, server.key (PKCS#8, for Logstash), server.encrypted.key and server.key.passphrase (for Fluentd),
    client.crt, client.key (ferry's)
[2] Teleport role and user: teleport-event-handler-role.yaml{lock}; impersonator role: teleport-event-handler-impersonator.yaml
[3] ferry config: ferry.toml (Teleport at {addr}, Logstash at https://{host}:9601/)
[4] Logstash: logstash-ferry.conf, its pipelines.yml entry logstash-pipelines.yml, elasticsearch-index-template.json
[5] Fluentd: fluent.conf
[6] systemd unit: ferry.service (runs as the system user and group {SERVICE_GROUP})
[7] Helm chart values: teleport-plugin-event-handler-values.yaml (ferry's chart, packaging/helm/ferry; the secrets to make are in it)

{access}

Next steps:
  1. Create the role, the user and the impersonator role in Teleport:
       tctl create -f {d}/teleport-event-handler-role.yaml
       tctl create -f {d}/teleport-event-handler-impersonator.yaml
  2. Add teleport-event-handler-impersonator to your Teleport user's roles (tctl edit users/YOUR-USER), log in again
     (tsh login), sign ferry's identity and let ferry's group read it:
       tctl auth sign --user=teleport-event-handler --out={d}/identity --ttl=10h
       chgrp {group} {d}/identity && chmod 0640 {d}/identity
     Or let Machine ID write and renew it (refresh.enabled in ferry.toml): tbot must write where ferry reads, e.g.
       tbot init --destination-dir=/etc/ferry/tbot --bot-user=TBOT-USER --reader-user={SERVICE_GROUP}   (POSIX ACLs)
     with ferry.toml's identity = \"/etc/ferry/tbot/identity\".
  3. Check the config, which now finds everything it names:
       ferry check --config {d}/ferry.toml
  4. Give Logstash the pipeline (add logstash-pipelines.yml to /etc/logstash/pipelines.yml) and restart it.
  5. Install ferry as a service. It runs as the system user and group {SERVICE_GROUP}; make them with ferry.sysusers
     (packaging/systemd, for systemd-sysusers) or:
       useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin {SERVICE_GROUP}
{install}
     then ferry.service to /etc/systemd/system and: systemctl daemon-reload && systemctl enable --now ferry
     Or in the container image (user and group 65532): configure with --group 65532 and mount ferry.toml, ca.crt,
     client.crt, client.key and identity into /etc/ferry.
     Or on Kubernetes: make the two secrets named in teleport-plugin-event-handler-values.yaml, then
       helm install ferry packaging/helm/ferry -n teleport -f {d}/teleport-plugin-event-handler-values.yaml
",
        count = FILES.len(),
        lock = if options.lock { " (with the lock rule)" } else { "" },
        addr = options.addr,
        host = options.dns_names[0],
        install = install_step(options, dir),
    )
}

/// Step 5's lines that put the files ferry reads in /etc/ferry, 0640 root:ferry.
fn install_step(options: &Options, dir: &Path) -> String {
    let files: Vec<String> = READ_BY_FERRY.iter().chain(["identity"].iter()).map(|name| dir.join(name).display().to_string()).collect();
    let files = files.join(" ");
    let shared = options.group.as_ref().is_some_and(|group| group.name == SERVICE_GROUP);
    if dir != Path::new(super::CONFIG_DIR) {
        format!(
            "     Put the files ferry reads in {etc}, 0640 root:{SERVICE_GROUP}:\n       install -D -m 0640 -o root -g {SERVICE_GROUP} -t {etc} {files}",
            etc = super::CONFIG_DIR
        )
    } else if shared {
        format!("     The files ferry reads are in {}, 0640 root:{SERVICE_GROUP} (with the identity as step 2 made it).", super::CONFIG_DIR)
    } else {
        format!("     Let its group read the files it reads:\n       chgrp {SERVICE_GROUP} {files} && chmod 0640 {files}")
    }
}
