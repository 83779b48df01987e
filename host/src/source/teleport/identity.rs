//! Teleport credentials: an identity file (`tctl auth sign --format=file`,
//! or Machine ID's output) or a certificate/key/CA triple, turned into a
//! rustls client config that Teleport's Auth Service accepts.
//!
//! The identity file is classified exactly as Teleport's reader does
//! (`api/identityfile`, `decodeIdentityFile`): lines are trimmed; a line
//! whose first space-separated word looks like an OpenSSH certificate type
//! (`<key-type>-cert-v<NN>@openssh.com`) is the SSH certificate; a line
//! starting with `@cert-authority` is an SSH CA; a `-----BEGIN` line opens a
//! PEM block that runs to the next `-----END` line, and PEM blocks are
//! assigned by arrival order — the first is the private key, the second the
//! TLS certificate, every later one a TLS CA certificate. Other lines are
//! ignored. ferry speaks only TLS, so a file without an SSH certificate is
//! accepted (Teleport's Go client would also look for `<file>-cert.pub`).
//!
//! TLS facts, from Teleport's `api/client` (`configureTLS`, `ConfigureALPN`):
//! the server name is always `teleport.cluster.local` (on every certificate
//! Teleport issues to its services), the roots are the identity's TLS CAs,
//! the client certificate is always presented. ALPN is
//! `teleport-auth@<hex(cluster)>.teleport.cluster.local` then `h2` unless
//! told otherwise ([`Route`]): a Proxy with TLS routing routes on the first
//! protocol and forwards the TLS connection, unterminated, to the Auth
//! Service (`lib/srv/alpnproxy`, `ForwardTLS`), and the Auth Service picks
//! `h2`, so one offer reaches both kinds of address.
//!
//! Key material is never printed: errors name the file and the part, and
//! [`IdentityFile`]'s `Debug` hides the key.

use crate::tls::{self, KeyProblem};
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The server name on every certificate Teleport issues to its services, and
/// the SNI its clients send (`constants.APIDomain`).
pub const API_DOMAIN: &str = "teleport.cluster.local";

/// Prefix of the ALPN protocol that asks a Proxy with TLS routing to forward
/// the connection to a cluster's Auth Service (`constants.ALPNSNIAuthProtocol`).
pub const ALPN_AUTH_PREFIX: &str = "teleport-auth@";

/// HTTP/2 over TLS, which gRPC needs.
pub const ALPN_H2: &[u8] = b"h2";

// === The identity file ===

/// The parts of an identity file, as PEM or text lines, classified as
/// Teleport's reader classifies them. Nothing is validated here.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IdentityFile {
    /// The first PEM block: the private key (for TLS and SSH alike).
    pub private_key: Option<Vec<u8>>,
    /// The OpenSSH certificate line, if any.
    pub ssh_cert: Option<Vec<u8>>,
    /// The second PEM block: the TLS client certificate.
    pub tls_cert: Option<Vec<u8>>,
    /// `@cert-authority` lines (known_hosts format).
    pub ssh_cas: Vec<Vec<u8>>,
    /// Every later PEM block: the cluster's TLS CA certificates.
    pub tls_cas: Vec<Vec<u8>>,
}

impl fmt::Debug for IdentityFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityFile")
            .field("private_key", &self.private_key.as_ref().map(|_| "<redacted>"))
            .field("ssh_cert", &self.ssh_cert.is_some())
            .field("tls_cert", &self.tls_cert.is_some())
            .field("ssh_cas", &self.ssh_cas.len())
            .field("tls_cas", &self.tls_cas.len())
            .finish()
    }
}

/// A PEM block that never ends: the file is cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a PEM block has no END line (the file is cut short)")]
pub struct PemFragment;

impl IdentityFile {
    /// Splits identity file text into its parts.
    pub fn parse(text: &[u8]) -> Result<IdentityFile, PemFragment> {
        let mut identity = IdentityFile::default();
        let mut lines = text.split(|&b| b == b'\n').map(<[u8]>::trim_ascii);
        while let Some(line) = lines.next() {
            if is_ssh_cert(line) {
                identity.ssh_cert = Some(with_newline(line));
            } else if line.starts_with(b"@cert-authority") {
                identity.ssh_cas.push(with_newline(line));
            } else if line.starts_with(b"-----BEGIN") {
                let block = pem_block(line, &mut lines)?;
                identity.place(block);
            }
        }
        Ok(identity)
    }

