//! ServiceAccount tokens (bound JWTs, from the TokenRequest API) verified locally, as the
//! apiserver's service-account authenticator verifies them: the signature against the
//! issuer's published keys (`/openid/v1/jwks`), the issuer, an audience the API accepts, and
//! expiry and not-before with the apiserver's leeway of one minute.
//!
//! A valid signature is not enough: the ServiceAccount, and the pod, secret or node the token
//! is bound to, must still exist with the UIDs the token names ([`BoundToken::bindings`]).
//! That check needs the cache, so it is the caller's; a token whose bindings the caller
//! cannot confirm must be refused.

use std::collections::BTreeMap;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::User;
use crate::authn::{AUTHENTICATED, Error};

/// Seconds of clock skew tolerated on `exp` and `nbf` (go-jose's default, which the apiserver
/// uses).
const LEEWAY_SECONDS: u64 = 60;

/// A cluster's ServiceAccount token issuer: its name and the keys it signs with.
pub struct Issuer {
    issuer: String,
    audiences: Vec<String>,
    keys: Vec<(Option<String>, DecodingKey, Algorithm)>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// What a verified token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundToken {
    /// The ServiceAccount's namespace.
    pub namespace: String,
    /// The ServiceAccount.
    pub service_account: Binding,
    /// The pod the token is bound to, if any.
    pub pod: Option<Binding>,
    /// The secret the token is bound to, if any.
    pub secret: Option<Binding>,
    /// The node the token is bound to (or was issued on), if any.
    pub node: Option<Binding>,
    /// The token's ID (`jti`), if it has one.
    pub id: Option<String>,
}

/// An object a token names: by name and UID.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Binding {
    /// The object's name.
    pub name: String,
    /// The object's UID.
    pub uid: String,
}

/// The objects a token is bound to, which must still exist for it to be valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundKind {
    /// `serviceaccounts` in the token's namespace.
    ServiceAccount,
    /// `pods` in the token's namespace.
    Pod,
    /// `secrets` in the token's namespace.
    Secret,
    /// `nodes` (cluster-scoped).
    Node,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<KubernetesClaims>,
    jti: Option<String>,
}

#[derive(Deserialize)]
struct KubernetesClaims {
    namespace: String,
    serviceaccount: Binding,
    pod: Option<Binding>,
    secret: Option<Binding>,
    node: Option<Binding>,
}

impl Issuer {
    /// The issuer named `issuer`, accepting tokens for any of `audiences` (the apiserver's
    /// `--api-audiences`; by default the issuer itself), signed by a key of `jwks` (the
    /// issuer's `/openid/v1/jwks` document).
    pub fn new(issuer: &str, audiences: Vec<String>, jwks: &[u8]) -> Result<Issuer, Error> {
        let set: JwkSet = serde_json::from_slice(jwks)
            .map_err(|e| Error::Malformed(format!("the issuer's key set: {e}")))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let algorithm = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                    jsonwebtoken::jwk::EllipticCurve::P256 => Algorithm::ES256,
                    jsonwebtoken::jwk::EllipticCurve::P384 => Algorithm::ES384,
                    _ => continue,
                },
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                _ => continue,
            };
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| Error::Malformed(format!("a key of the issuer: {e}")))?;
            keys.push((jwk.common.key_id.clone(), key, algorithm));
        }
        if keys.is_empty() {
            return Err(Error::Malformed(
                "the issuer publishes no usable key".into(),
            ));
        }
        Ok(Issuer {
            issuer: issuer.to_string(),
            audiences,
            keys,
        })
    }

    /// Whether `token` claims to come from this issuer (read without verifying anything): a
    /// token that does not is for another authenticator.
    pub fn issued(&self, token: &str) -> bool {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.insecure_disable_signature_validation();
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&[]), &validation)
            .is_ok_and(|data| data.claims.iss == self.issuer)
    }

    /// Verifies `token`: signature, issuer, audience, expiry and not-before.
    pub fn verify(&self, token: &str) -> Result<BoundToken, Error> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Error::Malformed(format!("token: {e}")))?;
        let mut last = Error::Invalid("no key of the issuer signed this token".into());
        for (kid, key, algorithm) in &self.keys {
            if header.kid.is_some() && kid.is_some() && header.kid != *kid {
                continue;
            }
            if header.alg != *algorithm {
                continue;
            }
            let mut validation = Validation::new(*algorithm);
            validation.leeway = LEEWAY_SECONDS;
            validation.validate_nbf = true;
            validation.set_issuer(&[&self.issuer]);
            validation.set_audience(&self.audiences);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return bound(data.claims),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    last = Error::Invalid(match e.kind() {
                        ErrorKind::ExpiredSignature => "the token has expired".into(),
                        ErrorKind::ImmatureSignature => "the token is not valid yet".into(),
                        ErrorKind::InvalidAudience => "the token is for another audience".into(),
                        ErrorKind::InvalidIssuer => "the token is of another issuer".into(),
                        ErrorKind::InvalidSignature => "the token's signature is invalid".into(),
                        _ => format!("token: {e}"),
                    });
                    if !matches!(e.kind(), ErrorKind::InvalidSignature) {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }
}

fn bound(claims: Claims) -> Result<BoundToken, Error> {
    let k = claims.kubernetes.ok_or_else(|| {
        Error::Invalid("the token names no ServiceAccount (no kubernetes.io claim)".into())
    })?;
    Ok(BoundToken {
        namespace: k.namespace,
        service_account: k.serviceaccount,
        pod: k.pod,
        secret: k.secret,
        node: k.node,
        id: claims.jti,
    })
}

