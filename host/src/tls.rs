//! TLS settings built from PEM files, in one place.
//!
//! ferry's own TLS clients (the Logstash and HTTP sinks, and the Teleport
//! source through its identity, `source/teleport/identity.rs`) and the
//! stand-in peers' servers get their rustls configs here, so the crypto
//! provider, protocol versions, key checks and error messages stay the same
//! for all of them. Loading tells failures apart (no certificate in a file,
//! no key, a key ferry cannot sign with, a key that does not match its
//! certificate, an unusable CA) and names the file.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

// === params: these must be kept in sync with each other ===

/// The one crypto provider ferry uses (ring: no C toolchain beyond cc).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.2 and 1.3; nothing older.
const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A TLS file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no PEM certificate.
    #[error("{}: no PEM certificate in the file", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[error("{}: no PEM private key in the file (PKCS#8, PKCS#1 and SEC1 keys are accepted)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The file holds a private key of a kind ferry cannot sign with.
    #[error("{}: the private key cannot be used: {}", path.display(), KeyProblem::Unusable)]
    UnusableKey {
        /// The file.
        path: PathBuf,
    },
    /// The CA file holds no certificate usable as a trust anchor.
    #[error("{}: no usable CA certificate in the file", path.display())]
    NoCa {
        /// The file.
        path: PathBuf,
    },
    /// The key does not belong to the certificate, or rustls refused them.
    #[error("{} and {}: {message}", cert.display(), key.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        message: String,
    },
    /// A setting cannot work (for example a certificate without its key).
    #[error("{0}")]
    Invalid(String),
}

/// Certificates from a PEM file (a chain or a bundle).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = crate::access::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })?;
    certs_from_pem(&bytes).ok_or_else(|| TlsError::NoCertificate { path: path.to_owned() })
}

/// Certificates from PEM text; `None` when there are none.
pub fn certs_from_pem(pem: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect();
    (!certs.is_empty()).then_some(certs)
}

/// The first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = crate::access::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })?;
    key_from_pem(&bytes).map_err(|problem| match problem {
        KeyProblem::NoKey => TlsError::NoKey { path: path.to_owned() },
        KeyProblem::Unusable => TlsError::UnusableKey { path: path.to_owned() },
    })
}

/// Why PEM text gave no private key ferry can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// No PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key block.
    #[error("not a PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key in PEM")]
    NoKey,
    /// A key block the crypto provider cannot sign with.
    #[error("not an RSA, ECDSA or Ed25519 private key ferry can sign with")]
    Unusable,
}

/// The first private key in PEM text, checked now that the crypto provider
/// can sign with it: a PEM block of the right kind can still hold no usable
/// key, and that is better told apart here than at the first handshake.
pub fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, KeyProblem> {
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|_| KeyProblem::NoKey)?;
    match provider().key_provider.load_private_key(key.clone_key()) {
        Ok(_) => Ok(key),
        Err(_) => Err(KeyProblem::Unusable),
    }
}

/// A root store holding every certificate of the CA file.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    roots_from(load_certs(path)?).ok_or_else(|| TlsError::NoCa { path: path.to_owned() })
}

/// A root store of the usable trust anchors among `certs`; `None` when
/// there are none.
pub fn roots_from(certs: impl IntoIterator<Item = CertificateDer<'static>>) -> Option<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    (added > 0).then_some(roots)
}

/// The operating system's trust store, for peers with public certificates.
pub fn system_roots() -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(TlsError::Invalid("no CA certificates in the system trust store; set `ca`".into()));
    }
    Ok(roots)
}

/// Where a client's TLS material comes from.
#[derive(Debug, Clone, Default)]
pub struct ClientFiles {
    /// CA bundle that verifies the server; system roots when `None`.
    pub ca: Option<PathBuf>,
    /// Client certificate (chain), for mutual TLS.
    pub cert: Option<PathBuf>,
    /// The client certificate's key.
    pub key: Option<PathBuf>,
}

