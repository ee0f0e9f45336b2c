//! The REST API (docs/directory-api.md): CRUD per kind, paging and prefix search, bulk import
//! and export, behind bearer tokens; `/healthz` and `/readyz` open. Every non-2xx answer has the
//! body `{"error": {"code", "message", "details"}}`; nothing a client sends gives a 500.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use super::{BearerToken, Format, parse_kind, token_matches};
use crate::error::ServiceError;
use crate::import::ImportMode;
use crate::model::{
    ClassOfService, Device, Entry, EntryKey, Extension, HuntGroup, Kind, PickupGroup, Route, Site,
    Trunk, User,
};
use crate::repository::Repository;

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECONDS: &str = "2";

/// What the REST handlers share.
#[derive(Debug, Clone)]
pub struct RestState {
    /// The directory.
    pub repository: Repository,
    /// Accepted bearer tokens.
    pub tokens: Arc<Vec<BearerToken>>,
    /// Largest request body accepted (a bulk import file).
    pub max_body_bytes: usize,
}

/// The REST application (no socket: serve it, or test it with `oneshot`).
pub fn app(state: RestState) -> Router {
    let v1 = Router::new()
        .route("/v1/import", post(import))
        .route("/v1/export", get(export))
        .route("/v1/{kind}", get(list).post(create))
        .route("/v1/{kind}/{id}", get(read).put(replace).delete(remove))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .merge(v1)
        .fallback(|| async {
            ApiError(ServiceError::bad_request("not_found", "no such route"))
                .with_status(StatusCode::NOT_FOUND)
        })
        .method_not_allowed_fallback(|| async {
            ApiError(ServiceError::bad_request(
                "method_not_allowed",
                "method not allowed on this route",
            ))
            .with_status(StatusCode::METHOD_NOT_ALLOWED)
        })
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .with_state(state)
}

/// A [`ServiceError`] as an HTTP answer.
#[derive(Debug)]
pub struct ApiError(pub ServiceError);

