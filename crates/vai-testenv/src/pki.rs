//! Credentials for one test control plane: a CA, the apiserver's serving certificate, the
//! service-account signing key and a static admin bearer token.
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
    /// The CA that signed the serving certificate (clients trust this).
    pub ca_cert: PathBuf,
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
}

impl Pki {
    /// Loads the credentials under `dir/pki`, generating whatever is missing.
    pub fn ensure(dir: &Path) -> Result<Pki> {
        let pki_dir = dir.join("pki");
        fs::create_dir_all(&pki_dir).map_err(|e| Error::io(&pki_dir, e))?;
        let pki = Pki {
            ca_cert: pki_dir.join("ca.crt"),
            serving_cert: pki_dir.join("apiserver.crt"),
            serving_key: pki_dir.join("apiserver.key"),
            service_account_key: pki_dir.join("service-account.key"),
            service_account_pub: pki_dir.join("service-account.pub"),
            token_file: pki_dir.join("tokens.csv"),
            admin_token: String::new(),
        };
        let complete = [
            &pki.ca_cert,
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
}

fn generate(pki: &Pki) -> Result<()> {
    let ca_key = KeyPair::generate()?;
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
    let ca_cert = ca_params.self_signed(&ca_key)?;
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