    /// The file's text, in the order Teleport writes it: key, SSH
    /// certificate, TLS certificate, SSH CAs, TLS CAs.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let parts = [&self.private_key, &self.ssh_cert, &self.tls_cert];
        let parts = parts.into_iter().flatten().chain(&self.ssh_cas).chain(&self.tls_cas);
        for part in parts {
            out.extend_from_slice(part);
            if !part.ends_with(b"\n") {
                out.push(b'\n');
            }
        }
        out
    }

    fn place(&mut self, block: Vec<u8>) {
        if self.private_key.is_none() {
            self.private_key = Some(block);
        } else if self.tls_cert.is_none() {
            self.tls_cert = Some(block);
        } else {
            self.tls_cas.push(block);
        }
    }
}

/// The lines of one PEM block, from its BEGIN line to its END line.
fn pem_block<'a>(begin: &[u8], lines: &mut impl Iterator<Item = &'a [u8]>) -> Result<Vec<u8>, PemFragment> {
    let mut block = with_newline(begin);
    loop {
        let line = lines.next().ok_or(PemFragment)?;
        block.extend_from_slice(line);
        block.push(b'\n');
        if line.starts_with(b"-----END") {
            return Ok(block);
        }
    }
}

fn with_newline(line: &[u8]) -> Vec<u8> {
    let mut owned = line.to_vec();
    owned.push(b'\n');
    owned
}

/// Whether the line's first word is an OpenSSH certificate type, as
/// Teleport's `^[a-z0-9\-]+-cert-v[0-9]{2}@openssh\.com$`.
fn is_ssh_cert(line: &[u8]) -> bool {
    const VERSION: &[u8] = b"-cert-v";
    let word = line.split(|&b| b == b' ').next().unwrap_or_default();
    let Some(rest) = word.strip_suffix(b"@openssh.com") else { return false };
    // `rest` is `<key-type>-cert-vNN`: split off the last nine bytes.
    let Some(at) = rest.len().checked_sub(VERSION.len() + 2) else { return false };
    let (key_type, suffix) = rest.split_at(at);
    suffix.starts_with(VERSION)
        && suffix[VERSION.len()..].iter().all(u8::is_ascii_digit)
        && !key_type.is_empty()
        && key_type.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

// === Certificates ===

/// What ferry reports about a certificate: never key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject common name (for a Teleport user certificate, the user).
    pub common_name: String,
    /// Issuer common name (for Teleport, the cluster name).
    pub issuer_common_name: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// End of validity.
    pub not_after: SystemTime,
}

/// Reads the subject, issuer, serial and end of validity of a DER certificate.
pub fn certificate_info(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|err| format!("not an X.509 certificate ({err})"))?;
    let common_name = |name: &x509_parser::x509::X509Name<'_>| {
        name.iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or_default().to_owned()
    };
    let not_after = cert.validity().not_after.timestamp();
    Ok(CertInfo {
        common_name: common_name(cert.subject()),
        issuer_common_name: common_name(cert.issuer()),
        serial: hex(trim_leading_zeros(cert.raw_serial())),
        not_after: unix_seconds(not_after),
    })
}

fn trim_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len().saturating_sub(1));
    &bytes[start..]
}

fn unix_seconds(seconds: i64) -> SystemTime {
    match u64::try_from(seconds) {
        Ok(after) => UNIX_EPOCH + Duration::from_secs(after),
        Err(_) => UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()),
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// === Routes and ALPN ===

/// How ferry reaches the Auth Service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Route {
    /// Whatever `addr` is, as Teleport's own client reaches it: the routing
    /// protocol for the identity's cluster first, then `h2`. The Auth
    /// Service picks `h2`; a Proxy with TLS routing routes on the first
    /// protocol and forwards the TLS connection, unterminated, to the Auth
    /// Service, which then picks `h2`. What the event handler's config (an
    /// address and an identity, nothing else) needs.
    #[default]
    Auto,
    /// Straight to the Auth Service (port 3025 by default): `h2` alone.
    Direct,
    /// Through a Proxy Service with TLS routing (port 443), which forwards
    /// the TLS connection to the Auth Service of `cluster` (ferry's
    /// `cluster` key: a cluster other than the identity's, such as a leaf).
    TlsRouting {
        /// The cluster name (the CN of its CA certificate).
        cluster: String,
    },
}

