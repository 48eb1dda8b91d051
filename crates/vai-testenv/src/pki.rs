//! Credentials for one test control plane: a CA (whose key is kept, so tests can sign client
//! certificates with it: [`Pki::client_certificate`]), the apiserver's serving certificate,
//! the service-account signing key, a static admin bearer token and the audit policy.
//!
//! Everything is generated in-process (rcgen, ECDSA P-256), so a fresh machine needs no
//! `openssl`. Files are written with mode 0600 and are never regenerated once present: an
//! environment restarted by `up` keeps the identity its clients already trust.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::{Error, Result};

/// Paths of the credential files inside an environment directory.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA that signed the serving certificate (clients trust this), and the client CA.
    pub ca_cert: PathBuf,
    /// The CA's private key.
    pub ca_key: PathBuf,
    /// The apiserver's serving certificate.
    pub serving_cert: PathBuf,
    /// The apiserver's serving key.
    pub serving_key: PathBuf,
    /// Service-account token signing key (PKCS#8 ECDSA).
    pub service_account_key: PathBuf,
    /// The public half of the service-account key, which the apiserver verifies tokens with.
    pub service_account_pub: PathBuf,
    /// The static token file given to `--token-auth-file`.
    pub token_file: PathBuf,
    /// The admin bearer token (member of `system:masters`).
    pub admin_token: String,
    /// The audit policy given to `--audit-policy-file` (every request at `Metadata`).
    pub audit_policy: PathBuf,
}

impl Pki {
    /// Loads the credentials under `dir/pki`, generating whatever is missing.
    pub fn ensure(dir: &Path) -> Result<Pki> {
        let pki_dir = dir.join("pki");
        fs::create_dir_all(&pki_dir).map_err(|e| Error::io(&pki_dir, e))?;
        let pki = Pki {
            ca_cert: pki_dir.join("ca.crt"),
            ca_key: pki_dir.join("ca.key"),
            serving_cert: pki_dir.join("apiserver.crt"),
            serving_key: pki_dir.join("apiserver.key"),
            service_account_key: pki_dir.join("service-account.key"),
            service_account_pub: pki_dir.join("service-account.pub"),
            token_file: pki_dir.join("tokens.csv"),
            admin_token: String::new(),
            audit_policy: pki_dir.join("audit-policy.json"),
        };
        // An environment made before the CA key was kept is regenerated whole (its CA changes).
        let complete = [
            &pki.ca_cert,
            &pki.ca_key,
            &pki.audit_policy,
            &pki.serving_cert,
            &pki.serving_key,
            &pki.service_account_key,
            &pki.service_account_pub,
            &pki.token_file,
        ]
        .iter()
        .all(|p| p.exists());
        if !complete {
            generate(&pki)?;
        }
        let tokens =
            fs::read_to_string(&pki.token_file).map_err(|e| Error::io(&pki.token_file, e))?;
        let admin_token = tokens
            .split(',')
            .next()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Config(format!("{} has no token", pki.token_file.display())))?
            .to_string();
        Ok(Pki { admin_token, ..pki })
    }

    /// A client certificate for `user` in `group` (if any), signed by the CA (which the
    /// apiserver trusts with `--client-ca-file`): the certificate and its key, PEM. rcgen
    /// writes one organization per subject, so one group.
    pub fn client_certificate(&self, user: &str, group: Option<&str>) -> Result<(String, String)> {
        let read = |p: &Path| fs::read_to_string(p).map_err(|e| Error::io(p, e));
        let ca_key = KeyPair::from_pem(&read(&self.ca_key)?)?;
        // The CA's subject and key identify it as the issuer, as when it was made.
        let issuer = Issuer::new(ca_params()?, ca_key);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        if let Some(group) = group {
            params
                .distinguished_name
                .push(DnType::OrganizationName, group);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Every request audited at `Metadata` (who did what to which object), for tests that check
/// who upstream saw.
const AUDIT_POLICY: &str =
    r#"{"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Metadata"}]}"#;

/// The CA's certificate parameters.
fn ca_params() -> Result<CertificateParams> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "vai-testenv-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(ca_params)
}

fn generate(pki: &Pki) -> Result<()> {
    let ca_key = KeyPair::generate()?;
    let ca_params = ca_params()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    write_private(&pki.ca_key, ca_key.serialize_pem().as_bytes())?;
    let issuer = Issuer::new(ca_params, ca_key);

    let serving_key = KeyPair::generate()?;
    let mut serving = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
    ])?;
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving.signed_by(&serving_key, &issuer)?;

    let sa_key = KeyPair::generate()?;
    let token = random_hex(16)?;

    write_private(&pki.ca_cert, ca_cert.pem().as_bytes())?;
    write_private(&pki.audit_policy, AUDIT_POLICY.as_bytes())?;
    write_private(&pki.serving_cert, serving_cert.pem().as_bytes())?;
    write_private(&pki.serving_key, serving_key.serialize_pem().as_bytes())?;
    write_private(&pki.service_account_key, sa_key.serialize_pem().as_bytes())?;
    write_private(&pki.service_account_pub, sa_key.public_key_pem().as_bytes())?;
    // Format: token,user,uid,"group1,group2".
    write_private(
        &pki.token_file,
        format!("{token},vai-admin,vai-admin,\"system:masters\"\n").as_bytes(),
    )?;
    Ok(())
}

/// Writes `bytes` to `path`, creating it with mode 0600 (credentials are never world-readable).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(bytes).map_err(|e| Error::io(path, e))
}

fn random_hex(bytes: usize) -> Result<String> {
    let path = Path::new("/dev/urandom");
    let mut buf = vec![0u8; bytes];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| Error::io(path, e))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_once_private_and_reloads_the_same_token() {
        let dir = tempfile::tempdir().unwrap();
        let first = Pki::ensure(dir.path()).unwrap();
        assert_eq!(first.admin_token.len(), 32);
        let mode = fs::metadata(&first.serving_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let cert_before = fs::read(&first.serving_cert).unwrap();
        let second = Pki::ensure(dir.path()).unwrap();
        assert_eq!(first.admin_token, second.admin_token);
        assert_eq!(cert_before, fs::read(&second.serving_cert).unwrap());
    }
}