impl ApiError {
    fn status(&self) -> StatusCode {
        match &self.0 {
            ServiceError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ServiceError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::AlreadyExists(_) | ServiceError::Conflict(_) => StatusCode::CONFLICT,
            ServiceError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::Invalid { .. } | ServiceError::StillReferenced { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::Store(_) | ServiceError::Export(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match &self.0 {
            ServiceError::BadRequest { code, .. } => code,
            ServiceError::Unauthenticated => "unauthenticated",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::AlreadyExists(_) => "already_exists",
            ServiceError::Conflict(_) => "conflict",
            ServiceError::TooLarge(_) => "too_large",
            ServiceError::Invalid { .. } => "invalid",
            ServiceError::StillReferenced { .. } => "still_referenced",
            ServiceError::Unavailable(_) => "unavailable",
            ServiceError::Store(_) => "store_error",
            ServiceError::Export(_) => "export_failed",
        }
    }

    fn with_status(self, status: StatusCode) -> Response {
        let mut response = self.into_response();
        *response.status_mut() = status;
        response
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> ApiError {
        ApiError(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %self.0, "directory request failed");
        }
        let body = json!({"error": {
            "code": self.code(),
            "message": self.0.to_string(),
            "details": self.0.details(),
        }});
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"calanque-directory\""),
            );
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

async fn authenticate(State(state): State<RestState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if token_matches(&state.tokens, token) => next.run(request).await,
        _ => ApiError(ServiceError::Unauthenticated).into_response(),
    }
}

async fn readyz(State(state): State<RestState>) -> ApiResult<Json<serde_json::Value>> {
    state.repository.ready().await?;
    let revision = state.repository.snapshot().map_or(0, |s| s.revision);
    Ok(Json(json!({"status": "ready", "revision": revision})))
}

/// The JSON of an entry: the serde form of the model type of its kind.
#[derive(Serialize)]
#[serde(untagged)]
enum EntryJson<'a> {
    Site(&'a Site),
    User(&'a User),
    Extension(&'a Extension),
    Device(&'a Device),
    HuntGroup(&'a HuntGroup),
    PickupGroup(&'a PickupGroup),
    ClassOfService(&'a ClassOfService),
    Trunk(&'a Trunk),
    Route(&'a Route),
}

impl<'a> From<&'a Entry> for EntryJson<'a> {
    fn from(entry: &'a Entry) -> EntryJson<'a> {
        match entry {
            Entry::Site(e) => EntryJson::Site(e),
            Entry::User(e) => EntryJson::User(e),
            Entry::Extension(e) => EntryJson::Extension(e),
            Entry::Device(e) => EntryJson::Device(e),
            Entry::HuntGroup(e) => EntryJson::HuntGroup(e),
            Entry::PickupGroup(e) => EntryJson::PickupGroup(e),
            Entry::ClassOfService(e) => EntryJson::ClassOfService(e),
            Entry::Trunk(e) => EntryJson::Trunk(e),
            Entry::Route(e) => EntryJson::Route(e),
        }
    }
}

/// Parses an entry of `kind` from its JSON: syntax errors are 400, invalid values 422.
pub fn entry_from_json(kind: Kind, body: &[u8]) -> Result<Entry, ServiceError> {
    fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ServiceError> {
        serde_json::from_slice(body).map_err(|e| {
            if e.is_data() {
                ServiceError::Invalid {
                    message: "the entry is not valid".to_owned(),
                    details: vec![e.to_string()],
                }
            } else {
                ServiceError::bad_request("malformed_json", format!("malformed JSON: {e}"))
            }
        })
    }
    Ok(match kind {
        Kind::Site => Entry::Site(parse(body)?),
        Kind::User => Entry::User(parse(body)?),
        Kind::Extension => Entry::Extension(parse(body)?),
        Kind::Device => Entry::Device(parse(body)?),
        Kind::HuntGroup => Entry::HuntGroup(parse(body)?),
        Kind::PickupGroup => Entry::PickupGroup(parse(body)?),
        Kind::ClassOfService => Entry::ClassOfService(parse(body)?),
        Kind::Trunk => Entry::Trunk(parse(body)?),
        Kind::Route => Entry::Route(parse(body)?),
    })
}

fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ServiceError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServiceError::TooLarge(format!("request body too large: {rejection}"))
        } else {
            ServiceError::bad_request("bad_body", format!("cannot read the body: {rejection}"))
        }
    })
}

fn path_kind(path: Result<Path<String>, PathRejection>) -> Result<Kind, ServiceError> {
    let Path(kind) =
        path.map_err(|e| ServiceError::bad_request("bad_path", format!("bad path: {e}")))?;
    parse_kind(&kind)
}

fn path_key(path: Result<Path<(String, String)>, PathRejection>) -> Result<EntryKey, ServiceError> {
    let Path((kind, id)) =
        path.map_err(|e| ServiceError::bad_request("bad_path", format!("bad path: {e}")))?;
    let kind = parse_kind(&kind)?;
    EntryKey::parse(kind, &id).map_err(|fault| {
        ServiceError::bad_request(
            "bad_id",
            format!("{id:?} is not a valid {kind} key: {fault}"),
        )
    })
}

type RawQuery = Result<Query<HashMap<String, String>>, QueryRejection>;

fn query(query: RawQuery) -> Result<HashMap<String, String>, ServiceError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ServiceError::bad_request("bad_query", format!("bad query: {e}")))
}

async fn list(
    State(state): State<RestState>,
    kind: Result<Path<String>, PathRejection>,
    raw: RawQuery,
) -> ApiResult<Json<serde_json::Value>> {
    let kind = path_kind(kind)?;
    let q = query(raw)?;
    let page_size = match q.get("page_size") {
        None => 0,
        Some(size) => match size.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(ServiceError::bad_request(
                    "bad_page_size",
                    format!("page_size must be 1–{}", super::MAX_PAGE_SIZE),
                )
                .into());
            }
        },
    };
    let text = |name: &str| q.get(name).map_or("", String::as_str);
    let snapshot = state.repository.ready_snapshot()?;
    let page = super::page(
        &snapshot,
        kind,
        page_size,
        text("page_token"),
        text("name_prefix"),
        text("number_prefix"),
    )?;
    let items: Vec<EntryJson<'_>> = page.entries.iter().map(EntryJson::from).collect();
    Ok(Json(json!({
        "items": items,
        "next_page_token": page.next_page_token,
    })))
}

async fn read(
    State(state): State<RestState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Response> {
    let key = path_key(path)?;
    let snapshot = state.repository.ready_snapshot()?;
    let entry = snapshot
        .directory
        .get(&key)
        .ok_or_else(|| ServiceError::NotFound(key.to_string()))?;
    Ok(Json(EntryJson::from(&entry)).into_response())
}

async fn create(
    State(state): State<RestState>,
    kind: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let kind = path_kind(kind)?;
    let entry = entry_from_json(kind, &body(raw)?)?;
    state.repository.create(entry.clone()).await?;
    Ok((StatusCode::CREATED, Json(EntryJson::from(&entry))).into_response())
}

async fn replace(
    State(state): State<RestState>,
    path: Result<Path<(String, String)>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let key = path_key(path)?;
    let entry = entry_from_json(key.kind(), &body(raw)?)?;
    if entry.key() != key {
        return Err(ServiceError::bad_request(
            "id_mismatch",
            format!("the body names {}, the path {}", entry.key(), key),
        )
        .into());
    }
    state.repository.put(entry.clone(), false, 0).await?;
    Ok(Json(EntryJson::from(&entry)).into_response())
}

async fn remove(
    State(state): State<RestState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<StatusCode> {
    let key = path_key(path)?;
    state.repository.delete(key, 0).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn format_of(q: &HashMap<String, String>) -> Result<Format, ServiceError> {
    match q.get("format").map_or("yaml", String::as_str) {
        "yaml" => Ok(Format::Yaml),
        "csv" => {
            let kind = q.get("kind").ok_or_else(|| {
                ServiceError::bad_request("missing_kind", "format=csv needs kind=<kind>")
            })?;
            Ok(Format::Csv(parse_kind(kind)?))
        }
        other => Err(ServiceError::bad_request(
            "bad_format",
            format!("unknown format {other:?} (yaml or csv)"),
        )),
    }
}

async fn import(
    State(state): State<RestState>,
    raw_query: RawQuery,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let q = query(raw_query)?;
    let format = format_of(&q)?;
    let mode = match q.get("mode").map(String::as_str) {
        None | Some("merge") => ImportMode::Merge,
        Some("replace") => ImportMode::Replace,
        Some(other) => {
            return Err(ServiceError::bad_request(
                "bad_mode",
                format!("unknown mode {other:?} (merge or replace)"),
            )
            .into());
        }
    };
    let dry_run = matches!(q.get("dry_run").map(String::as_str), Some("true" | "1"));
    let bytes = body(raw)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| ServiceError::bad_request("bad_encoding", format!("not UTF-8: {e}")))?;
    let committed = super::import(&state.repository, format, mode, text, dry_run).await?;
    Ok(Json(json!({
        "puts": committed.changes.puts.len(),
        "deletes": committed.changes.deletes.len(),
        "revision": committed.revision,
    })))
}

async fn export(State(state): State<RestState>, raw_query: RawQuery) -> ApiResult<Response> {
    let q = query(raw_query)?;
    let format = format_of(&q)?;
    let snapshot = state.repository.ready_snapshot()?;
    let text = super::export(&snapshot, format)?;
    let content_type = match format {
        Format::Yaml => "application/yaml; charset=utf-8",
        Format::Csv(_) => "text/csv; charset=utf-8",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}
