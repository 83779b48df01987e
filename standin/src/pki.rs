//! A throw-away PKI (a CA, a server certificate for `localhost` and
//! `127.0.0.1`, a client certificate) for the stand-in Logstash, the demo
//! and tests. Keys are PKCS#8 PEM.

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use std::path::{Path, PathBuf};

/// PEM text of a certificate and its key.
#[derive(Clone)]
pub struct Pair {
    /// Certificate, PEM.
    pub cert: String,
    /// Private key, PKCS#8 PEM.
    pub key: String,
}

/// A CA with a server and a client certificate it signed.
#[derive(Clone)]
pub struct Pki {
    /// The CA.
    pub ca: Pair,
    /// Server certificate for `localhost` / `127.0.0.1`.
    pub server: Pair,
    /// Client certificate.
    pub client: Pair,
}

/// Paths of a PKI written to a folder.
#[derive(Debug, Clone)]
pub struct PkiFiles {
    /// `ca.crt`.
    pub ca: PathBuf,
    /// `server.crt`.
    pub server_cert: PathBuf,
    /// `server.key`.
    pub server_key: PathBuf,
    /// `client.crt`.
    pub client_cert: PathBuf,
    /// `client.key`.
    pub client_key: PathBuf,
}

impl Pki {
    /// Generates a fresh PKI named `name` (used in the CA's common name).
    pub fn generate(name: &str) -> Result<Pki, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = Pair { cert: ca_cert.pem(), key: ca_key.serialize_pem() };
        let issuer = Issuer::new(ca_params, ca_key);
        let server = leaf(&issuer, "localhost", &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth)?;
        let client = leaf(&issuer, "ferry", &[], ExtendedKeyUsagePurpose::ClientAuth)?;
        Ok(Pki { ca, server, client })
    }

    /// Writes the PKI to `dir` as `ca.crt`, `server.{crt,key}`, `client.{crt,key}`.
    pub fn write(&self, dir: &Path) -> std::io::Result<PkiFiles> {
        std::fs::create_dir_all(dir)?;
        let files = PkiFiles {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        };
        // Certificates too: the demo's folder is for its owner only.
        crate::tls::write_private(&files.ca, self.ca.cert.as_bytes())?;
        crate::tls::write_private(&files.server_cert, self.server.cert.as_bytes())?;
        crate::tls::write_private(&files.server_key, self.server.key.as_bytes())?;
        crate::tls::write_private(&files.client_cert, self.client.cert.as_bytes())?;
        crate::tls::write_private(&files.client_key, self.client.key.as_bytes())?;
        Ok(files)
    }
}

fn leaf(issuer: &Issuer<'_, KeyPair>, common_name: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Result<Pair, rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    for name in names {
        params.subject_alt_names.push(match name.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*name).try_into()?),
        });
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer)?;
    Ok(Pair { cert: cert.pem(), key: key.serialize_pem() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_pki_is_private_and_its_ca_signed_both_leaves() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::generate("t").expect("pki");
        let files = pki.write(dir.path()).expect("write");
        for path in [&files.ca, &files.server_cert, &files.server_key, &files.client_cert, &files.client_key] {
            assert_eq!(std::fs::metadata(path).expect("stat").permissions().mode() & 0o777, 0o600, "{}", path.display());
        }
        // The server config requires clients signed by the same CA.
        assert!(crate::tls::server_config(pki.server.cert.as_bytes(), pki.server.key.as_bytes(), pki.ca.cert.as_bytes(), &[]).is_ok());
        assert!(
            crate::tls::server_config(pki.server.cert.as_bytes(), pki.client.key.as_bytes(), pki.ca.cert.as_bytes(), &[]).is_err(),
            "a key of another certificate"
        );
    }
}