impl Route {
    /// The route with [`Route::Auto`] made concrete for credentials of
    /// `identity_cluster`.
    pub fn for_cluster(&self, identity_cluster: &str) -> Route {
        match self {
            Route::Auto => Route::TlsRouting { cluster: identity_cluster.to_owned() },
            other => other.clone(),
        }
    }
}

/// `<hex(cluster)>.teleport.cluster.local`, as Teleport's `EncodeClusterName`:
/// hex hides the dots of the cluster name from wildcard matching.
pub fn encode_cluster_name(cluster: &str) -> String {
    format!("{}.{API_DOMAIN}", hex(cluster.as_bytes()))
}

/// The cluster a routing protocol (`teleport-auth@<hex>.teleport.cluster.local`)
/// asks for; `None` for any other protocol.
pub fn routed_cluster(protocol: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(protocol).ok()?;
    let hex = text.strip_prefix(ALPN_AUTH_PREFIX)?.strip_suffix(API_DOMAIN)?.strip_suffix('.')?;
    let bytes = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// The ALPN protocols ferry offers on a concrete route, in order
/// ([`Route::Auto`] offers `h2` alone here: see [`Route::for_cluster`]).
pub fn alpn_protocols(route: &Route) -> Vec<Vec<u8>> {
    match route {
        Route::Direct | Route::Auto => vec![ALPN_H2.to_vec()],
        Route::TlsRouting { cluster } => {
            vec![format!("{ALPN_AUTH_PREFIX}{}", encode_cluster_name(cluster)).into_bytes(), ALPN_H2.to_vec()]
        }
    }
}

// === Credentials ===

/// Where the Teleport credentials come from (the `[teleport]` config keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `identity`: an identity file.
    IdentityFile(PathBuf),
    /// `cert`, `key`, `ca`: a TLS certificate, its key and the cluster's CA.
    KeyPair {
        /// Client certificate (chain), PEM.
        cert: PathBuf,
        /// Its private key, PEM.
        key: PathBuf,
        /// The cluster's TLS CA certificates, PEM.
        ca: PathBuf,
    },
}

/// Credentials that cannot be used, and why; one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM block is not closed.
    #[error("{}: a PEM block has no END line (the file is cut short)", path.display())]
    Fragment {
        /// The file.
        path: PathBuf,
    },
    /// No private key where one must be.
    #[error("{}: no private key (an identity file starts with the private key's PEM block; make one with `tctl auth sign --format=file`)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key block is not a key ferry can use.
    #[error("{}: the private key cannot be used: {reason}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Why (never the key itself).
        reason: String,
    },
    /// No TLS certificate where one must be.
    #[error("{}: no TLS certificate (in an identity file, the PEM block after the private key)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A certificate cannot be parsed.
    #[error("{}: {reason}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No cluster CA to verify the Auth Service with.
    #[error("{}: no TLS CA certificate to verify the Auth Service with (in an identity file, the PEM blocks after the TLS certificate)", path.display())]
    NoCa {
        /// The file.
        path: PathBuf,
    },
    /// The certificate has expired.
    #[error("every certificate in {} expired {}; issue a new one (`tctl auth sign`, or Machine ID)", path.display(), crate::units::describe_time(*at))]
    Expired {
        /// The file.
        path: PathBuf,
        /// When the last of them expired.
        at: SystemTime,
    },
    /// rustls refused the certificate and key together (usually: the key
    /// belongs to another certificate).
    #[error("{}: the TLS certificate and private key do not go together: {reason}", path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// rustls' reason.
        reason: String,
    },
}