impl BoundToken {
    /// The objects that must exist, with these UIDs, for the token to be valid.
    pub fn bindings(&self) -> Vec<(BoundKind, &Binding)> {
        let mut out = vec![(BoundKind::ServiceAccount, &self.service_account)];
        out.extend(self.pod.iter().map(|b| (BoundKind::Pod, b)));
        out.extend(self.secret.iter().map(|b| (BoundKind::Secret, b)));
        // A node named beside a pod only says where the pod ran; the apiserver checks it
        // only when the token is bound to the node itself.
        if self.pod.is_none() {
            out.extend(self.node.iter().map(|b| (BoundKind::Node, b)));
        }
        out
    }

    /// The user the token authenticates, as the apiserver names it: user
    /// `system:serviceaccount:NS:NAME`, the ServiceAccount's UID, its groups, and the pod,
    /// node and credential in `extra`.
    pub fn user(&self) -> User {
        let mut extra = BTreeMap::new();
        let mut put = |key: &str, value: &str| {
            extra.insert(
                format!("authentication.kubernetes.io/{key}"),
                vec![value.to_string()],
            );
        };
        if let Some(pod) = &self.pod {
            put("pod-name", &pod.name);
            put("pod-uid", &pod.uid);
        }
        if let Some(node) = &self.node {
            put("node-name", &node.name);
            put("node-uid", &node.uid);
        }
        if let Some(id) = &self.id {
            put("credential-id", &format!("JTI={id}"));
        }
        User {
            name: format!(
                "system:serviceaccount:{}:{}",
                self.namespace, self.service_account.name
            ),
            uid: self.service_account.uid.clone(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", self.namespace),
                AUTHENTICATED.into(),
            ],
            extra,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header};

    const ISSUER: &str = "https://kubernetes.default.svc";

    struct Signer {
        key: rcgen::KeyPair,
        kid: &'static str,
    }

    impl Signer {
        fn new(kid: &'static str) -> Signer {
            Signer {
                key: rcgen::KeyPair::generate().expect("key"),
                kid,
            }
        }

        fn jwks(&self) -> Vec<u8> {
            let point = self.key.public_key_raw();
            assert_eq!(point[0], 4, "an uncompressed P-256 point");
            serde_json::to_vec(&serde_json::json!({"keys": [{
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            }]}))
            .expect("jwks")
        }

        fn sign(&self, claims: serde_json::Value) -> String {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some(self.kid.into());
            let key = EncodingKey::from_ec_der(&self.key.serialize_der());
            jsonwebtoken::encode(&header, &claims, &key).expect("sign")
        }
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64
    }

    fn claims(exp: i64) -> serde_json::Value {
        serde_json::json!({
            "iss": ISSUER, "aud": [ISSUER], "sub": "system:serviceaccount:team:robot",
            "exp": exp, "nbf": now() - 10, "iat": now() - 10, "jti": "j-1",
            "kubernetes.io": {
                "namespace": "team",
                "serviceaccount": {"name": "robot", "uid": "sa-uid"},
                "pod": {"name": "p", "uid": "pod-uid"},
                "node": {"name": "n1", "uid": "node-uid"},
            }
        })
    }

    fn issuer(signer: &Signer) -> Issuer {
        Issuer::new(ISSUER, vec![ISSUER.into()], &signer.jwks()).expect("issuer")
    }

    #[test]
    fn a_bound_token_names_its_service_account_pod_and_node() {
        let signer = Signer::new("k1");
        let token = signer.sign(claims(now() + 600));
        let issuer = issuer(&signer);
        assert!(issuer.issued(&token));
        let bound = issuer.verify(&token).expect("valid");
        let user = bound.user();
        assert_eq!(user.name, "system:serviceaccount:team:robot");
        assert_eq!(user.uid, "sa-uid");
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:team",
                "system:authenticated"
            ]
        );
        assert_eq!(
            user.extra["authentication.kubernetes.io/pod-name"],
            ["p".to_string()]
        );
        assert_eq!(
            user.extra["authentication.kubernetes.io/credential-id"],
            ["JTI=j-1".to_string()]
        );
        let kinds: Vec<BoundKind> = bound.bindings().iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [BoundKind::ServiceAccount, BoundKind::Pod]);
    }

    #[test]
    fn expired_forged_and_foreign_tokens_are_refused() {
        let signer = Signer::new("k1");
        let issuer = issuer(&signer);
        // Within the minute of leeway an expired token still passes; past it, not.
        assert!(issuer.verify(&signer.sign(claims(now() - 30))).is_ok());
        let expired = issuer.verify(&signer.sign(claims(now() - 120)));
        assert!(
            matches!(&expired, Err(Error::Invalid(m)) if m.contains("expired")),
            "{expired:?}"
        );
        // Signed by another key under the same key ID.
        let forger = Signer::new("k1");
        let forged = issuer.verify(&forger.sign(claims(now() + 600)));
        assert!(
            matches!(&forged, Err(Error::Invalid(m)) if m.contains("signature")),
            "{forged:?}"
        );
        let mut other_audience = claims(now() + 600);
        other_audience["aud"] = serde_json::json!(["vault"]);
        assert!(issuer.verify(&signer.sign(other_audience)).is_err());
        let mut other_issuer = claims(now() + 600);
        other_issuer["iss"] = serde_json::json!("https://elsewhere");
        let token = signer.sign(other_issuer);
        assert!(!issuer.issued(&token));
        assert!(issuer.verify(&token).is_err());
        assert!(matches!(issuer.verify("garbage"), Err(Error::Malformed(_))));
        assert!(!issuer.issued("garbage"));
    }
}
