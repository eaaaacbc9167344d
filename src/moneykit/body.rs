//! Reading a response body from MoneyKit with a cap. A link object is a few
//! KiB and a page of links a few MiB at most, but nothing stops a broken or
//! hostile server (or a proxy in between) from sending more: a 202 with a
//! 200 MB body took the daemon from 30 MB to 690 MB. Every body the daemon
//! reads from MoneyKit (API answers, tokens, the webhook JWKS) goes through
//! [`read_capped`], which stops reading past the cap instead of buffering it.

use http_body_util::{BodyExt, LengthLimitError, Limited};

/// The most the daemon reads of one answer to a single-object request
/// (a link, a token, the JWKS): a link object is a few KiB, so 1 MiB is
/// hundreds of times what MoneyKit sends and still nothing for memory.
pub(crate) const MAX_BODY: usize = 1024 * 1024;

/// The most the daemon reads of one page of `GET /links` (at most 5,000
/// links of well under 1 KiB each on the wire).
pub(crate) const MAX_PAGE_BODY: usize = 16 * 1024 * 1024;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// More than `cap` bytes: the rest was not read.
    #[error("the response body is larger than {}; stopped reading it", human(*.0))]
    TooLarge(usize),
    /// The transport failed while reading.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
    /// Anything else the body reported (not expected from reqwest).
    #[error("could not read the response body: {0}")]
    Other(String),
}

/// `1 MiB`, `16 MiB`: how the cap is named in errors.
fn human(bytes: usize) -> String {
    if bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{bytes} bytes")
    }
}

/// Reads the whole body of `resp`, or fails as soon as it passes `cap`
/// bytes (a `Content-Length` over the cap fails before anything is read).
/// `http_body_util::Limited` does the counting; reqwest has no such setting.
pub(crate) async fn read_capped(resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(BodyError::TooLarge(cap));
    }
    let body = axum::http::Response::from(resp).into_body();
    match Limited::new(body, cap).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge(cap)),
        Err(e) => match e.downcast::<reqwest::Error>() {
            Ok(e) => Err(BodyError::Transport(*e)),
            Err(e) => Err(BodyError::Other(e.to_string())),
        },
    }
}
