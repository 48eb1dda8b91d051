//! Which resource types are encrypted in the file, with which keys: [`Encryption`], read from
//! the apiserver's own key file format. This module only reads the file and holds the keys;
//! sealing rows is `crate::sealed`'s.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use serde::Deserialize;

use crate::{Error, Result};

/// The encryption of a store's rows at rest ([`crate::StoreConfig::encryption`]): for each
/// resource type, the key that encrypts what is written, and every key that may decrypt what
/// is stored. Cheap to clone; its `Debug` shows key names, never keys.
///
/// Read from an `EncryptionConfiguration`, the file given to `kube-apiserver
/// --encryption-provider-config`, so one file can serve both:
///
/// ```yaml
/// apiVersion: apiserver.config.k8s.io/v1
/// kind: EncryptionConfiguration
/// resources:
///   - resources: [secrets]
///     providers:
///       - aesgcm:
///           keys:
///             - name: k2          # the first key of the first provider encrypts
///               secret: <base64 of 32 random bytes>
///             - name: k1          # the others only decrypt (rotation)
///               secret: <base64>
///       - identity: {}
/// ```
///
/// Of the apiserver's providers vai takes `aesgcm` (AES-256-GCM: 32-byte keys) and `identity`
/// (no encryption: first in the list, it turns encryption off, and the others' keys decrypt
/// what was encrypted). `aescbc`, `secretbox` and `kms` are refused by name. Resources are
/// named as upstream names them: `secrets`, `configmaps`, `deployments.apps`, `*.apps`,
/// `*.` (every core type), `*.*`; the first entry that names a type decides its providers.
/// The file must be private (mode 0600 or stricter), as upstream advises for it.
#[derive(Clone)]
pub struct Encryption {
    inner: Arc<Inner>,
}

struct Inner {
    /// In the file's order: the first rule that names a type is its rule.
    rules: Vec<Rule>,
    /// Every key of the file, by name.
    keys: BTreeMap<String, LessSafeKey>,
}

struct Rule {
    patterns: Vec<Pattern>,
    /// The key that encrypts writes (`None`: the first provider is `identity`).
    writes_with: Option<String>,
}

/// One entry of a rule's `resources`: `plural.group`, where either may be `*`.
#[derive(Debug, PartialEq)]
struct Pattern {
    /// `None`: any.
    plural: Option<String>,
    /// `None`: any; `Some("")`: the core group.
    group: Option<String>,
}

impl Pattern {
    fn parse(text: &str) -> Option<Pattern> {
        let (plural, group) = text.split_once('.').unwrap_or((text, ""));
        if plural.is_empty() || (plural == "*" && !text.contains('.')) {
            return None;
        }
        let any = |s: &str| (s != "*").then(|| s.to_string());
        Some(Pattern {
            plural: any(plural),
            group: any(group),
        })
    }

    /// Whether this names a store key (`/v1/secrets`, `apps/v1/deployments`).
    fn matches(&self, resource: &str) -> bool {
        let mut parts = resource.splitn(3, '/');
        let (Some(group), Some(_version), Some(plural)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        self.plural.as_deref().is_none_or(|p| p == plural)
            && self.group.as_deref().is_none_or(|g| g == group)
    }
}

/// The file as upstream defines it (only what vai reads).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    api_version: String,
    kind: String,
    resources: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    resources: Vec<String>,
    providers: Vec<Provider>,
}

