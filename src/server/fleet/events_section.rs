//! The fleet page's events section (issue 18): whether the outbound events
//! endpoint is enabled (or disabled by a 410 Gone), how many events wait
//! and how old the oldest is, and the events given up on, so undeliverable
//! events stay visible where operators look. Absent when `[events]` is not
//! configured.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::server::html::{age, escape};
use crate::store::{Store, StoreError};

/// Failed events listed on the page; `linkfresh events --failed` has all.
const FAILED_SHOWN: u32 = 10;

/// Writes the section into `body`.
pub(super) async fn events_section(
    body: &mut String,
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(endpoint) = store.event_endpoint().await? else {
        return Ok(());
    };
    let (pending, oldest) = store.pending_events().await?;
    let failed = store.list_events(true, FAILED_SHOWN).await?;
    body.push_str("<section id=\"events\"><h2>Events to the app</h2><p>");
    match &endpoint.disabled {
        Some(why) => {
            let _ = write!(
                body,
                "<b class=\"s-deleted\">Endpoint disabled</b>: {}; \
                 <code>linkfresh events --enable</code> sends again. ",
                escape(why)
            );
        }
        None => body.push_str("Endpoint enabled. "),
    }
    let _ = write!(
        body,
        "<b data-count=\"events-pending\">{pending}</b> pending"
    );
    if let Some(oldest) = oldest {
        let _ = write!(body, ", the oldest {} old", age(Some(now - oldest)));
    }
    body.push_str(".</p>");
    if !failed.is_empty() {
        body.push_str(
            "<table id=\"events-failed\"><tr><th>failed event</th><th>type</th>\
             <th>link</th><th>last error</th></tr>",
        );
        for e in &failed {
            let _ = write!(
                body,
                "<tr><td><code>{}</code></td><td>{}</td><td><a href=\"/links/{}\">{}</a></td><td>{}</td></tr>",
                escape(&e.id),
                escape(&e.kind),
                escape(&e.link),
                escape(&e.link),
                escape(e.last_error.as_deref().unwrap_or(""))
            );
        }
        body.push_str(
            "</table><p class=\"muted\"><code>linkfresh events --replay ID</code> queues one again.</p>",
        );
    }
    body.push_str("</section>");
    Ok(())
}
