//! Authentication of the credentials a caller presents, as the apiserver authenticates them:
//! a verified client certificate ([`certificate`]) and a ServiceAccount's bound token
//! ([`service_account`]), both decided locally, so they work with upstream away.
//!
//! This module only verifies what it is given (a certificate the TLS layer already verified
//! against the client CAs, a token and the issuer's published keys); fetching keys, checking
//! that a token's bound objects still exist, and reviewing other tokens upstream are the
//! server's work.

pub mod certificate;
pub mod service_account;

/// The group every authenticated caller is in (the apiserver adds it after any authenticator).
pub const AUTHENTICATED: &str = "system:authenticated";

/// Why a credential was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The credential cannot be read at all (not a certificate, not a JWT).
    #[error("malformed credential: {0}")]
    Malformed(String),
    /// The credential was read and is not valid (signature, issuer, audience, expiry).
    #[error("invalid credential: {0}")]
    Invalid(String),
}