/// A client config: server verified against `ca` (or the system roots),
/// client certificate presented when `cert` and `key` are given.
pub fn client_config(files: &ClientFiles, alpn: &[&[u8]]) -> Result<ClientConfig, TlsError> {
    let roots = match &files.ca {
        Some(ca) => load_roots(ca)?,
        None => system_roots()?,
    };
    let alpn = alpn.iter().map(|p| p.to_vec()).collect();
    match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => client_config_with(roots, Some((load_certs(cert)?, load_key(key)?)), alpn)
            .map_err(|err| TlsError::KeyMismatch { cert: cert.clone(), key: key.clone(), message: err.to_string() }),
        (None, None) => client_config_with(roots, None, alpn).map_err(|err| TlsError::Invalid(err.to_string())),
        (Some(cert), None) => Err(TlsError::Invalid(format!("{}: a client certificate needs its `key`", cert.display()))),
        (None, Some(key)) => Err(TlsError::Invalid(format!("{}: a client key needs its `cert`", key.display()))),
    }
}

/// A client config from material already in memory: the server verified
/// against `roots`, `client` (a certificate chain and its key) presented
/// when given, `alpn` offered in order. Every client config ferry makes is
/// made here; the error is rustls' (for a client certificate: usually a key
/// that belongs to another certificate).
pub fn client_config_with(
    roots: RootCertStore,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    alpn: Vec<Vec<u8>>,
) -> Result<ClientConfig, rustls::Error> {
    let builder = ClientConfig::builder_with_provider(provider()).with_protocol_versions(VERSIONS)?.with_root_certificates(roots);
    let mut config = match client {
        Some((certs, key)) => builder.with_client_auth_cert(certs, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn;
    Ok(config)
}

/// A server config presenting `cert`/`key`. With `client_ca`, clients must
/// present a certificate signed by it or the handshake fails, as Logstash's
/// `ssl_client_authentication => "required"` does.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<RootCertStore>,
    alpn: &[&[u8]],
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|err| TlsError::Invalid(err.to_string()))?;
    let builder = match client_ca {
        Some(roots) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|err| TlsError::Invalid(format!("client CA: {err}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|err| TlsError::Invalid(format!("server certificate: {err}")))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Writes a file that holds a key (or an identity) so that only its owner
/// can read it: created 0600 under a temporary name, then renamed over
/// `path`, so that no reader ever sees it readable by others or half
/// written (Machine ID readers poll identity files).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp~");
    let temporary = PathBuf::from(temporary);
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
    file.write_all(bytes)?;
    std::fs::rename(&temporary, path)
}

// === failed connections, told apart ===

/// Why a connection to a peer failed before it answered anything, in the
/// terms a person can act on. A TLS client against a plain-HTTP port gets
/// "received corrupt message of type InvalidContentType" from rustls, and
/// a gRPC call to a closed port "Unavailable": both send people looking at
/// certificates or at Teleport, when the address is what is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreached {
    /// The peer answered, but not in TLS (plain HTTP on that port).
    PlainText,
    /// Nothing listens on the port (connection refused).
    Refused,
    /// No answer to the connection at all.
    TimedOut,
    /// The host name does not resolve.
    UnknownHost,
}

impl Unreached {
    /// The failure in `err`'s chain (an `io::Error` wrapping a rustls error
    /// counts), if it is one of these.
    pub fn of(err: &(dyn std::error::Error + 'static)) -> Option<Unreached> {
        let mut next = Some(err);
        while let Some(err) = next {
            if let Some(found) = Unreached::one(err) {
                return Some(found);
            }
            if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref)
                && let Some(found) = Unreached::of(inner)
            {
                return Some(found);
            }
            next = err.source();
        }
        None
    }

    fn one(err: &(dyn std::error::Error + 'static)) -> Option<Unreached> {
        if let Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) = err.downcast_ref::<rustls::Error>() {
            return Some(Unreached::PlainText);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Some(Unreached::Refused),
                std::io::ErrorKind::TimedOut => return Some(Unreached::TimedOut),
                _ => {}
            }
        }
        // getaddrinfo's failures have no `ErrorKind` of their own.
        err.to_string().contains("failed to lookup address information").then_some(Unreached::UnknownHost)
    }

    /// What went wrong at `addr` (`host:port`), as one sentence.
    pub fn at(self, addr: &str) -> String {
        match self {
            Unreached::PlainText => format!("{addr} answered in plain text, not TLS: check the port, and that TLS is enabled there"),
            Unreached::Refused => {
                format!("nothing is listening at {addr} (connection refused): check the port, and that the service is up")
            }
            Unreached::TimedOut => format!("no answer from {addr} (timed out): check the host, and for a firewall in the way"),
            Unreached::UnknownHost => format!("the host of {addr} is not known (DNS lookup failed): check the name"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_standin::pki;

    fn written() -> (tempfile::TempDir, pki::PkiFiles) {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = pki::Pki::generate("t").expect("pki").write(dir.path()).expect("write");
        (dir, files)
    }

    #[test]
    fn a_generated_pki_makes_client_and_server_configs() {
        let (_dir, files) = written();
        let client = ClientFiles { ca: Some(files.ca.clone()), cert: Some(files.client_cert.clone()), key: Some(files.client_key.clone()) };
        assert!(client_config(&client, &[b"h2"]).is_ok());
        let roots = load_roots(&files.ca).expect("roots");
        let server =
            server_config(load_certs(&files.server_cert).expect("cert"), load_key(&files.server_key).expect("key"), Some(roots), &[]);
        assert!(server.is_ok());
    }

    #[test]
    fn written_keys_and_certificates_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, files) = written();
        for path in [&files.ca, &files.server_cert, &files.server_key, &files.client_cert, &files.client_key] {
            let mode = std::fs::metadata(path).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        // Replacing a file keeps it private, and leaves no temporary file.
        write_private(&files.client_key, b"new").expect("rewrite");
        assert_eq!(std::fs::metadata(&files.client_key).expect("stat").permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(files.ca.parent().expect("folder")).expect("list").count(), 5);
    }

    #[test]
    fn failures_are_told_apart_and_name_the_file() {
        let (dir, files) = written();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here").expect("write");
        let missing = dir.path().join("missing.pem");

        let err = load_certs(&empty).expect_err("no cert");
        assert_eq!(err.to_string(), format!("{}: no PEM certificate in the file", empty.display()));
        assert!(matches!(load_key(&files.client_cert), Err(TlsError::NoKey { .. })));
        assert!(matches!(load_certs(&missing), Err(TlsError::Read { .. })));

        let mismatch =
            ClientFiles { ca: Some(files.ca.clone()), cert: Some(files.client_cert.clone()), key: Some(files.server_key.clone()) };
        let err = client_config(&mismatch, &[]).expect_err("key of another cert");
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");

        let unusable = dir.path().join("dsa.key");
        // A PKCS#8 block that holds no key ring can sign with.
        std::fs::write(&unusable, "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n").expect("write");
        let err = load_key(&unusable).expect_err("no usable key");
        assert_eq!(
            err.to_string(),
            format!("{}: the private key cannot be used: not an RSA, ECDSA or Ed25519 private key ferry can sign with", unusable.display())
        );

        let half = ClientFiles { ca: Some(files.ca.clone()), cert: Some(files.client_cert.clone()), key: None };
        assert!(client_config(&half, &[]).expect_err("no key").to_string().contains("needs its `key`"));
    }

    /// A TLS client against a port that speaks plain HTTP, over real
    /// sockets: told as plain text, not as a corrupt message.
    #[tokio::test]
    async fn a_plain_http_port_and_a_closed_port_are_told_apart() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
        });
        let (_dir, files) = written();
        let client = ClientFiles { ca: Some(files.ca.clone()), cert: None, key: None };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&client, &[]).expect("config")));
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let err = connector.connect(name, tcp).await.expect_err("no TLS there");
        assert_eq!(Unreached::of(&err), Some(Unreached::PlainText), "{err}");
        assert_eq!(
            Unreached::PlainText.at(&addr.to_string()),
            format!("{addr} answered in plain text, not TLS: check the port, and that TLS is enabled there")
        );

        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
        let err = tokio::net::TcpStream::connect(closed).await.expect_err("nothing listens");
        assert_eq!(Unreached::of(&err), Some(Unreached::Refused), "{err}");
        let Err(err) = tokio::net::lookup_host("no-such-host.invalid:443").await else { panic!("no-such-host.invalid resolved") };
        assert_eq!(Unreached::of(&err), Some(Unreached::UnknownHost), "{err}");
        assert_eq!(Unreached::of(&std::io::Error::other("something else")), None);
    }
}
