//! The query API under authorization: a page over a type the caller may not list everywhere
//! is not refused but narrowed to the namespaces the caller may list it in ([`ListScope`]),
//! as a condition of the page's own SQL, so totals and summaries count only what the caller
//! can see and no count reveals a hidden object. A caller who may list it nowhere gets an
//! empty page with total 0. Kubernetes' own list requests keep Kubernetes' answer (403); a
//! `get`-only grant never lets a caller list.

use axum::http::Uri;
use vai_access::User;
use vai_access::rbac::Scope;
use vai_store::{Column, Condition, Filter, Operator};

use crate::app::App;
use crate::request_info::RequestInfo;

/// The query parameters that make a list a query-API page (`query_api`).
const QUERY_PARAMETERS: [&str; 6] = ["filter", "sort", "page", "pagesize", "summary", "revision"];

/// Where a narrowed page may look, in its request's extensions.
#[derive(Debug, Clone)]
pub struct ListScope(pub Scope);

impl ListScope {
    /// The condition that keeps a page within the scope (`None`: no narrowing).
    pub fn filter(&self) -> Option<Filter> {
        let values = match &self.0 {
            Scope::All => return None,
            Scope::Namespaces(namespaces) => namespaces.iter().cloned().collect(),
            // No namespace holds a NUL: the page is empty, with its total and summaries 0,
            // from the same snapshot path as any page.
            Scope::Nothing => vec!["\0".to_string()],
        };
        Some(Filter(vec![Condition {
            column: Column::Namespace,
            operator: Operator::In,
            values,
        }]))
    }
}

/// The scope of a denied query-API list, if the request is one.
pub(crate) fn of_query(app: &App, user: &User, info: &RequestInfo, uri: &Uri) -> Option<ListScope> {
    let target = info.resource.as_ref()?;
    if info.verb != "list" || target.subresource.is_some() {
        return None;
    }
    let query = uri.query()?;
    let is_page = form_urlencoded::parse(query.as_bytes())
        .any(|(k, _)| QUERY_PARAMETERS.contains(&k.as_ref()));
    if !is_page {
        return None;
    }
    let policy = app.access.policy.get()?;
    let scope = policy
        .policy()
        .list_scope(user, "list", &target.group, &target.plural);
    let scope = match (scope, target.namespace.as_deref()) {
        // A page in one namespace: that namespace, if the caller may list there.
        (Scope::Namespaces(allowed), Some(ns)) => {
            if allowed.contains(ns) {
                Scope::All
            } else {
                Scope::Nothing
            }
        }
        (scope, _) => scope,
    };
    Some(ListScope(scope))
}
