//! The demo's built-in events receiver: verifies each delivery as an app
//! would (Standard Webhooks, the demo secret) and prints one `EVENT` line,
//! so `linkfresh demo` shows its events without any setup.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::task::JoinHandle;

use super::DEMO_SECRET;

/// Binds a loopback port and serves; returns the URL to configure.
pub async fn spawn() -> std::io::Result<(String, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/events", listener.local_addr()?);
    let app = Router::new().route("/events", post(receive));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, task))
}

async fn receive(headers: HeaderMap, body: Bytes) -> StatusCode {
    let Ok(hook) = standardwebhooks::Webhook::new(DEMO_SECRET) else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    if let Err(e) = hook.verify(&body, &headers) {
        println!("EVENT rejected: {e}");
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let data = &event["data"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    let now = chrono::Utc::now().format("%H:%M:%S");
    println!(
        "{now}  EVENT {:<22} {:<22} {:<14} {}",
        text(&event["type"]),
        text(&data["link_id"]),
        text(&data["product"]),
        text(&data["reason"]),
    );
    StatusCode::NO_CONTENT
}
