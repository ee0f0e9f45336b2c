//! `/metrics`, `/healthz` and `/readyz` through the router, without a socket.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use telemetry::{Metrics, Readiness};
use tower::ServiceExt as _;

async fn get(app: &axum::Router, path: &str) -> (StatusCode, String) {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn readiness_follows_its_conditions_and_metrics_are_served() {
    let metrics = Metrics::new("edge");
    let readiness = Readiness::new(&["bus", "store"], Some(&metrics));
    let app = telemetry::http::app(metrics.clone(), readiness.clone());

    assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
    let (status, body) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "not ready: bus, store\n");
    let text = get(&app, "/metrics").await.1;
    assert!(text.contains("calanque_ready 0"), "{text}");
    // Each condition on its own, so that a dashboard says why.
    for condition in ["bus", "store"] {
        let series = format!(r#"calanque_ready_condition{{condition="{condition}"}} 0"#);
        assert!(text.contains(&series), "{series} in {text}");
    }

    readiness.set("bus", true);
    readiness.set("store", true);
    assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
    let (status, body) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("calanque_ready 1"), "{body}");
    assert!(body.contains(r#"service="edge""#), "{body}");

    assert!(
        body.contains(r#"calanque_ready_condition{condition="store"} 1"#),
        "{body}"
    );

    // A dependency lost: not ready again.
    readiness.set("store", false);
    let text = get(&app, "/metrics").await.1;
    assert!(
        text.contains(r#"calanque_ready_condition{condition="store"} 0"#)
            && text.contains(r#"calanque_ready_condition{condition="bus"} 1"#),
        "{text}"
    );
    assert_eq!(
        get(&app, "/readyz").await,
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: store\n".into())
    );
}