#[derive(Deserialize)]
struct Provider {
    aesgcm: Option<Keys>,
    identity: Option<serde::de::IgnoredAny>,
    /// Any other provider, named to refuse it.
    #[serde(flatten)]
    other: BTreeMap<String, serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Keys {
    keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
struct KeyEntry {
    name: String,
    secret: String,
}

impl Encryption {
    /// Reads a key file: an `EncryptionConfiguration`, YAML or JSON, mode 0600 or stricter.
    pub fn from_file(path: &Path) -> Result<Encryption> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display().to_string();
        let invalid = |reason: String| Error::EncryptionConfig {
            path: shown.clone(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| Error::Io(shown.clone(), e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(invalid(format!(
                "the key file is readable by others (mode {mode:04o}); it must be 0600 or \
                 stricter (hint: chmod 600 {shown})"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io(shown.clone(), e))?;
        Encryption::parse(&text).map_err(|e| match e {
            Error::EncryptionConfig { reason, .. } => invalid(reason),
            other => other,
        })
    }

    /// Reads an `EncryptionConfiguration` from text (YAML or JSON), as [`Encryption::from_file`]
    /// does, without the file's mode check.
    pub fn parse(text: &str) -> Result<Encryption> {
        let invalid = |reason: String| Error::EncryptionConfig {
            path: "encryption configuration".into(),
            reason,
        };
        let file: File = serde_yaml_ng::from_str(text)
            .map_err(|e| invalid(format!("not an EncryptionConfiguration: {e}")))?;
        if file.kind != "EncryptionConfiguration"
            || file.api_version != "apiserver.config.k8s.io/v1"
        {
            return Err(invalid(format!(
                "expected apiVersion apiserver.config.k8s.io/v1, kind EncryptionConfiguration; \
                 found {} {}",
                file.api_version, file.kind
            )));
        }
        let mut keys: BTreeMap<String, (Vec<u8>, LessSafeKey)> = BTreeMap::new();
        let mut rules = Vec::new();
        for entry in file.resources {
            let patterns = entry
                .resources
                .iter()
                .map(|r| {
                    Pattern::parse(r).ok_or_else(|| {
                        invalid(format!(
                            "resource {r:?}: name a type as `plural` or `plural.group` \
                             (`*.group`, `*.*`)"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let mut writes_with = None;
            for (at, provider) in entry.providers.iter().enumerate() {
                if let Some(name) = provider.other.keys().next() {
                    return Err(invalid(format!(
                        "provider {name:?} is not supported by vai (it takes aesgcm and identity)"
                    )));
                }
                match (&provider.aesgcm, &provider.identity) {
                    (Some(aesgcm), None) => {
                        if aesgcm.keys.is_empty() {
                            return Err(invalid("an aesgcm provider without keys".into()));
                        }
                        for key in &aesgcm.keys {
                            add_key(&mut keys, key).map_err(invalid)?;
                        }
                        if at == 0 {
                            writes_with = Some(aesgcm.keys[0].name.clone());
                        }
                    }
                    (None, Some(_)) => {}
                    _ => {
                        return Err(invalid(
                            "each provider must be exactly one of aesgcm, identity".into(),
                        ));
                    }
                }
            }
            if entry.providers.is_empty() {
                return Err(invalid(format!(
                    "resources {:?} have no providers",
                    entry.resources
                )));
            }
            rules.push(Rule {
                patterns,
                writes_with,
            });
        }
        Ok(Encryption {
            inner: Arc::new(Inner {
                rules,
                keys: keys.into_iter().map(|(n, (_, k))| (n, k)).collect(),
            }),
        })
    }

    /// The name and key that encrypt what is written of `resource` (a store key:
    /// `/v1/secrets`), if it is encrypted.
    pub(crate) fn writes_with(&self, resource: &str) -> Option<(&str, &LessSafeKey)> {
        let rule = self
            .inner
            .rules
            .iter()
            .find(|r| r.patterns.iter().any(|p| p.matches(resource)))?;
        let name = rule.writes_with.as_deref()?;
        Some((name, &self.inner.keys[name]))
    }

    /// A key by name.
    pub(crate) fn key(&self, name: &str) -> Option<&LessSafeKey> {
        self.inner.keys.get(name)
    }

    /// The names of the keys that encrypt writes, each once.
    pub(crate) fn write_keys(&self) -> std::collections::BTreeSet<&str> {
        self.inner
            .rules
            .iter()
            .filter_map(|r| r.writes_with.as_deref())
            .collect()
    }
}

/// Adds a key of the file; a name used twice must name the same secret.
fn add_key(
    keys: &mut BTreeMap<String, (Vec<u8>, LessSafeKey)>,
    entry: &KeyEntry,
) -> std::result::Result<(), String> {
    let name = &entry.name;
    if name.is_empty() || name.contains(':') || name.len() > 200 {
        return Err(format!(
            "key name {name:?}: must be 1-200 characters, without ':'"
        ));
    }
    let secret = base64::engine::general_purpose::STANDARD
        .decode(entry.secret.trim())
        .map_err(|_| format!("key `{name}`: the secret is not base64"))?;
    if secret.len() != 32 {
        return Err(format!(
            "key `{name}` is {} bytes; vai's aesgcm takes 32-byte (AES-256) keys \
             (hint: head -c 32 /dev/urandom | base64)",
            secret.len()
        ));
    }
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &secret).expect("a 32-byte key is an AES-256 key"),
    );
    match keys.get(name) {
        Some((other, _)) if *other != secret => Err(format!(
            "key name `{name}` is used twice, with different secrets"
        )),
        Some(_) => Ok(()),
        None => {
            keys.insert(name.clone(), (secret, key));
            Ok(())
        }
    }
}

impl fmt::Debug for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encryption")
            .field("keys", &self.inner.keys.keys().collect::<Vec<_>>())
            .field(
                "writes_with",
                &self
                    .inner
                    .rules
                    .iter()
                    .map(|r| r.writes_with.as_deref().unwrap_or("identity"))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    pub(crate) const K2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

    /// A configuration encrypting `resources` with these keys (name, base64 secret), in order.
    pub(crate) fn config(resources: &str, keys: &[(&str, &str)]) -> Encryption {
        let keys: Vec<String> = keys
            .iter()
            .map(|(n, s)| format!(r#"{{"name":"{n}","secret":"{s}"}}"#))
            .collect();
        Encryption::parse(&format!(
            r#"{{"apiVersion":"apiserver.config.k8s.io/v1","kind":"EncryptionConfiguration",
                "resources":[{{"resources":[{resources}],
                "providers":[{{"aesgcm":{{"keys":[{}]}}}},{{"identity":{{}}}}]}}]}}"#,
            keys.join(",")
        ))
        .unwrap()
    }

    #[test]
    fn the_apiservers_yaml_is_read_and_the_first_key_encrypts() {
        let e = Encryption::parse(&format!(
            "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
      - deployments.apps
    providers:
      - aesgcm:
          keys:
            - name: k2
              secret: {K2}
            - name: k1
              secret: {K1}
      - identity: {{}}
  - resources: ['*.*']
    providers:
      - identity: {{}}
"
        ))
        .unwrap();
        assert_eq!(e.writes_with("/v1/secrets").unwrap().0, "k2");
        assert_eq!(e.writes_with("apps/v1/deployments").unwrap().0, "k2");
        assert!(e.writes_with("/v1/configmaps").is_none(), "identity");
        assert!(e.writes_with("example.com/v1/secrets").is_none());
        assert!(e.key("k1").is_some());
        assert!(!format!("{e:?}").contains(K1), "Debug shows no key");
    }

    #[test]
    fn patterns_name_types_as_upstream_does() {
        let p = |s| Pattern::parse(s).unwrap();
        assert!(p("secrets").matches("/v1/secrets"));
        assert!(!p("secrets").matches("apps/v1/secrets"));
        assert!(p("*.").matches("/v1/configmaps"));
        assert!(!p("*.").matches("apps/v1/deployments"));
        assert!(p("*.apps").matches("apps/v1/deployments"));
        assert!(p("*.*").matches("example.com/v1/widgets"));
        assert!(p("widgets.example.com").matches("example.com/v1alpha1/widgets"));
        assert!(Pattern::parse("*").is_none());
        assert!(Pattern::parse("").is_none());
    }

    #[test]
    fn unusable_files_are_refused_with_the_reason() {
        let err = |text: &str| Encryption::parse(text).unwrap_err().to_string();
        let file = |providers: &str| {
            format!(
                r#"{{"apiVersion":"apiserver.config.k8s.io/v1","kind":"EncryptionConfiguration",
                    "resources":[{{"resources":["secrets"],"providers":[{providers}]}}]}}"#
            )
        };
        assert!(err(&file(r#"{"aescbc":{"keys":[]}}"#)).contains("\"aescbc\" is not supported"));
        assert!(
            err(&file(
                r#"{"aesgcm":{"keys":[{"name":"k","secret":"AAAA"}]}}"#
            ))
            .contains("is 3 bytes")
        );
        assert!(
            err(&file(r#"{"aesgcm":{"keys":[{"name":"k","secret":"!"}]}}"#)).contains("not base64")
        );
        assert!(err("kind: Pod").contains("not an EncryptionConfiguration"));
        assert!(err(&file("")).contains("no providers"));
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enc.yaml");
        std::fs::write(
            &path,
            format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n\
                 resources: [{{resources: [secrets], providers: [{{aesgcm: {{keys: \
                 [{{name: k1, secret: {K1}}}]}}}}]}}]\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Encryption::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Encryption::from_file(&path).is_ok());
    }
}
