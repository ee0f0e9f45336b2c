//! The telemetry HTTP endpoints: `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::task::JoinHandle;

use crate::health::Readiness;
use crate::registry::Metrics;

#[derive(Debug, Clone)]
struct Endpoints {
    metrics: Metrics,
    readiness: Readiness,
}

/// The router (tested without a socket).
pub fn app(metrics: Metrics, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Endpoints { metrics, readiness })
}

async fn metrics_text(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        endpoints.metrics.encode(),
    )
}

async fn ready(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    let failing = endpoints.readiness.failing();
    if failing.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", failing.join(", ")),
        )
    }
}

/// Serves the endpoints on `listen` until the handle is aborted; returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    metrics: Metrics,
    readiness: Readiness,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let router = app(metrics, readiness);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::warn!(error = %e, "telemetry endpoints stopped");
        }
    });
    Ok((local, task))
}
