//! The gRPC `DirectoryService` (proto/calanque/v1/directory.proto): the same operations,
//! validation and error mapping as REST, behind the same bearer tokens (`authorization:
//! Bearer <token>` metadata), plus the standard gRPC health service.

use std::sync::Arc;

use proto::v1;
use proto::v1::directory_service_server::{DirectoryService, DirectoryServiceServer};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use super::{BearerToken, Format, kind_from_proto, token_matches};
use crate::error::ServiceError;
use crate::import::ImportMode;
use crate::model::{Entry, EntryKey};
use crate::repository::Repository;

/// The gRPC service implementation.
#[derive(Debug, Clone)]
pub struct GrpcApi {
    repository: Repository,
}

/// The authenticating interceptor.
#[derive(Debug, Clone)]
pub struct Authenticate {
    tokens: Arc<Vec<BearerToken>>,
}

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match presented {
            Some(token) if token_matches(&self.tokens, token) => Ok(request),
            _ => Err(Status::unauthenticated("missing or invalid bearer token")),
        }
    }
}

/// The authenticated gRPC service, ready to add to a tonic server.
pub type DirectoryGrpcService = InterceptedService<DirectoryServiceServer<GrpcApi>, Authenticate>;

/// The `DirectoryService` server for `repository`, accepting `tokens`.
pub fn service(repository: Repository, tokens: Arc<Vec<BearerToken>>) -> DirectoryGrpcService {
    DirectoryServiceServer::with_interceptor(GrpcApi { repository }, Authenticate { tokens })
}

/// A [`ServiceError`] as a gRPC status.
pub fn status(error: ServiceError) -> Status {
    let mut message = error.to_string();
    for detail in error.details() {
        message.push_str("\n  ");
        message.push_str(detail);
    }
    match error {
        ServiceError::BadRequest { .. } | ServiceError::Invalid { .. } => {
            Status::invalid_argument(message)
        }
        ServiceError::TooLarge(_) => Status::resource_exhausted(message),
        ServiceError::Unauthenticated => Status::unauthenticated(message),
        ServiceError::NotFound(_) => Status::not_found(message),
        ServiceError::AlreadyExists(_) => Status::already_exists(message),
        ServiceError::Conflict(_) => Status::aborted(message),
        ServiceError::StillReferenced { .. } => Status::failed_precondition(message),
        ServiceError::Unavailable(_) => Status::unavailable(message),
        ServiceError::Store(_) | ServiceError::Export(_) => Status::internal(message),
    }
}

fn entry(message: Option<v1::Entry>) -> Result<Entry, ServiceError> {
    let message = message
        .ok_or_else(|| ServiceError::bad_request("missing_entry", "the request has no entry"))?;
    Entry::try_from(message).map_err(|errors| ServiceError::Invalid {
        message: "the entry is not valid".to_owned(),
        details: errors.0.iter().map(ToString::to_string).collect(),
    })
}

fn key(kind: i32, id: &str) -> Result<EntryKey, ServiceError> {
    let kind = kind_from_proto(kind)?;
    EntryKey::parse(kind, id).map_err(|fault| {
        ServiceError::bad_request(
            "bad_id",
            format!("{id:?} is not a valid {kind} key: {fault}"),
        )
    })
}

fn revision(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or_default()
}

fn format(format: i32, kind: i32) -> Result<Format, ServiceError> {
    match v1::ImportFormat::try_from(format) {
        Ok(v1::ImportFormat::Yaml) => Ok(Format::Yaml),
        Ok(v1::ImportFormat::Csv) => Ok(Format::Csv(kind_from_proto(kind)?)),
        _ => Err(ServiceError::bad_request(
            "bad_format",
            "format must be YAML or CSV",
        )),
    }
}

fn list_response(page: super::Page) -> v1::ListResponse {
    v1::ListResponse {
        entries: page.entries.into_iter().map(v1::Entry::from).collect(),
        next_page_token: page.next_page_token.unwrap_or_default(),
        revision: revision(page.revision),
    }
}

#[tonic::async_trait]
impl DirectoryService for GrpcApi {
    async fn create(
        &self,
        request: Request<v1::CreateRequest>,
    ) -> Result<Response<v1::WriteResponse>, Status> {
        let entry = entry(request.into_inner().entry).map_err(status)?;
        let committed = self.repository.create(entry).await.map_err(status)?;
        Ok(Response::new(v1::WriteResponse {
            revision: revision(committed.revision),
        }))
    }

    async fn get(
        &self,
        request: Request<v1::GetRequest>,
    ) -> Result<Response<v1::GetResponse>, Status> {
        super::bus::lookup(&self.repository, &request.into_inner())
            .map(Response::new)
            .map_err(status)
    }

