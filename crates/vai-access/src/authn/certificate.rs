//! A client certificate's identity, as the apiserver's x509 authenticator reads it: the
//! subject's common name is the user, each organization a group.
//!
//! The certificate must already have been verified against the client CAs (by the TLS
//! handshake); this module never verifies a chain, it only reads the subject.

use crate::User;
use crate::authn::{AUTHENTICATED, Error};

/// The user a verified client certificate (DER) names.
pub fn user(der: &[u8]) -> Result<User, Error> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::Malformed(format!("client certificate: {e}")))?;
    let subject = certificate.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .ok_or_else(|| Error::Invalid("the client certificate has no common name".into()))?
        .to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    groups.push(AUTHENTICATED.into());
    Ok(User {
        name,
        groups,
        ..User::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_is_the_user_and_organizations_the_groups() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "dev");
        let cert = params.self_signed(&key).expect("cert");
        let user = user(cert.der()).expect("user");
        assert_eq!(user.name, "alice");
        // (rcgen writes one organization per certificate.)
        assert_eq!(user.groups, ["dev", AUTHENTICATED]);
        assert!(matches!(super::user(b"junk"), Err(Error::Malformed(_))));
    }
}
