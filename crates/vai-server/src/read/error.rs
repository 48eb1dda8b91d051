//! Why a read was not answered from the store ([`ReadError`]): an error to answer, or a
//! request upstream should answer instead.

use crate::errors::ApiError;

/// Why a read was not answered from the store.
pub(crate) enum ReadError {
    Api(ApiError),
    /// Upstream should answer it.
    Proxy,
    /// A field selector on a field the store does not index: upstream answers it (it may know
    /// the field); with upstream unreachable, upstream's own error for unknown fields.
    Unsupported(String),
}

impl From<ApiError> for ReadError {
    fn from(e: ApiError) -> ReadError {
        ReadError::Api(e)
    }
}

impl From<vai_store::Error> for ReadError {
    fn from(e: vai_store::Error) -> ReadError {
        match e {
            vai_store::Error::UnsupportedField(message) => ReadError::Unsupported(message),
            vai_store::Error::UnknownResource(_) => ReadError::Proxy,
            other => ReadError::Api(other.into()),
        }
    }
}
