//! Access reviews as kubectl sends them: Kubernetes' protobuf wire form (the magic `k8s\0`,
//! then a `runtime.Unknown` envelope holding the message), decoded into the JSON types the
//! reviews are answered with. Only the fields vai reads are declared (field numbers from
//! `k8s.io/api/authorization/v1/generated.proto`); others are skipped, as protobuf skips them.

use k8s_openapi::api::authorization::v1 as authz;
use prost::Message;

/// The first bytes of every protobuf body.
const MAGIC: &[u8] = b"k8s\0";

/// The media type of a protobuf body.
pub(crate) const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct AccessReview {
    #[prost(message, optional, tag = "2")]
    spec: Option<AccessSpec>,
}

#[derive(Clone, PartialEq, Message)]
struct RulesReview {
    #[prost(message, optional, tag = "2")]
    spec: Option<RulesSpec>,
}

#[derive(Clone, PartialEq, Message)]
struct AccessSpec {
    #[prost(message, optional, tag = "1")]
    resource_attributes: Option<ResourceAttributes>,
    #[prost(message, optional, tag = "2")]
    non_resource_attributes: Option<NonResourceAttributes>,
}

#[derive(Clone, PartialEq, Message)]
struct ResourceAttributes {
    #[prost(string, optional, tag = "1")]
    namespace: Option<String>,
    #[prost(string, optional, tag = "2")]
    verb: Option<String>,
    #[prost(string, optional, tag = "3")]
    group: Option<String>,
    #[prost(string, optional, tag = "4")]
    version: Option<String>,
    #[prost(string, optional, tag = "5")]
    resource: Option<String>,
    #[prost(string, optional, tag = "6")]
    subresource: Option<String>,
    #[prost(string, optional, tag = "7")]
    name: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct NonResourceAttributes {
    #[prost(string, optional, tag = "1")]
    path: Option<String>,
    #[prost(string, optional, tag = "2")]
    verb: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct RulesSpec {
    #[prost(string, optional, tag = "1")]
    namespace: Option<String>,
}

fn message<M: Message + Default>(body: &[u8]) -> Result<M, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("a protobuf body must start with the Kubernetes magic")?;
    let unknown = Unknown::decode(envelope).map_err(|e| e.to_string())?;
    M::decode(unknown.raw.unwrap_or_default().as_slice()).map_err(|e| e.to_string())
}

/// A `SelfSubjectAccessReview` from its protobuf form.
pub(crate) fn access_review(body: &[u8]) -> Result<authz::SelfSubjectAccessReview, String> {
    let review: AccessReview = message(body)?;
    let spec = review.spec.unwrap_or_default();
    Ok(authz::SelfSubjectAccessReview {
        spec: authz::SelfSubjectAccessReviewSpec {
            resource_attributes: spec.resource_attributes.map(|r| authz::ResourceAttributes {
                namespace: r.namespace,
                verb: r.verb,
                group: r.group,
                version: r.version,
                resource: r.resource,
                subresource: r.subresource,
                name: r.name,
                ..authz::ResourceAttributes::default()
            }),
            non_resource_attributes: spec.non_resource_attributes.map(|n| {
                authz::NonResourceAttributes {
                    path: n.path,
                    verb: n.verb,
                }
            }),
        },
        ..authz::SelfSubjectAccessReview::default()
    })
}

/// A `SelfSubjectRulesReview` from its protobuf form.
pub(crate) fn rules_review(body: &[u8]) -> Result<authz::SelfSubjectRulesReview, String> {
    let review: RulesReview = message(body)?;
    Ok(authz::SelfSubjectRulesReview {
        spec: authz::SelfSubjectRulesReviewSpec {
            namespace: review.spec.and_then(|s| s.namespace),
        },
        ..authz::SelfSubjectRulesReview::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped<M: Message>(inner: &M) -> Vec<u8> {
        #[derive(Clone, PartialEq, Message)]
        struct Envelope {
            #[prost(bytes = "vec", optional, tag = "2")]
            raw: Option<Vec<u8>>,
            #[prost(string, optional, tag = "4")]
            content_type: Option<String>,
        }
        let envelope = Envelope {
            raw: Some(inner.encode_to_vec()),
            content_type: Some(String::new()),
        };
        [MAGIC, &envelope.encode_to_vec()].concat()
    }

    #[test]
    fn reviews_decode_from_the_wire_form() {
        let access = AccessReview {
            spec: Some(AccessSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some("team".into()),
                    verb: Some("list".into()),
                    resource: Some("pods".into()),
                    ..ResourceAttributes::default()
                }),
                non_resource_attributes: None,
            }),
        };
        let review = access_review(&wrapped(&access)).expect("decodes");
        let r = review
            .spec
            .resource_attributes
            .expect("resource attributes");
        assert_eq!(
            (r.namespace.as_deref(), r.verb.as_deref()),
            (Some("team"), Some("list"))
        );
        let rules = RulesReview {
            spec: Some(RulesSpec {
                namespace: Some("team".into()),
            }),
        };
        let review = rules_review(&wrapped(&rules)).expect("decodes");
        assert_eq!(review.spec.namespace.as_deref(), Some("team"));
        assert!(access_review(b"{\"json\": true}").is_err());
    }
}
