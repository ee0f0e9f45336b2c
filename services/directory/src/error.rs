//! The service's one error type: what a request (REST, gRPC or bus) can fail with, mapped to an
//! HTTP status and error code in `api::rest`, a gRPC status in `api::grpc`.

use store::StoreError;

use crate::import::ImportErrors;
use crate::model::ValidationErrors;

/// Why a directory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request itself is malformed (bad JSON, bad query, unknown kind, bad id or token).
    #[error("{message}")]
    BadRequest {
        /// Short snake_case code (`malformed_json`, `unknown_kind`, …).
        code: &'static str,
        /// For a human.
        message: String,
        /// Every problem found, when there are several.
        details: Vec<String>,
    },
    /// No credentials, or credentials that match no configured token.
    #[error("missing or invalid bearer token")]
    Unauthenticated,
    /// The entry asked for does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// A create names an entry that already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A concurrent write changed the directory (after the bounded retries), or an expected
    /// revision did not match.
    #[error("write conflict: {0}")]
    Conflict(String),
    /// The change set or the request body is larger than the configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// The entry or import is well-formed but not valid (field values, references, number plan).
    #[error("{message}")]
    Invalid {
        /// Summary for a human.
        message: String,
        /// Every problem found.
        details: Vec<String>,
    },
    /// A delete would leave other entries pointing at the deleted one.
    #[error("{message}")]
    StillReferenced {
        /// Summary for a human.
        message: String,
        /// Every entry still referring to the deleted one.
        details: Vec<String>,
    },
    /// The store cannot be reached, or the snapshot is not loaded yet: retry later.
    #[error("directory store unavailable: {0}")]
    Unavailable(String),
    /// The store refused a request for a reason retrying cannot fix (a bug on our side).
    #[error("store error: {0}")]
    Store(#[source] StoreError),
    /// An export could not be serialised (a bug on our side).
    #[error("export failed: {0}")]
    Export(String),
}

impl ServiceError {
    /// A malformed request.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ServiceError {
        ServiceError::BadRequest {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// Validation problems of a write.
    pub fn invalid(errors: &ValidationErrors) -> ServiceError {
        ServiceError::Invalid {
            message: format!("the change is not valid ({} problem(s))", errors.0.len()),
            details: errors.0.iter().map(ToString::to_string).collect(),
        }
    }

    /// Every error of an import.
    pub fn import(errors: &ImportErrors) -> ServiceError {
        ServiceError::Invalid {
            message: format!(
                "the import has {} error(s); nothing was applied",
                errors.0.len()
            ),
            details: errors.0.iter().map(ToString::to_string).collect(),
        }
    }

    /// The details list (empty for single-cause errors).
    pub fn details(&self) -> &[String] {
        match self {
            ServiceError::BadRequest { details, .. }
            | ServiceError::Invalid { details, .. }
            | ServiceError::StillReferenced { details, .. } => details,
            _ => &[],
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> ServiceError {
        match error {
            StoreError::Unavailable(reason) => ServiceError::Unavailable(reason),
            StoreError::TooLarge(reason) => ServiceError::TooLarge(format!(
                "the store refused the transaction as too large: {reason}"
            )),
            other => ServiceError::Store(other),
        }
    }
}
