//! Issue 14, item 6: every body the client reads from MoneyKit is capped.
//! A tiny local HTTP server answers with a body that never ends; a client
//! that buffered it all would wait for its request timeout (20 s here) and
//! grow without bound; a capped one stops reading and answers at once.

use std::time::Duration;

use linkfresh::domain::{LinkId, ProductSet};
use linkfresh::moneykit::{ApiError, AuthError, ClientConfig, MoneyKit, RefreshOutcome};
use linkfresh::secret::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How long a capped read may take: far below the 20 s request timeout.
const PROMPTLY: Duration = Duration::from_secs(5);

/// Serves `/auth/token` normally (unless `huge_token`) and answers every
/// other request with `status` and a chunked body that never ends.
async fn endless_server(status: &'static str, huge_token: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let token = head.starts_with(b"POST /auth/token ");
                if token && !huge_token {
                    let body = r#"{"access_token":"t","token_type":"bearer","expires_in":3600}"#;
                    let _ = sock
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                    return;
                }
                let status = if token { "200 OK" } else { status };
                let _ = sock
                    .write_all(
                        format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                            .as_bytes(),
                    )
                    .await;
                let chunk = format!("10000\r\n{}\r\n", "a".repeat(0x10000));
                // Until the client hangs up.
                while sock.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    format!("http://{addr}")
}

fn client(base_url: &str) -> MoneyKit {
    MoneyKit::new(ClientConfig {
        base_url: base_url.to_owned(),
        client_id: "id".into(),
        client_secret: Secret::new("secret"),
        api_version: "2023-02-18".into(),
        request_timeout: Duration::from_secs(20),
        scope: None,
    })
    .unwrap()
}

fn link() -> LinkId {
    LinkId::parse("mk_endless").unwrap()
}

#[tokio::test]
async fn a_202_with_an_endless_body_is_cut_at_the_cap_and_still_counts_as_sent() {
    let base = endless_server("202 Accepted", false).await;
    let products = ProductSet::parse_list("accounts").unwrap();
    let out = tokio::time::timeout(PROMPTLY, client(&base).refresh(&link(), products))
        .await
        .expect("the capped read answers long before the request timeout");
    assert!(
        matches!(out, RefreshOutcome::Accepted { link: None, .. }),
        "a 202 whose body is too large to read is still a requested refresh: {out:?}"
    );
    assert!(out.sent());
}

#[tokio::test]
async fn a_link_read_with_an_endless_body_is_an_unreadable_answer_naming_the_cap() {
    let base = endless_server("200 OK", false).await;
    let out = tokio::time::timeout(PROMPTLY, client(&base).get_link(&link()))
        .await
        .expect("the capped read answers long before the request timeout");
    match out {
        Err(ApiError::Malformed { status: 200, error }) => {
            assert!(error.contains("1 MiB"), "the error names the cap: {error}");
        }
        other => panic!("expected Malformed naming the cap, got {other:?}"),
    }
}

#[tokio::test]
async fn a_token_answer_with_an_endless_body_is_a_transient_auth_failure() {
    let base = endless_server("200 OK", true).await;
    let out = tokio::time::timeout(PROMPTLY, client(&base).ensure_token())
        .await
        .expect("the capped read answers long before the request timeout");
    match out {
        Err(e @ AuthError::Unavailable { .. }) => {
            assert!(!e.is_fatal());
            assert!(
                e.to_string().contains("1 MiB"),
                "the error names the cap: {e}"
            );
        }
        other => panic!("expected a transient auth failure, got {other:?}"),
    }
}