/// Usable TLS credentials: a client certificate chain, its key and the
/// cluster's CA certificates.
pub struct TlsMaterial {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cas: Vec<CertificateDer<'static>>,
    info: CertInfo,
    cert_path: PathBuf,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial").field("certificate", &self.info).field("cas", &self.cas.len()).finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads and checks the credentials now.
    pub fn load(&self) -> Result<TlsMaterial, IdentityError> {
        self.load_at(SystemTime::now())
    }

    /// Reads and checks the credentials as of `now` (expiry is judged then).
    pub fn load_at(&self, now: SystemTime) -> Result<TlsMaterial, IdentityError> {
        match self {
            Credentials::IdentityFile(path) => TlsMaterial::from_identity(path, &read(path)?, now),
            Credentials::KeyPair { cert, key, ca } => TlsMaterial::from_key_pair(cert, key, ca, now),
        }
    }

    /// The files whose change means the credentials should be read again.
    pub fn files(&self) -> Vec<&Path> {
        match self {
            Credentials::IdentityFile(path) => vec![path],
            Credentials::KeyPair { cert, key, ca } => vec![cert, key, ca],
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, IdentityError> {
    crate::access::read(path).map_err(|source| IdentityError::Read { path: path.to_owned(), source })
}

impl TlsMaterial {
    /// Credentials from identity file text; `path` names the file in errors.
    pub fn from_identity(path: &Path, text: &[u8], now: SystemTime) -> Result<TlsMaterial, IdentityError> {
        let file = IdentityFile::parse(text).map_err(|_| IdentityError::Fragment { path: path.to_owned() })?;
        let key_pem = file.private_key.ok_or_else(|| IdentityError::NoKey { path: path.to_owned() })?;
        let key = parse_key(path, &key_pem)?;
        let cert_pem = file.tls_cert.ok_or_else(|| IdentityError::NoCertificate { path: path.to_owned() })?;
        let certs = parse_certs(path, &cert_pem)?;
        // A CA block that is not a certificate is skipped (Teleport's Go client
        // refuses the whole file instead); only having none is an error.
        let cas = file.tls_cas.iter().filter_map(|pem| tls::certs_from_pem(pem)).flatten().collect();
        TlsMaterial::new(certs, key, cas, (path, path), now)
    }

    /// Credentials from a certificate, key and CA file.
    pub fn from_key_pair(cert: &Path, key: &Path, ca: &Path, now: SystemTime) -> Result<TlsMaterial, IdentityError> {
        let certs = parse_certs(cert, &read(cert)?)?;
        let private_key = parse_key(key, &read(key)?)?;
        let cas = parse_certs(ca, &read(ca)?).map_err(|err| match err {
            IdentityError::NoCertificate { path } => IdentityError::NoCa { path },
            other => other,
        })?;
        TlsMaterial::new(certs, private_key, cas, (cert, ca), now)
    }

    fn new(
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        cas: Vec<CertificateDer<'static>>,
        (cert_path, ca_path): (&Path, &Path),
        now: SystemTime,
    ) -> Result<TlsMaterial, IdentityError> {
        let leaf = certs.first().ok_or_else(|| IdentityError::NoCertificate { path: cert_path.to_owned() })?;
        let info = certificate_info(leaf).map_err(|reason| IdentityError::BadCertificate { path: cert_path.to_owned(), reason })?;
        if cas.is_empty() {
            return Err(IdentityError::NoCa { path: ca_path.to_owned() });
        }
        if info.not_after <= now {
            return Err(IdentityError::Expired { path: cert_path.to_owned(), at: info.not_after });
        }
        let material = TlsMaterial { certs, key, cas, info, cert_path: cert_path.to_owned() };
        // Fail now, not at the first handshake, when rustls refuses the pair.
        material.client_config(&Route::Direct)?;
        Ok(material)
    }

    /// The client certificate's subject, issuer, serial and expiry.
    pub fn certificate(&self) -> &CertInfo {
        &self.info
    }

    /// The cluster name, as Teleport writes it in its CAs' common name.
    pub fn cluster_name(&self) -> &str {
        &self.info.issuer_common_name
    }

    /// When the client certificate expires.
    pub fn expires(&self) -> SystemTime {
        self.info.not_after
    }

    /// A rustls config for `route`: the cluster CAs as roots, the client
    /// certificate always presented, ALPN per [`alpn_protocols`]. The server
    /// name ([`API_DOMAIN`]) is given when connecting.
    pub fn client_config(&self, route: &Route) -> Result<ClientConfig, IdentityError> {
        let roots = tls::roots_from(self.cas.iter().cloned()).ok_or_else(|| IdentityError::NoCa { path: self.cert_path.clone() })?;
        let protocols = alpn_protocols(&route.for_cluster(self.cluster_name()));
        tls::client_config_with(roots, Some((self.certs.clone(), self.key.clone_key())), protocols)
            .map_err(|err| IdentityError::Mismatch { path: self.cert_path.clone(), reason: err.to_string() })
    }

    /// [`TlsMaterial::client_config`], shared.
    pub fn shared_client_config(&self, route: &Route) -> Result<Arc<ClientConfig>, IdentityError> {
        self.client_config(route).map(Arc::new)
    }
}

fn parse_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, IdentityError> {
    tls::key_from_pem(pem).map_err(|problem| match problem {
        KeyProblem::NoKey if pem.trim_ascii_start().starts_with(b"-----BEGIN CERTIFICATE-----") => {
            IdentityError::NoKey { path: path.to_owned() }
        }
        problem => IdentityError::BadKey { path: path.to_owned(), reason: problem.to_string() },
    })
}

fn parse_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    tls::certs_from_pem(pem).ok_or_else(|| IdentityError::NoCertificate { path: path.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};

    struct Issued {
        ca_pem: String,
        cert_pem: String,
        key_pem: String,
    }

    fn issue(cluster: &str, user: &str, not_after: time::OffsetDateTime) -> Issued {
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.distinguished_name.push(DnType::CommonName, cluster);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca_pem = ca.self_signed(&ca_key).expect("ca").pem();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("key");
        let mut leaf = CertificateParams::new(Vec::<String>::new()).expect("params");
        leaf.distinguished_name.push(DnType::CommonName, user);
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        leaf.serial_number = Some(4660_u64.into());
        leaf.not_before = not_after - time::Duration::hours(2);
        leaf.not_after = not_after;
        let cert_pem = leaf.signed_by(&key, &issuer).expect("leaf").pem();
        Issued { ca_pem, cert_pem, key_pem: key.serialize_pem() }
    }

    fn fresh() -> Issued {
        issue("example.com", "ferry-bot", time::OffsetDateTime::now_utc() + time::Duration::hours(1))
    }

    const SSH_CERT: &str = "ecdsa-sha2-nistp256-cert-v01@openssh.com AAAAKGVjZHNhLXNoYTItbmlzdHAyNTYtY2VydC12MDFAb3BlbnNzaC5jb20=";
    const SSH_CA: &str =
        "@cert-authority example.com,*.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== clustername=example.com&type=host";

    fn identity_text(issued: &Issued) -> String {
        format!("{}{SSH_CERT}\n{}{SSH_CA}\n{}", issued.key_pem, issued.cert_pem, issued.ca_pem)
    }

    fn path() -> PathBuf {
        PathBuf::from("/etc/ferry/auth.pem")
    }

    #[test]
    fn the_parts_are_classified_like_teleports_reader() {
        let issued = fresh();
        let text = format!("  {}\ngarbage line\n", identity_text(&issued));
        let file = IdentityFile::parse(text.as_bytes()).expect("parses");
        assert_eq!(file.private_key.as_deref(), Some(issued.key_pem.as_bytes()));
        assert_eq!(file.ssh_cert.as_deref(), Some(format!("{SSH_CERT}\n").as_bytes()));
        assert_eq!(file.tls_cert.as_deref(), Some(issued.cert_pem.as_bytes()));
        assert_eq!(file.ssh_cas, vec![format!("{SSH_CA}\n").into_bytes()]);
        assert_eq!(file.tls_cas, vec![issued.ca_pem.clone().into_bytes()]);
        assert_eq!(IdentityFile::parse(&file.encode()).expect("again"), file);
        assert!(!format!("{file:?}").contains("PRIVATE"), "Debug hides the key");
    }

    #[test]
    fn ssh_certificate_types_follow_teleports_pattern() {
        for yes in ["ssh-rsa-cert-v01@openssh.com AAAA", "ssh-ed25519-cert-v01@openssh.com", "rsa-sha2-256-cert-v01@openssh.com x"] {
            assert!(is_ssh_cert(yes.as_bytes()), "{yes}");
        }
        for no in [
            "ssh-rsa AAAA",
            "ssh-rsa-cert-v1@openssh.com",
            "SSH-RSA-cert-v01@openssh.com",
            "-cert-v01@openssh.com",
            "x-cert-v01@openssh.org",
        ] {
            assert!(!is_ssh_cert(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn a_good_identity_loads_with_its_facts() {
        let material = TlsMaterial::from_identity(&path(), identity_text(&fresh()).as_bytes(), SystemTime::now()).expect("loads");
        assert_eq!(material.cluster_name(), "example.com");
        assert_eq!(material.certificate().common_name, "ferry-bot");
        assert_eq!(material.certificate().serial, "1234");
        let config = material.client_config(&Route::TlsRouting { cluster: "example.com".into() }).expect("config");
        assert_eq!(config.alpn_protocols, vec![b"teleport-auth@6578616d706c652e636f6d.teleport.cluster.local".to_vec(), b"h2".to_vec()]);
        assert_eq!(material.client_config(&Route::Direct).expect("config").alpn_protocols, vec![b"h2".to_vec()]);
        let auto = material.client_config(&Route::Auto).expect("config");
        assert_eq!(auto.alpn_protocols, config.alpn_protocols, "no `cluster` key: the identity's cluster, routing protocol first");
        assert_eq!(routed_cluster(&auto.alpn_protocols[0]).as_deref(), Some("example.com"));
        let leaf = material.client_config(&Route::TlsRouting { cluster: "leaf.example.com".into() }).expect("config");
        assert_eq!(routed_cluster(&leaf.alpn_protocols[0]).as_deref(), Some("leaf.example.com"), "`cluster` overrides");
        for other in [
            &b"h2"[..],
            b"teleport-auth@zz.teleport.cluster.local",
            b"teleport-auth@6578.example.com",
            b"teleport-auth@657.teleport.cluster.local",
        ] {
            assert_eq!(routed_cluster(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn each_broken_identity_gets_its_own_one_line_error() {
        let issued = fresh();
        let p = path();
        let load = |text: String| TlsMaterial::from_identity(&p, text.as_bytes(), SystemTime::now()).expect_err("broken").to_string();

        let cut = format!("{}{}", issued.key_pem, issued.cert_pem.lines().take(3).collect::<Vec<_>>().join("\n"));
        assert_eq!(load(cut), "/etc/ferry/auth.pem: a PEM block has no END line (the file is cut short)");
        assert_eq!(
            load(format!("{}{}", issued.cert_pem, issued.ca_pem)),
            "/etc/ferry/auth.pem: no private key (an identity file starts with the private key's PEM block; make one with `tctl auth sign --format=file`)"
        );
        assert_eq!(load(String::new()), load(format!("{SSH_CERT}\n")), "no PEM at all: no key");
        assert_eq!(
            load(issued.key_pem.clone()),
            "/etc/ferry/auth.pem: no TLS certificate (in an identity file, the PEM block after the private key)"
        );
        assert_eq!(
            load(format!("{}{}", issued.key_pem, issued.cert_pem)),
            "/etc/ferry/auth.pem: no TLS CA certificate to verify the Auth Service with (in an identity file, the PEM blocks after the TLS certificate)"
        );
        let other = fresh();
        let mismatch = load(format!("{}{}{}", other.key_pem, issued.cert_pem, issued.ca_pem));
        assert!(mismatch.starts_with("/etc/ferry/auth.pem: the TLS certificate and private key do not go together: "), "{mismatch}");
        let bad_key = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            load(format!("{bad_key}{}{}", issued.cert_pem, issued.ca_pem)),
            "/etc/ferry/auth.pem: the private key cannot be used: not an RSA, ECDSA or Ed25519 private key ferry can sign with"
        );
        for message in [load(format!("{}{}", issued.key_pem, issued.cert_pem)), mismatch] {
            assert!(!message.contains("PRIVATE KEY") && !message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn an_expired_identity_says_when() {
        let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let expired = issue("example.com", "ferry-bot", at);
        let err = TlsMaterial::from_identity(&path(), identity_text(&expired).as_bytes(), SystemTime::now()).expect_err("expired");
        assert_eq!(
            err.to_string(),
            "every certificate in /etc/ferry/auth.pem expired at 2023-11-14T22:13:20Z; issue a new one (`tctl auth sign`, or Machine ID)"
        );
        let before = UNIX_EPOCH + Duration::from_secs(1_699_999_000);
        assert!(TlsMaterial::from_identity(&path(), identity_text(&expired).as_bytes(), before).is_ok());
    }

    /// X.509 times go back to year 0 (a UTCTime `50` is 1950): an identity
    /// that expired before 1970 is said so in one line; formatting its time
    /// used to panic.
    #[test]
    fn an_identity_expired_before_1970_says_so_without_panicking() {
        let at = time::OffsetDateTime::from_unix_timestamp(-315_619_200).expect("1960-01-01");
        let expired = issue("example.com", "ferry-bot", at);
        let err = TlsMaterial::from_identity(&path(), identity_text(&expired).as_bytes(), SystemTime::now()).expect_err("expired");
        assert_eq!(
            err.to_string(),
            "every certificate in /etc/ferry/auth.pem expired before 1970-01-01T00:00:00Z; issue a new one (`tctl auth sign`, or Machine ID)"
        );
    }

    #[test]
    fn a_key_pair_triple_loads_and_names_the_file_at_fault() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issued = fresh();
        let write = |name: &str, text: &str| {
            let file = dir.path().join(name);
            std::fs::write(&file, text).expect("write");
            file
        };
        let (cert, key, ca) = (write("tls.crt", &issued.cert_pem), write("tls.key", &issued.key_pem), write("tls.cas", &issued.ca_pem));
        let good = Credentials::KeyPair { cert: cert.clone(), key: key.clone(), ca: ca.clone() };
        assert_eq!(good.load().expect("loads").cluster_name(), "example.com");

        let empty = write("empty", "");
        let no_ca = Credentials::KeyPair { cert: cert.clone(), key: key.clone(), ca: empty.clone() }.load().expect_err("no ca");
        assert!(matches!(no_ca, IdentityError::NoCa { ref path } if *path == empty), "{no_ca}");
        let no_key = Credentials::KeyPair { cert: cert.clone(), key: cert.clone(), ca: ca.clone() }.load().expect_err("no key");
        assert!(matches!(no_key, IdentityError::NoKey { ref path } if *path == cert), "{no_key}");
        let missing = dir.path().join("missing.pem");
        let err = Credentials::IdentityFile(missing.clone()).load().expect_err("missing");
        assert!(err.to_string().starts_with(&format!("cannot read {}: ", missing.display())), "{err}");
    }

    /// Whatever the bytes, reading them as an identity file never panics, and
    /// a refusal is one line that names the file.
    mod props {
        use super::*;
        use proptest::prelude::*;
        use std::sync::OnceLock;

        /// One real identity, issued once: key generation is slow.
        fn real() -> &'static [u8] {
            static TEXT: OnceLock<Vec<u8>> = OnceLock::new();
            TEXT.get_or_init(|| identity_text(&fresh()).into_bytes())
        }

        /// One way to damage a file.
        #[derive(Debug, Clone)]
        enum Damage {
            /// Replace the byte at (a fraction of the length) with this one.
            Set(f64, u8),
            /// Remove this many bytes from there.
            Cut(f64, usize),
            /// Insert these bytes there.
            Insert(f64, Vec<u8>),
            /// End the file there.
            Truncate(f64),
            /// Repeat the line there.
            DuplicateLine(f64),
            /// Drop the line there.
            DropLine(f64),
        }

        fn damage() -> impl Strategy<Value = Damage> {
            let at = 0.0..1.0f64;
            prop_oneof![
                (at.clone(), any::<u8>()).prop_map(|(at, byte)| Damage::Set(at, byte)),
                (at.clone(), 1..64usize).prop_map(|(at, n)| Damage::Cut(at, n)),
                (
                    at.clone(),
                    prop_oneof![
                        proptest::collection::vec(any::<u8>(), 1..32),
                        Just(b"-----BEGIN CERTIFICATE-----\n".to_vec()),
                        Just(b"-----END CERTIFICATE-----\n".to_vec()),
                        Just(b"-----BEGIN RSA PRIVATE KEY-----\n".to_vec()),
                        Just(b"\n".to_vec()),
                        Just(b"\r\n".to_vec()),
                    ]
                )
                    .prop_map(|(at, bytes)| Damage::Insert(at, bytes)),
                at.clone().prop_map(Damage::Truncate),
                at.clone().prop_map(Damage::DuplicateLine),
                at.prop_map(Damage::DropLine),
            ]
        }

        fn apply(text: &mut Vec<u8>, damage: &Damage) {
            let place = |at: f64, len: usize| ((at * len as f64) as usize).min(len);
            match damage {
                Damage::Set(at, byte) => {
                    if !text.is_empty() {
                        let i = place(*at, text.len() - 1);
                        text[i] = *byte;
                    }
                }
                Damage::Cut(at, n) => {
                    let i = place(*at, text.len());
                    let end = (i + n).min(text.len());
                    text.drain(i..end);
                }
                Damage::Insert(at, bytes) => {
                    let i = place(*at, text.len());
                    text.splice(i..i, bytes.iter().copied());
                }
                Damage::Truncate(at) => text.truncate(place(*at, text.len())),
                Damage::DuplicateLine(at) | Damage::DropLine(at) => {
                    let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
                    let i = place(*at, lines.len() - 1);
                    if matches!(damage, Damage::DuplicateLine(_)) {
                        lines.insert(i, lines[i].clone());
                    } else {
                        lines.remove(i);
                    }
                    *text = lines.join(&b'\n');
                }
            }
        }

        fn check(text: &[u8]) -> Result<(), TestCaseError> {
            let path = path();
            if let Err(err) = TlsMaterial::from_identity(&path, text, SystemTime::now()) {
                let message = err.to_string();
                prop_assert!(!message.contains('\n') && !message.contains('\r'), "not one line: {message:?}");
                prop_assert!(message.contains(&path.display().to_string()), "does not name the file: {message}");
                prop_assert!(!message.contains("PRIVATE KEY-----"), "quotes the key: {message}");
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(192))]

            #[test]
            fn arbitrary_bytes_never_panic(text in proptest::collection::vec(any::<u8>(), 0..2048)) {
                check(&text)?;
            }

            #[test]
            fn a_damaged_real_identity_never_panics(damages in proptest::collection::vec(damage(), 1..6)) {
                let mut text = real().to_vec();
                for damage in &damages {
                    apply(&mut text, damage);
                }
                check(&text)?;
            }

            /// Any expiry a certificate can carry (years 1 to 9999; a UTCTime
            /// `50` is 1950): loaded, or refused in one line naming the file.
            #[test]
            fn any_expiry_loads_or_is_one_line(seconds in -62_135_596_800i64..253_402_300_799) {
                let at = time::OffsetDateTime::from_unix_timestamp(seconds).expect("in the range of a certificate");
                check(identity_text(&issue("example.com", "ferry-bot", at)).as_bytes())?;
            }

            #[test]
            fn pem_bodies_with_changed_bytes_never_panic(at in 0.0..1.0f64, byte in any::<u8>(), block in 0..3usize) {
                // Damage inside one PEM body (key, certificate or CA), where
                // the parsers below the splitter see it.
                let text = real();
                let begins: Vec<usize> = text.windows(11).enumerate().filter(|(_, w)| *w == b"-----BEGIN ").map(|(i, _)| i).collect();
                let start = begins[block.min(begins.len() - 1)];
                let body_start = start + text[start..].iter().position(|&b| b == b'\n').unwrap_or(0) + 1;
                let body_len = text[body_start..].windows(9).position(|w| w == b"-----END ").unwrap_or(0);
                let mut text = text.to_vec();
                if body_len > 0 {
                    text[body_start + ((at * body_len as f64) as usize).min(body_len - 1)] = byte;
                }
                check(&text)?;
            }
        }
    }
}
