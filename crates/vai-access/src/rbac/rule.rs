//! Whether one RBAC rule grants a request, as the apiserver's `RuleAllows` decides: verbs
//! and API groups exact or `*`; resources `*`, `res`, `res/sub` or `*/sub` (there is no
//! `res/*`); `resourceNames` empty for any name, else the request's name must be one of them,
//! where a request without a name (a list, a create) has the name `""` — so it matches only
//! `resourceNames` listing `""`; non-resource URLs exact, `*`, or a prefix ending in `*`
//! (every trailing `*` trimmed). Everything is compared case-sensitively. An empty
//! subresource or name is the same as none, as in the apiserver's string attributes.

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::Attributes;

const ALL: &str = "*";

fn has(list: &Option<Vec<String>>, wanted: &str) -> bool {
    list.iter().flatten().any(|v| v == ALL || v == wanted)
}

/// Whether `rule` grants `attributes`.
pub fn allows(rule: &PolicyRule, attributes: &Attributes) -> bool {
    match attributes {
        Attributes::Resource {
            verb,
            api_group,
            resource,
            subresource,
            name,
            ..
        } => {
            rule.verbs.iter().any(|v| v == ALL || v == verb)
                && has(&rule.api_groups, api_group)
                && resource_matches(rule, resource, subresource.as_deref())
                && name_matches(rule, name.as_deref())
        }
        Attributes::NonResource { verb, path } => {
            rule.verbs.iter().any(|v| v == ALL || v == verb) && url_matches(rule, path)
        }
    }
}

fn resource_matches(rule: &PolicyRule, resource: &str, subresource: Option<&str>) -> bool {
    let subresource = subresource.filter(|sub| !sub.is_empty());
    // `res/sub` compared in its parts: no string is built per rule.
    rule.resources.iter().flatten().any(|r| {
        r == ALL
            || match (subresource, r.split_once('/')) {
                (None, None) => r == resource,
                (Some(sub), Some((res, rsub))) => rsub == sub && (res == resource || res == ALL),
                _ => false,
            }
    })
}

fn name_matches(rule: &PolicyRule, name: Option<&str>) -> bool {
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => {
            let name = name.unwrap_or_default();
            names.iter().any(|r| r == name)
        }
    }
}

fn url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls.iter().flatten().any(|u| {
        u == ALL
            || u == path
            || u.strip_suffix('*')
                .is_some_and(|u| path.starts_with(u.trim_end_matches('*')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PolicyRule {
            verbs: v(verbs),
            api_groups: Some(v(groups)),
            resources: Some(v(resources)),
            resource_names: Some(v(names)),
            non_resource_urls: None,
        }
    }

    fn request(
        verb: &str,
        group: &str,
        resource: &str,
        sub: Option<&str>,
        name: Option<&str>,
    ) -> Attributes {
        Attributes::Resource {
            verb: verb.into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.map(str::to_string),
            namespace: Some("ns".into()),
            name: name.map(str::to_string),
        }
    }

    #[test]
    fn verbs_groups_and_resources_exact_or_star() {
        let pods = rule(&["get", "list"], &[""], &["pods"], &[]);
        assert!(allows(&pods, &request("list", "", "pods", None, None)));
        assert!(!allows(&pods, &request("watch", "", "pods", None, None)));
        assert!(!allows(&pods, &request("list", "apps", "pods", None, None)));
        assert!(!allows(
            &pods,
            &request("get", "", "pods", Some("log"), Some("p"))
        ));
        let star = rule(&["*"], &["*"], &["*"], &[]);
        assert!(allows(
            &star,
            &request("delete", "apps", "deployments", Some("scale"), Some("d"))
        ));
    }

    #[test]
    fn subresources_by_name_or_star_slash() {
        let log = rule(&["get"], &[""], &["pods/log"], &[]);
        assert!(allows(
            &log,
            &request("get", "", "pods", Some("log"), Some("p"))
        ));
        assert!(!allows(&log, &request("get", "", "pods", None, Some("p"))));
        let any_status = rule(&["get"], &["*"], &["*/status"], &[]);
        assert!(allows(
            &any_status,
            &request("get", "apps", "deployments", Some("status"), Some("d"))
        ));
        assert!(!allows(
            &any_status,
            &request("get", "apps", "deployments", None, Some("d"))
        ));
        // There is no `res/*` form: it names a subresource called `*`.
        let pods_any = rule(&["get"], &[""], &["pods/*"], &[]);
        assert!(!allows(
            &pods_any,
            &request("get", "", "pods", Some("log"), Some("p"))
        ));
    }

    #[test]
    fn resource_names_need_a_name() {
        let named = rule(&["get", "list", "create"], &[""], &["configmaps"], &["a"]);
        assert!(allows(
            &named,
            &request("get", "", "configmaps", None, Some("a"))
        ));
        assert!(!allows(
            &named,
            &request("get", "", "configmaps", None, Some("b"))
        ));
        assert!(!allows(
            &named,
            &request("list", "", "configmaps", None, None)
        ));
        assert!(allows(
            &named,
            &request("list", "", "configmaps", None, Some("a"))
        ));
        assert!(!allows(
            &named,
            &request("create", "", "configmaps", None, None)
        ));
    }

    #[test]
    fn non_resource_urls_exact_star_or_prefix() {
        let urls = PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: Some(vec!["/healthz".into(), "/apis/*".into()]),
            ..PolicyRule::default()
        };
        let get = |path: &str| Attributes::NonResource {
            verb: "get".into(),
            path: path.into(),
        };
        assert!(allows(&urls, &get("/healthz")));
        assert!(!allows(&urls, &get("/healthz/etcd")));
        assert!(allows(&urls, &get("/apis/apps/v1")));
        assert!(allows(&urls, &get("/apis/")));
        assert!(!allows(&urls, &get("/apis")));
        assert!(!allows(
            &urls,
            &Attributes::NonResource {
                verb: "post".into(),
                path: "/healthz".into()
            }
        ));
        // A resource rule never grants a path, nor a path rule a resource.
        assert!(!allows(
            &rule(&["*"], &["*"], &["*"], &[]),
            &get("/healthz")
        ));
        assert!(!allows(&urls, &request("get", "", "healthz", None, None)));
    }
}
