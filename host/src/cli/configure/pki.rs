//! The keys and certificates of `ferry configure`: a CA that signs a server
//! certificate (for Logstash, Fluentd or nginx: `--dns-names` and `--ip` as
//! its names, server authentication only) and a client certificate (ferry's,
//! client authentication only). rcgen signs with ring, as rustls does in
//! ferry; ring cannot make RSA keys, so the `rsa` crate makes them and
//! rcgen signs with them. The server key is also written encrypted (PKCS#8,
//! PBES2 with PBKDF2-SHA256 and AES-256-CBC, which OpenSSL and so Fluentd
//! read) under a generated passphrase.

use super::{ConfigureError, KeyType};
use pkcs8::EncodePrivateKey;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use std::net::IpAddr;
use std::time::Duration;

/// Every key and certificate, as PEM text.
pub(super) struct Material {
    pub ca_cert: String,
    pub ca_key: String,
    pub server_cert: String,
    /// PKCS#8, unencrypted (`PRIVATE KEY`), as Logstash's `ssl_key` reads it.
    pub server_key: String,
    /// The same key, PKCS#8 encrypted (`ENCRYPTED PRIVATE KEY`).
    pub server_key_encrypted: String,
    /// The passphrase of `server_key_encrypted`: 32 random bytes in hex.
    pub passphrase: String,
    pub client_cert: String,
    pub client_key: String,
}

/// What the certificates are made of.
pub(super) struct Request<'a> {
    pub key_type: KeyType,
    /// RSA key length in bits.
    pub length: usize,
    pub ttl: Duration,
    pub dns_names: &'a [String],
    pub ips: &'a [IpAddr],
}

fn pki_error(what: &'static str) -> impl FnOnce(rcgen::Error) -> ConfigureError {
    move |err| ConfigureError::Pki { what, reason: err.to_string() }
}

/// Makes the CA, the server and client keys and certificates, and the
/// encrypted copy of the server key.
pub(super) fn generate(request: &Request<'_>) -> Result<Material, ConfigureError> {
    // A little before now, so that a peer whose clock is a few minutes
    // behind does not see a certificate from the future.
    let now = time::OffsetDateTime::now_utc();
    let not_before = now - time::Duration::hours(1);
    let not_after = now
        + time::Duration::try_from(request.ttl).map_err(|err| ConfigureError::Pki { what: "validity period", reason: err.to_string() })?;
    let name = |common_name: &str| {
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "ferry");
        name.push(DnType::CommonName, common_name);
        name
    };

    let ca_key = key_pair(request, "CA key")?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name("ferry CA");
    // It signs the two leaves and nothing below them.
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key).map_err(pki_error("CA certificate"))?;
    let ca_pem = (ca_cert.pem(), ca_key.serialize_pem());
    let issuer = Issuer::new(ca, ca_key);

    let server_key = key_pair(request, "server key")?;
    let mut server = leaf(name(&request.dns_names[0]), not_before, not_after, ExtendedKeyUsagePurpose::ServerAuth, request.key_type);
    for dns in request.dns_names {
        server.subject_alt_names.push(SanType::DnsName(dns.as_str().try_into().map_err(pki_error("server certificate"))?));
    }
    server.subject_alt_names.extend(request.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let server_cert = server.signed_by(&server_key, &issuer).map_err(pki_error("server certificate"))?;

    let client_key = key_pair(request, "client key")?;
    let client = leaf(name("teleport-event-handler"), not_before, not_after, ExtendedKeyUsagePurpose::ClientAuth, request.key_type);
    let client_cert = client.signed_by(&client_key, &issuer).map_err(pki_error("client certificate"))?;

    let passphrase = passphrase()?;
    let server_key_encrypted = encrypt(&server_key.serialize_der(), &passphrase)?;
    Ok(Material {
        ca_cert: ca_pem.0,
        ca_key: ca_pem.1,
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        server_key_encrypted,
        passphrase,
        client_cert: client_cert.pem(),
        client_key: client_key.serialize_pem(),
    })
}

fn leaf(
    name: DistinguishedName,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
    usage: ExtendedKeyUsagePurpose,
    key_type: KeyType,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name;
    params.not_before = not_before;
    params.not_after = not_after;
    params.key_usages = match key_type {
        // TLS 1.2 RSA key exchange encrypts to the server's key.
        KeyType::Rsa => vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment],
        KeyType::Ecdsa => vec![KeyUsagePurpose::DigitalSignature],
    };
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    params
}

/// A fresh key pair of the requested type, as rcgen signs with it.
fn key_pair(request: &Request<'_>, what: &'static str) -> Result<KeyPair, ConfigureError> {
    match request.key_type {
        KeyType::Ecdsa => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(pki_error(what)),
        KeyType::Rsa => {
            let key = rsa::PrivateKey::new(&mut getrandom::SysRng, request.length)
                .map_err(|err| ConfigureError::Pki { what, reason: err.to_string() })?;
            let der = key.to_pkcs8_der().map_err(|err| ConfigureError::Pki { what, reason: err.to_string() })?;
            let der = rustls::pki_types::PrivatePkcs8KeyDer::from(der.as_bytes());
            KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256).map_err(pki_error(what))
        }
    }
}

/// 32 random bytes in hex: as strong as the AES-256 key it derives, and
/// nothing in it needs quoting in fluent.conf or a shell.
fn passphrase() -> Result<String, ConfigureError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|err| ConfigureError::Pki { what: "passphrase", reason: err.to_string() })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `der` (PKCS#8) encrypted under `passphrase` as PEM. PBKDF2 rather than
/// the crate's default scrypt: every OpenSSL (Fluentd's Ruby, nginx) reads it.
fn encrypt(der: &[u8], passphrase: &str) -> Result<String, ConfigureError> {
    let error = |err: &dyn std::fmt::Display| ConfigureError::Pki { what: "encrypted server key", reason: err.to_string() };
    let info = pkcs8::PrivateKeyInfoRef::try_from(der).map_err(|err| error(&err))?;
    let params = pkcs8::pkcs5::pbes2::Parameters::generate_pbkdf2(&mut getrandom::SysRng).map_err(|err| error(&err))?;
    let document = info.encrypt_with_params(params, passphrase).map_err(|err| error(&err))?;
    let pem = document.to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF).map_err(|err| error(&err))?;
    Ok(pem.to_string())
}
