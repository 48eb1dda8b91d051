//! The index of a cluster's RBAC objects ([`Policy`]) and the decisions made over it:
//! [`Policy::authorize`] (a request), [`Policy::rules_for`] (what `SelfSubjectRulesReview`
//! answers) and [`Policy::list_scope`] (where a caller may list a type, for the query API).
//!
//! Bindings are indexed by the subjects they name (user, group, ServiceAccount), so a
//! decision looks only at the bindings that can apply to the caller. The policy is immutable:
//! a change to any RBAC object means building a new one.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::authorization::v1::{
    NonResourceRule, ResourceRule, SubjectRulesReviewStatus,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::PRIVILEGED_GROUP;
use super::rule::allows;
use super::subject::{applies_to, service_account_user};
use crate::{Attributes, User};

/// An authorization decision, with the authorizer's reason (the apiserver's wording).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed.
    pub allowed: bool,
    /// Why: `RBAC: allowed by …`, or for a denial the problems met on the way (a missing
    /// role: each message once, bracketed when there are several), or empty.
    pub reason: String,
}

/// Where a caller may list a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// In every namespace (a cluster-wide grant).
    All,
    /// In these namespaces only.
    Namespaces(BTreeSet<String>),
    /// Nowhere.
    Nothing,
}

/// Indices of the bindings (of one list) naming each subject: by the user name a `User` or
/// `ServiceAccount` subject names, and by group.
#[derive(Debug, Default)]
struct SubjectIndex {
    users: HashMap<String, Vec<usize>>,
    groups: HashMap<String, Vec<usize>>,
}

impl SubjectIndex {
    /// Indexes `subjects` of binding `i` in `namespace` (`""` for a ClusterRoleBinding).
    fn add(&mut self, i: usize, subjects: &[Subject], namespace: &str) {
        for s in subjects {
            let list = match s.kind.as_str() {
                "User" => self.users.entry(s.name.clone()).or_default(),
                "Group" => self.groups.entry(s.name.clone()).or_default(),
                "ServiceAccount" => {
                    let ns = s
                        .namespace
                        .as_deref()
                        .filter(|n| !n.is_empty())
                        .unwrap_or(namespace);
                    if ns.is_empty() {
                        continue;
                    }
                    self.users
                        .entry(service_account_user(ns, &s.name))
                        .or_default()
                }
                _ => continue,
            };
            if list.last() != Some(&i) {
                list.push(i);
            }
        }
    }

    /// The bindings that may name `user`, in list order, each once.
    fn candidates(&self, user: &User) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        out.extend(self.users.get(&user.name).into_iter().flatten());
        for g in &user.groups {
            out.extend(self.groups.get(g).into_iter().flatten());
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// One namespace's RoleBindings.
#[derive(Debug, Default)]
struct Namespace {
    bindings: Vec<RoleBinding>,
    index: SubjectIndex,
}

/// The cluster's RBAC, indexed for decisions.
#[derive(Debug, Default)]
pub struct Policy {
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    cluster_bindings: Vec<ClusterRoleBinding>,
    cluster_index: SubjectIndex,
    namespaces: HashMap<String, Namespace>,
}

/// A binding that applies to a user, as the apiserver describes it in a reason (written only
/// when a reason is: a decision visits many).
struct Source<'a> {
    /// `ClusterRoleBinding` or `RoleBinding`.
    kind: &'static str,
    /// The binding's name.
    name: &'a str,
    role_ref: &'a RoleRef,
    subject: &'a Subject,
    namespace: &'a str,
}

impl std::fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subject = match self.subject.kind.as_str() {
            "ServiceAccount" => {
                let ns = self.subject.namespace.as_deref().filter(|n| !n.is_empty());
                format!("{}/{}", self.subject.name, ns.unwrap_or(self.namespace))
            }
            _ => self.subject.name.clone(),
        };
        let binding = match self.namespace {
            "" => quoted(self.name),
            ns => quoted(&format!("{}/{ns}", self.name)),
        };
        write!(
            f,
            "{} {binding} of {} {} to {} {}",
            self.kind,
            self.role_ref.kind,
            quoted(&self.role_ref.name),
            self.subject.kind,
            quoted(&subject)
        )
    }
}

