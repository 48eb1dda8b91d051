//! Reads of cached types — get, list, the query API's page, watch — answered from the store
//! with the apiserver's semantics, whether or not upstream answers.
//!
//! [`serve`] reads what the request needs from the store first (the type's fields, its table
//! columns and CRD when a table is asked for) in one blocking call, negotiates the form, and
//! hands over to [`get`], [`list`] or [`watch`]; resource versions are in [`version`] and
//! parameters in [`params`]. A field selector on a field the type does not have (see
//! [`vai_store::fields`]: built in, declared by its CRD, configured) is proxied to upstream
//! while it answers, and refused as upstream refuses it while it does not.
//!
//! Nothing here runs the store on an async worker: every store call goes through
//! [`App::blocking`] or a blocking thread of its own.

mod error;
mod get;
mod list;
mod outbox;
pub(crate) mod params;
mod selection;
pub(crate) mod version;
mod watch;

use std::sync::Arc;

use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use vai_store::FieldSet;
use vai_sync::ResourceInfo;

use crate::app::App;
use crate::errors::ApiError;
use crate::form::{self, Answer, Form};
use crate::freshness;
use crate::path::ResourcePath;
use crate::request_info::RequestInfo;
use crate::table::TableForm;
use params::Params;

pub(crate) use error::ReadError;

/// What `serve` did.
pub(crate) enum Outcome {
    /// Answered.
    Served(Response),
    /// Better answered by upstream (an unindexed field selector, a type not synced yet).
    Proxy,
}

/// The store key of CustomResourceDefinitions.
const CRDS: &str = "apiextensions.k8s.io/v1/customresourcedefinitions";

/// What a read needs from the store before it starts.
struct Prelude {
    /// The type's fields (what selectors and the query API accept).
    fields: Arc<FieldSet>,
    /// Its table column definitions, when a table is asked for and sync stored them.
    columns: Option<Vec<u8>>,
    /// Its CRD, when a table of a custom resource is asked for.
    crd: Option<Vec<u8>>,
}

async fn prelude(app: &App, info: &ResourceInfo, table: bool) -> Result<Prelude, ReadError> {
    let key = info.key();
    let crd_name =
        (table && !info.group.is_empty()).then(|| format!("{}.{}", info.plural, info.group));
    app.blocking(move |store| {
        let fields = store.fields(&key);
        // The type's table columns and its CRD, from one snapshot.
        let (columns, crd) = store.snapshot(|s| {
            let columns = match table {
                true => s
                    .document(&vai_store::keys::table_columns(&key))?
                    .map(|d| d.body),
                false => None,
            };
            // CRDs not cached (`--resources` left them out): tables print as captured.
            let crd = match crd_name
                .as_deref()
                .map(|name| s.get_row(CRDS, "", name, None))
            {
                Some(Ok(found)) => found.map(|item| item.object),
                Some(Err(vai_store::Error::UnknownResource(_))) | None => None,
                Some(Err(e)) => return Err(e),
            };
            Ok((columns, crd))
        })?;
        Ok(Prelude {
            fields,
            columns,
            crd,
        })
    })
    .await
}

/// Serves a read (`request.verb` get, list or watch) on a cached type.
pub(crate) async fn serve(
    app: &App,
    request: &RequestInfo,
    info: &ResourceInfo,
    target: &ResourcePath,
    parts: &Parts,
) -> Outcome {
    let reachable = app.syncer.health().borrow().reachable;
    let answer = match (&target.name, request.verb) {
        (Some(_), _) => Answer::Object,
        (None, "watch") => Answer::Watch,
        (None, _) => Answer::List,
    };
    let result = async {
        form::acceptable(&parts.headers, answer)?;
        let params = Params::parse(&parts.uri)?;
        // The verb came from `watch`; a value that is not a boolean is refused, as upstream does.
        let watch = params.watch()?;
        let prelude = prelude(app, info, form::wants_table(&parts.headers)).await?;
        let include = params.include_object.as_deref();
        let columns = prelude.columns.as_deref();
        let form = form::negotiate(&parts.headers, answer, include, columns).map(|form| {
            match (form, prelude.crd.as_deref()) {
                (Form::Table(table), Some(crd)) => {
                    let dates = form::crd_date_columns(crd, &info.version);
                    Form::Table(Arc::new(TableForm::clone(&table).with_date_columns(&dates)))
                }
                (other, _) => other,
            }
        });
        let fields = prelude.fields;
        match (&target.name, request.verb) {
            // Watching one object by path (`?watch=true` on it, or under `/watch/`): the
            // deprecated forms; upstream serves them.
            (Some(_), _) if watch => Err(ReadError::Proxy),
            (_, _) if request.watch_path => Err(ReadError::Proxy),
            // Which form of JSON is checked once the request is found valid (and, for a get,
            // its object found), as the apiserver checks it when it writes the answer.
            (Some(name), _) => get::get(app, info, target, name, &params, form).await,
            (None, "watch") => watch::watch(app, info, target, &params, form, fields, parts).await,
            (None, _) => match crate::query_api::parse(&fields, &parts.uri)? {
                Some(mut query) => {
                    // Narrowed to what the caller may list (`access`), in the page's SQL.
                    if let Some(scope) = parts.extensions.get::<crate::access::ListScope>() {
                        query.filters.extend(scope.filter());
                    }
                    list::page(app, info, target, &params, form, query).await
                }
                None => list::list(app, info, target, &params, form, &fields).await,
            },
        }
    }
    .await;
    match result {
        Ok(mut response) => {
            app.syncer.note_read(&info.key());
            freshness::annotate(app, &info.key(), response.headers_mut());
            Outcome::Served(response)
        }
        Err(ReadError::Proxy | ReadError::Unsupported(_)) if reachable => Outcome::Proxy,
        Err(ReadError::Proxy) => Outcome::Served(
            ApiError::unavailable(
                "vai cannot answer this from its cache (a type not synced yet) and upstream is unreachable",
            )
            .into_response(),
        ),
        Err(ReadError::Unsupported(message)) => {
            Outcome::Served(ApiError::bad_request(message).into_response())
        }
        Err(ReadError::Api(e)) => Outcome::Served(e.into_response()),
    }
}
