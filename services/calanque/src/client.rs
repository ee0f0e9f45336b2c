//! A small client of the directory's REST API (docs/directory-api.md): bearer token, JSON
//! entries, paging, import and export, and errors a person can act on.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::cli::Connection;

/// Most pages `list` follows before concluding that the server loops.
const MAX_PAGES: usize = 100_000;
/// Bound on one request (a 12,000-user import included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// An error answer of the API, `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    /// HTTP status.
    pub status: u16,
    /// Machine-readable code (`invalid`, `not_found`, …).
    pub code: String,
    /// One-line message.
    pub message: String,
    /// Every problem, for a 422.
    pub details: Vec<String>,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.status == 401 {
            write!(f, "token rejected by the directory (401 {})", self.code)?;
        } else {
            write!(f, "{} ({} {})", self.message, self.status, self.code)?;
        }
        for detail in &self.details {
            write!(f, "\n  - {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiFailure {}

impl ApiFailure {
    /// Reads an error body; anything else becomes the message.
    pub fn from_body(status: u16, body: &[u8]) -> ApiFailure {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let error = parsed.as_ref().and_then(|v| v.get("error"));
        let text = |name: &str| {
            error
                .and_then(|e| e.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let details = error
            .and_then(|e| e.get("details"))
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|d| d.as_str().map_or_else(|| d.to_string(), str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        ApiFailure {
            status,
            code: text("code").unwrap_or_else(|| "http_error".to_owned()),
            message: text("message")
                .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned()),
            details,
        }
    }
}

/// The outcome of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOutcome {
    /// Entries written.
    pub puts: u64,
    /// Entries deleted.
    pub deletes: u64,
    /// Store revision after the import.
    pub revision: u64,
}

/// The directory's REST API.
#[derive(Debug, Clone)]
pub struct DirectoryClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl DirectoryClient {
    /// A client for `connection` (reads `--token-file` now).
    pub fn new(connection: &Connection) -> anyhow::Result<DirectoryClient> {
        let token = match (&connection.token, &connection.token_file) {
            (Some(token), _) => Some(token.trim().to_owned()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the token file {}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let base = connection.server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--server must be an http:// or https:// URL, not {base:?}");
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(DirectoryClient { base, token, http })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        content_type: &str,
    ) -> anyhow::Result<(StatusCode, Vec<u8>)> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url).query(query);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                anyhow!(
                    "cannot reach the directory at {} ({e}); is it running? (--server or ${})",
                    self.base,
                    crate::cli::ENV_DIRECTORY_URL
                )
            } else {
                anyhow!("{method} {url} failed: {e}")
            }
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer to {method} {url}"))?;
        if !status.is_success() {
            let mut failure = ApiFailure::from_body(status.as_u16(), &bytes);
            if status == StatusCode::UNAUTHORIZED && self.token.is_none() {
                failure.details.push(format!(
                    "no token given: use --token, --token-file or ${}",
                    crate::cli::ENV_TOKEN
                ));
            }
            return Err(failure.into());
        }
        Ok((status, bytes.to_vec()))
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let body = body.map(serde_json::to_vec).transpose()?;
        let (_, bytes) = self
            .send(method, path, query, body, "application/json")
            .await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).context("the directory answered something that is not JSON")
    }

    /// Every entry of `kind` matching the prefixes, following `next_page_token` to the end.
    pub async fn list_all(
        &self,
        kind: &str,
        name_prefix: Option<&str>,
        number_prefix: Option<&str>,
        page_size: usize,
    ) -> anyhow::Result<Vec<Value>> {
        let page_size = page_size.to_string();
        let mut token = String::new();
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            let mut query = vec![("page_size", page_size.as_str())];
            if !token.is_empty() {
                query.push(("page_token", token.as_str()));
            }
            if let Some(prefix) = name_prefix {
                query.push(("name_prefix", prefix));
            }
            if let Some(prefix) = number_prefix {
                query.push(("number_prefix", prefix));
            }
            let page = self
                .json(Method::GET, &format!("/v1/{kind}"), &query, None)
                .await?;
            let (page_items, next) = parse_page(&page)?;
            items.extend(page_items);
            match next {
                Some(next) if next != token => token = next,
                Some(_) => bail!("the directory returned the same page token twice"),
                None => return Ok(items),
            }
        }
        bail!("more than {MAX_PAGES} pages of {kind}")
    }

    /// One entry.
    pub async fn get(&self, kind: &str, id: &str) -> anyhow::Result<Value> {
        self.json(Method::GET, &entry_path(kind, id), &[], None)
            .await
    }

    /// Creates an entry; returns it as stored.
    pub async fn create(&self, kind: &str, entry: &Value) -> anyhow::Result<Value> {
        self.json(Method::POST, &format!("/v1/{kind}"), &[], Some(entry))
            .await
    }

    /// Deletes an entry.
    pub async fn delete(&self, kind: &str, id: &str) -> anyhow::Result<()> {
        self.json(Method::DELETE, &entry_path(kind, id), &[], None)
            .await
            .map(drop)
    }

    /// Sends a bulk file.
    pub async fn import(
        &self,
        format: &str,
        mode: &str,
        kind: Option<&str>,
        file: Vec<u8>,
    ) -> anyhow::Result<ImportOutcome> {
        let mut query = vec![("format", format), ("mode", mode)];
        if let Some(kind) = kind {
            query.push(("kind", kind));
        }
        let content_type = if format == "csv" {
            "text/csv"
        } else {
            "application/yaml"
        };
        let (_, bytes) = self
            .send(Method::POST, "/v1/import", &query, Some(file), content_type)
            .await?;
        let value: Value = serde_json::from_slice(&bytes)
            .context("the directory answered the import with something that is not JSON")?;
        let field = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_u64)
                .ok_or_else(|| anyhow!("the import answer has no {name:?}: {value}"))
        };
        Ok(ImportOutcome {
            puts: field("puts")?,
            deletes: field("deletes")?,
            revision: field("revision")?,
        })
    }

    /// The directory (or one kind) as a bulk file.
    pub async fn export(&self, format: &str, kind: Option<&str>) -> anyhow::Result<Vec<u8>> {
        let mut query = vec![("format", format)];
        if let Some(kind) = kind {
            query.push(("kind", kind));
        }
        let (_, bytes) = self
            .send(Method::GET, "/v1/export", &query, None, "")
            .await?;
        Ok(bytes)
    }
}

fn entry_path(kind: &str, id: &str) -> String {
    format!("/v1/{kind}/{}", percent_encode(id))
}

/// Percent-encodes a path segment (ids may hold `+`, `@`, spaces in names…).
pub fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Splits a list answer into its items and the next page token (`None` on the last page).
pub fn parse_page(page: &Value) -> anyhow::Result<(Vec<Value>, Option<String>)> {
    let items = page
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("the list answer has no \"items\" array"))?
        .clone();
    let next = page
        .get("next_page_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    Ok((items, next))
}
