//! The stand-ins' own TLS: a server config that requires client
//! certificates, and private files. Written here rather than taken from
//! ferry so that the stand-ins do not share the code they test.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{RootCertStore, ServerConfig};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Certificates from PEM text (none when it holds none).
pub(crate) fn certs_from_pem(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect()
}

/// A server presenting `cert_pem`/`key_pem` that requires a client
/// certificate signed by `client_ca_pem`, as Teleport's Auth Service and
/// Logstash with `ssl_client_authentication => "required"` do.
pub(crate) fn server_config(cert_pem: &[u8], key_pem: &[u8], client_ca_pem: &[u8], alpn: &[&[u8]]) -> io::Result<ServerConfig> {
    let certs = certs_from_pem(cert_pem);
    if certs.is_empty() {
        return Err(io::Error::other("no server certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(io::Error::other)?;
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certs_from_pem(client_ca_pem));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().map_err(io::Error::other)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(io::Error::other)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(io::Error::other)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Writes a file that holds a key (or an identity) so that only its owner
/// can read it: created 0600 under a temporary name, then renamed over
/// `path`, so that no reader ever sees it readable by others or half
/// written (ferry polls identity files, as Machine ID readers do).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
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