impl Policy {
    /// Indexes the cluster's RBAC objects.
    pub fn new(
        roles: Vec<Role>,
        cluster_roles: Vec<ClusterRole>,
        role_bindings: Vec<RoleBinding>,
        cluster_role_bindings: Vec<ClusterRoleBinding>,
    ) -> Policy {
        let mut policy = Policy::default();
        for role in roles {
            let key = (
                role.metadata.namespace.unwrap_or_default(),
                role.metadata.name.unwrap_or_default(),
            );
            policy.roles.insert(key, role.rules.unwrap_or_default());
        }
        for role in cluster_roles {
            let name = role.metadata.name.unwrap_or_default();
            policy
                .cluster_roles
                .insert(name, role.rules.unwrap_or_default());
        }
        for (i, binding) in cluster_role_bindings.iter().enumerate() {
            let subjects = binding.subjects.as_deref().unwrap_or_default();
            policy.cluster_index.add(i, subjects, "");
        }
        policy.cluster_bindings = cluster_role_bindings;
        for binding in role_bindings {
            let ns_name = binding.metadata.namespace.clone().unwrap_or_default();
            let ns = policy.namespaces.entry(ns_name.clone()).or_default();
            let i = ns.bindings.len();
            ns.index
                .add(i, binding.subjects.as_deref().unwrap_or_default(), &ns_name);
            ns.bindings.push(binding);
        }
        policy
    }