    async fn update(
        &self,
        request: Request<v1::UpdateRequest>,
    ) -> Result<Response<v1::WriteResponse>, Status> {
        let request = request.into_inner();
        let entry = entry(request.entry).map_err(status)?;
        let (committed, _) = self
            .repository
            .put(entry, true, request.expected_revision)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::WriteResponse {
            revision: revision(committed.revision),
        }))
    }

    async fn delete(
        &self,
        request: Request<v1::DeleteRequest>,
    ) -> Result<Response<v1::WriteResponse>, Status> {
        let request = request.into_inner();
        let key = key(request.kind, &request.id).map_err(status)?;
        let committed = self
            .repository
            .delete(key, request.expected_revision)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::WriteResponse {
            revision: revision(committed.revision),
        }))
    }

    async fn list(
        &self,
        request: Request<v1::ListRequest>,
    ) -> Result<Response<v1::ListResponse>, Status> {
        let request = request.into_inner();
        let kind = kind_from_proto(request.kind).map_err(status)?;
        let snapshot = self.repository.ready_snapshot().map_err(status)?;
        let page = super::page(
            &snapshot,
            kind,
            request.page_size as usize,
            &request.page_token,
            "",
            "",
        )
        .map_err(status)?;
        Ok(Response::new(list_response(page)))
    }

    async fn search(
        &self,
        request: Request<v1::SearchRequest>,
    ) -> Result<Response<v1::ListResponse>, Status> {
        let request = request.into_inner();
        let kind = kind_from_proto(request.kind).map_err(status)?;
        let snapshot = self.repository.ready_snapshot().map_err(status)?;
        let page = super::page(
            &snapshot,
            kind,
            request.page_size as usize,
            &request.page_token,
            &request.name_prefix,
            &request.number_prefix,
        )
        .map_err(status)?;
        Ok(Response::new(list_response(page)))
    }

    async fn import(
        &self,
        request: Request<v1::ImportRequest>,
    ) -> Result<Response<v1::ImportResponse>, Status> {
        let request = request.into_inner();
        let format = format(request.format, request.kind).map_err(status)?;
        let mode = match v1::ImportMode::try_from(request.mode) {
            Ok(v1::ImportMode::Replace) => ImportMode::Replace,
            Ok(v1::ImportMode::Merge | v1::ImportMode::Unspecified) => ImportMode::Merge,
            Err(_) => {
                return Err(Status::invalid_argument("unknown import mode"));
            }
        };
        let text = std::str::from_utf8(&request.content)
            .map_err(|e| Status::invalid_argument(format!("content is not UTF-8: {e}")))?;
        let set = match format {
            Format::Yaml => crate::import::parse_yaml(text),
            Format::Csv(kind) => crate::import::parse_csv(kind, text),
        };
        // Import errors are the answer (the proto lists them), not a failed call.
        let errors = match set {
            Err(errors) => Some(errors),
            Ok(set) => {
                let set = set.with_mode(mode);
                crate::import::plan(
                    &self.repository.ready_snapshot().map_err(status)?.directory,
                    set,
                )
                .err()
            }
        };
        if let Some(errors) = errors {
            return Ok(Response::new(v1::ImportResponse {
                errors: errors.0.iter().map(import_error).collect(),
                changes: Vec::new(),
                revision: 0,
            }));
        }
        let committed = super::import(&self.repository, format, mode, text, request.dry_run)
            .await
            .map_err(status)?;
        let changes = committed
            .changes
            .counts()
            .into_iter()
            .map(|(kind, (puts, deletes))| v1::KindChanges {
                kind: kind.to_proto() as i32,
                puts: u32::try_from(puts).unwrap_or(u32::MAX),
                deletes: u32::try_from(deletes).unwrap_or(u32::MAX),
            })
            .collect();
        Ok(Response::new(v1::ImportResponse {
            errors: Vec::new(),
            changes,
            revision: if request.dry_run {
                0
            } else {
                revision(committed.revision)
            },
        }))
    }

    async fn export(
        &self,
        request: Request<v1::ExportRequest>,
    ) -> Result<Response<v1::ExportResponse>, Status> {
        let request = request.into_inner();
        let format = format(request.format, request.kind).map_err(status)?;
        let snapshot = self.repository.ready_snapshot().map_err(status)?;
        let text = super::export(&snapshot, format).map_err(status)?;
        Ok(Response::new(v1::ExportResponse {
            content: text.into_bytes(),
            revision: revision(snapshot.revision),
        }))
    }
}

fn import_error(error: &crate::import::ImportError) -> v1::ImportError {
    let (kind, key) = error
        .entry
        .as_ref()
        .map(|(kind, key)| (kind.to_proto() as i32, key.clone()))
        .unwrap_or_default();
    v1::ImportError {
        location: error
            .location
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        kind,
        key,
        field: error.field.clone().unwrap_or_default(),
        message: error.to_string(),
    }
}
