//! vai's own serving certificate, for `--authorization-mode=RBAC` without `--tls-cert-file`:
//! a CA and a serving certificate signed by it, generated once into a private directory beside
//! the database (every file 0600) and reused at every start, so the kubeconfig `vai kubeconfig`
//! writes keeps working.

use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The files of a generated serving identity.
pub struct SelfSigned {
    /// The CA clients trust (`vai kubeconfig` embeds it).
    pub ca_cert: PathBuf,
    /// The serving certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

impl SelfSigned {
    /// Where the files of the database `db` live.
    pub fn beside(db: &Path) -> SelfSigned {
        let stem = db
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "vai".into());
        let dir = db
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("{stem}-tls"));
        SelfSigned {
            ca_cert: dir.join("ca.crt"),
            cert: dir.join("serving.crt"),
            key: dir.join("serving.key"),
        }
    }

    /// Generates the CA and serving certificate unless present; valid for loopback, this
    /// host's name and the listening address.
    pub fn ensure(&self, listen: SocketAddr) -> anyhow::Result<()> {
        if self.ca_cert.exists() && self.cert.exists() && self.key.exists() {
            return Ok(());
        }
        let dir = self.cert.parent().context("a certificate directory")?;
        crate::ensure_private_dir(dir)?;
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name.push(DnType::CommonName, "vai-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);
        let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
        if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            names.push(host.trim().to_string());
        }
        if !listen.ip().is_unspecified() {
            names.push(listen.ip().to_string());
        }
        names.dedup();
        let key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(names)?;
        serving.distinguished_name.push(DnType::CommonName, "vai");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = serving.signed_by(&key, &issuer)?;
        write_private(&self.ca_cert, ca_cert.pem().as_bytes())?;
        write_private(&self.key, key.serialize_pem().as_bytes())?;
        write_private(&self.cert, cert.pem().as_bytes())?;
        tracing::info!(dir = %dir.display(), "generated a CA and serving certificate (hint: `vai kubeconfig` writes a kubeconfig that trusts it)");
        Ok(())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}