    /// Calls `visit` with the rules of every binding applying to `user` in `namespace`
    /// (`""`: ClusterRoleBindings only), ClusterRoleBindings first, until it returns true;
    /// returns the problems met (roles that do not exist).
    fn visit(
        &self,
        user: &User,
        namespace: &str,
        visit: &mut dyn FnMut(&Source, &[PolicyRule]) -> bool,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        for i in self.cluster_index.candidates(user) {
            let binding = &self.cluster_bindings[i];
            let Some(subject) = binding
                .subjects
                .iter()
                .flatten()
                .find(|s| applies_to(s, user, ""))
            else {
                continue;
            };
            let source = Source {
                kind: "ClusterRoleBinding",
                name: binding.metadata.name.as_deref().unwrap_or_default(),
                role_ref: &binding.role_ref,
                subject,
                namespace: "",
            };
            match self.rules_of(&binding.role_ref, "") {
                Ok(rules) => {
                    if visit(&source, rules) {
                        return errors;
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if namespace.is_empty() {
            return errors;
        }
        let Some(ns) = self.namespaces.get(namespace) else {
            return errors;
        };
        for i in ns.index.candidates(user) {
            let binding = &ns.bindings[i];
            let Some(subject) = binding
                .subjects
                .iter()
                .flatten()
                .find(|s| applies_to(s, user, namespace))
            else {
                continue;
            };
            let source = Source {
                kind: "RoleBinding",
                name: binding.metadata.name.as_deref().unwrap_or_default(),
                role_ref: &binding.role_ref,
                subject,
                namespace,
            };
            match self.rules_of(&binding.role_ref, namespace) {
                Ok(rules) => {
                    if visit(&source, rules) {
                        return errors;
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        errors
    }

    /// The rules a binding's role reference names (in `namespace`, for a Role).
    fn rules_of(&self, role_ref: &RoleRef, namespace: &str) -> Result<&[PolicyRule], String> {
        match role_ref.kind.as_str() {
            "ClusterRole" => self
                .cluster_roles
                .get(&role_ref.name)
                .map(Vec::as_slice)
                .ok_or_else(|| {
                    format!(
                        "clusterrole.rbac.authorization.k8s.io {} not found",
                        quoted(&role_ref.name)
                    )
                }),
            // A ClusterRoleBinding's Role is looked up in namespace "", where no Role is.
            "Role" => (!namespace.is_empty())
                .then(|| {
                    self.roles
                        .get(&(namespace.to_string(), role_ref.name.clone()))
                })
                .flatten()
                .map(Vec::as_slice)
                .ok_or_else(|| {
                    format!(
                        "role.rbac.authorization.k8s.io {} not found",
                        quoted(&role_ref.name)
                    )
                }),
            kind => Err(format!("unsupported role reference kind: {}", quoted(kind))),
        }
    }

    /// May `user` do what `attributes` ask?
    pub fn authorize(&self, user: &User, attributes: &Attributes) -> Decision {
        if user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
            return Decision {
                allowed: true,
                reason: String::new(),
            };
        }
        let namespace = match attributes {
            Attributes::Resource { namespace, .. } => namespace.as_deref().unwrap_or(""),
            Attributes::NonResource { .. } => "",
        };
        let mut allowed_by = None;
        let errors = self.visit(user, namespace, &mut |source, rules| {
            if rules.iter().any(|rule| allows(rule, attributes)) {
                allowed_by = Some(source.to_string());
                return true;
            }
            false
        });
        match allowed_by {
            Some(source) => Decision {
                allowed: true,
                reason: format!("RBAC: allowed by {source}"),
            },
            None => Decision {
                allowed: false,
                reason: aggregate(&errors)
                    .map(|e| format!("RBAC: {e}"))
                    .unwrap_or_default(),
            },
        }
    }

    /// What `SelfSubjectRulesReview` answers for `user` in `namespace`: the rules of every
    /// binding that applies there, as they are written (the apiserver does not merge them).
    /// A role that cannot be found is said in `evaluationError`; RBAC never says
    /// `incomplete`. The `system:masters` group adds nothing here: the apiserver's
    /// privileged-group authorizer allows but lists no rules, so such a caller sees what RBAC
    /// binds to it (a cluster's `cluster-admin` ClusterRoleBinding).
    pub fn rules_for(&self, user: &User, namespace: &str) -> SubjectRulesReviewStatus {
        let mut resource_rules = Vec::new();
        let mut non_resource_rules = Vec::new();
        let errors = self.visit(user, namespace, &mut |_, rules| {
            for rule in rules {
                if rule.resources.as_ref().is_some_and(|r| !r.is_empty()) {
                    resource_rules.push(ResourceRule {
                        verbs: rule.verbs.clone(),
                        api_groups: rule.api_groups.clone(),
                        resources: rule.resources.clone(),
                        resource_names: rule.resource_names.clone(),
                    });
                }
                if rule
                    .non_resource_urls
                    .as_ref()
                    .is_some_and(|u| !u.is_empty())
                {
                    non_resource_rules.push(NonResourceRule {
                        verbs: rule.verbs.clone(),
                        non_resource_urls: rule.non_resource_urls.clone(),
                    });
                }
            }
            false
        });
        SubjectRulesReviewStatus {
            resource_rules,
            non_resource_rules,
            incomplete: false,
            evaluation_error: aggregate(&errors),
        }
    }

    /// Where `user` may `verb` (a list or watch: no name) `resource` of `api_group`.
    pub fn list_scope(&self, user: &User, verb: &str, api_group: &str, resource: &str) -> Scope {
        let request = |namespace: Option<&str>| Attributes::Resource {
            verb: verb.into(),
            api_group: api_group.into(),
            resource: resource.into(),
            subresource: None,
            namespace: namespace.map(str::to_string),
            name: None,
        };
        if self.authorize(user, &request(None)).allowed {
            return Scope::All;
        }
        // A ClusterRoleBinding that grants it would have granted it cluster-wide: only
        // RoleBindings remain, namespace by namespace.
        let namespaces: BTreeSet<String> = self
            .namespaces
            .keys()
            .filter(|ns| self.authorize(user, &request(Some(ns))).allowed)
            .cloned()
            .collect();
        if namespaces.is_empty() {
            Scope::Nothing
        } else {
            Scope::Namespaces(namespaces)
        }
    }
}

/// What the apiserver makes of a list of errors (an aggregate's message): each message once,
/// in order, bracketed and comma-separated when more than one remains; none for none.
fn aggregate(errors: &[String]) -> Option<String> {
    let mut distinct: Vec<&str> = Vec::new();
    for e in errors {
        if !distinct.contains(&e.as_str()) {
            distinct.push(e);
        }
    }
    match distinct.as_slice() {
        [] => None,
        [one] => Some(one.to_string()),
        many => Some(format!("[{}]", many.join(", "))),
    }
}

/// `s` in double quotes as Go's `%q` (`strconv.Quote`) writes it, which the apiserver's
/// reasons use: `"` and `\` backslashed; printable characters as they are; `\a \b \f \n \r
/// \t \v`; other ASCII controls as `\xHH`; other unprintable characters as `\uHHHH` or
/// `\UHHHHHHHH`.
fn quoted(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        let code = u32::from(c);
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if printable(c) => out.push(c),
            _ if code < 0x20 || code == 0x7f => {
                let _ = write!(out, "\\x{code:02x}");
            }
            _ if code < 0x10000 => {
                let _ = write!(out, "\\u{code:04x}");
            }
            _ => {
                let _ = write!(out, "\\U{code:08x}");
            }
        }
    }
    out.push('"');
    out
}

/// Go's `unicode.IsPrint` (letters, marks, numbers, punctuation, symbols and the ASCII
/// space), without the Unicode tables: everything but controls, spaces other than `' '`,
/// format characters and private use. Unassigned code points count as printable here,
/// where Go escapes them.
fn printable(c: char) -> bool {
    if c.is_ascii() {
        return c == ' ' || c.is_ascii_graphic();
    }
    let format = matches!(
        u32::from(c),
        0xad | 0x600..=0x605
            | 0x61c
            | 0x6dd
            | 0x70f
            | 0x890..=0x891
            | 0x8e2
            | 0x180e
            | 0x200b..=0x200f
            | 0x202a..=0x202e
            | 0x2060..=0x2064
            | 0x2066..=0x206f
            | 0xfeff
            | 0xfff9..=0xfffb
            | 0x110bd
            | 0x110cd
            | 0x13430..=0x1343f
            | 0x1bca0..=0x1bca3
            | 0x1d173..=0x1d17a
            | 0xe0001
            | 0xe0020..=0xe007f
    );
    let private = matches!(
        u32::from(c),
        0xe000..=0xf8ff | 0xf0000..=0xffffd | 0x100000..=0x10fffd
    );
    !(c.is_control() || c.is_whitespace() || format || private)
}
