//! A get of one cached object, in the form the client asked for.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use vai_sync::ResourceInfo;

use crate::app::App;
use crate::errors::ApiError;
use crate::form::{Form, render};
use crate::path::ResourcePath;
use crate::read::error::ReadError;
use crate::read::params::Params;
use crate::read::version;

/// Answers a get: the newest version the store holds, once it is not older than the asked
/// `resourceVersion`.
pub(crate) async fn get(
    app: &App,
    info: &ResourceInfo,
    target: &ResourcePath,
    name: &str,
    params: &Params,
    form: Result<Form, ApiError>,
) -> Result<Response, ReadError> {
    let key = info.key();
    version::get_version(app, &key, params).await?;
    let (namespace, name_owned) = (
        target.namespace.clone().unwrap_or_default(),
        name.to_string(),
    );
    let found = app
        .blocking(move |store| {
            Ok::<_, ReadError>(store.get_row(&key, &namespace, &name_owned, None)?)
        })
        .await?;
    match found {
        Some(item) => Ok(json_response(match &form? {
            Form::Table(table) => {
                table.single(&item.object, item.cells.as_deref(), vai_sync::now_ms())
            }
            other => render(other, &item.object, None).into_owned(),
        })),
        None if !app.syncer.synced(&info.key()) => Err(ReadError::Proxy),
        None => Err(ApiError::not_found(&info.group, &info.plural, name).into()),
    }
}

fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
