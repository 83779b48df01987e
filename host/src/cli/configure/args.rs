//! The command line of `ferry configure`, as teleport-event-handler's
//! `configure` takes it (`OUT`, `ADDR`, `--ttl`, `--dns-names`, `--ip`,
//! `--length`), plus `--key-type`, `--lock`, `--group` and `--force`. Values are
//! checked here rather than by clap so that a bad one is one line naming
//! the flag, like every other error of ferry.

use super::ConfigureError;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `ferry configure OUT [ADDR]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigureArgs {
    /// Folder to write the files to (made when missing).
    pub out: PathBuf,
    /// The Teleport Auth Service (or Proxy, port 443) ferry reads from.
    #[arg(default_value = "localhost:3025")]
    pub addr: String,
    /// How long the certificates are valid (e.g. 87600h, 365d).
    #[arg(long, default_value = "87600h")]
    pub ttl: String,
    /// DNS names of the server certificate, the first also its common name
    /// and the host in ferry.toml's URLs (repeat, or separate with commas).
    #[arg(long = "dns-names", value_delimiter = ',', default_value = "localhost")]
    pub dns_names: Vec<String>,
    /// IP addresses of the server certificate (repeat, or separate with commas).
    #[arg(long, value_delimiter = ',')]
    pub ip: Vec<String>,
    /// RSA key length in bits: 2048, 3072 or 4096 (1024, which the event
    /// handler allowed, is refused by TLS libraries today).
    #[arg(long, default_value_t = 4096)]
    pub length: usize,
    /// Key algorithm: RSA (`--length` bits, as the event handler makes) or
    /// ECDSA P-256 (small and fast; Logstash, Fluentd and nginx accept it).
    #[arg(long, value_enum, default_value_t = KeyType::Rsa)]
    pub key_type: KeyType,
    /// Turn on locking users after failed logins in ferry.toml, and let the
    /// role create locks.
    #[arg(long)]
    pub lock: bool,
    /// The group ferry runs as, by name or number (`ferry` for the systemd
    /// unit, `65532` for the container image): the files ferry reads
    /// (ferry.toml, ca.crt, client.crt, client.key) are written 0640
    /// root:GROUP, so ferry reads them and only root changes them; the keys
    /// ferry must not read stay 0600, root's alone. Without it every file is
    /// 0600 and the service cannot read them until they are given to its
    /// group (`chgrp GROUP FILE && chmod 0640 FILE`).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Overwrite the files of a previous run.
    #[arg(long)]
    pub force: bool,
}

/// The group the files ferry reads are given to (`--group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Group {
    /// As given on the command line (a name or a number).
    pub name: String,
    /// Its number, from the system's group database for a name.
    pub gid: u32,
}

/// The key algorithm of every key `ferry configure` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    /// RSA, `--length` bits, signed with SHA-256.
    Rsa,
    /// ECDSA on P-256, signed with SHA-256.
    Ecdsa,
}

/// The command line, checked.
#[derive(Debug, Clone)]
pub(super) struct Options {
    pub out: PathBuf,
    pub addr: String,
    pub ttl: Duration,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub key_type: KeyType,
    pub length: usize,
    pub lock: bool,
    pub group: Option<Group>,
    pub force: bool,
}

impl ConfigureArgs {
    /// Checks every value; the first bad one is the error.
    pub(super) fn check(&self) -> Result<Options, ConfigureError> {
        let flag = |flag: &'static str, value: &str, reason: String| ConfigureError::Flag { flag, value: value.to_owned(), reason };
        let ttl = crate::units::parse_duration(&self.ttl).map_err(|reason| flag("--ttl", &self.ttl, reason))?;
        if ttl < Duration::from_secs(3600) {
            return Err(flag(
                "--ttl",
                &self.ttl,
                "shorter than an hour; certificates this short would expire before the set-up is done".into(),
            ));
        }
        // Certificates carry times up to the year 9999.
        if ttl > Duration::from_secs(100 * 365 * 86_400) {
            return Err(flag("--ttl", &self.ttl, "longer than 100 years".into()));
        }
        let ips = self
            .ip
            .iter()
            .map(|text| text.trim().parse::<IpAddr>().map_err(|_| flag("--ip", text, "not an IP address (e.g. 10.0.0.5 or ::1)".into())))
            .collect::<Result<Vec<_>, _>>()?;
        let dns_names: Vec<String> = self.dns_names.iter().map(|name| name.trim().to_owned()).filter(|name| !name.is_empty()).collect();
        if dns_names.is_empty() {
            return Err(flag("--dns-names", &self.dns_names.join(","), "give at least one name (the host Logstash is reached at)".into()));
        }
        for name in &dns_names {
            let valid = name.len() <= 253
                && name.split('.').all(|label| {
                    (1..=63).contains(&label.len()) && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
                });
            if !valid {
                return Err(flag("--dns-names", name, "not a DNS name".into()));
            }
        }
        if self.key_type == KeyType::Rsa && ![2048, 3072, 4096].contains(&self.length) {
            return Err(flag("--length", &self.length.to_string(), "RSA keys are 2048, 3072 or 4096 bits".into()));
        }
        crate::source::teleport::connect::check_addr(self.addr.trim()).map_err(|message| flag("ADDR", &self.addr, message))?;
        let group = match &self.group {
            None => None,
            Some(name) => {
                let name = name.trim();
                let gid = crate::access::group_id(name).ok_or_else(|| {
                    flag(
                        "--group",
                        name,
                        "no such group in the system's group database; make it (systemd-sysusers with ferry.sysusers, or \
                         `useradd --system --user-group ferry`) or give its number"
                            .into(),
                    )
                })?;
                Some(Group { name: name.to_owned(), gid })
            }
        };
        Ok(Options {
            out: self.out.clone(),
            addr: self.addr.trim().to_owned(),
            ttl,
            dns_names,
            ips,
            key_type: self.key_type,
            length: self.length,
            lock: self.lock,
            group,
            force: self.force,
        })
    }
}
