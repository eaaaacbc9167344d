//! What a verified delivery says and what it changes in the store. Every
//! effect is safe to apply twice or out of order: server times are
//! max-merged by the store, and state changes are conditional.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;

use crate::domain::{LinkId, LinkState, Product};
use crate::moneykit::wire::parse_time;
use crate::store::{LinkPatch, ProductPatch, Store, StoreError};

/// The keys every MoneyKit webhook carries, plus the per-event ones this
/// receiver reads; the rest is ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope {
    pub webhook_event: String,
    pub webhook_idempotency_key: String,
    webhook_timestamp: serde_json::Value,
    #[serde(default)]
    link_id: Option<String>,
    #[serde(default)]
    product: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    state_changed_at: Option<String>,
    #[serde(default)]
    error_message: Option<String>,
    /// Every delivery carries the link's tags: how linkfresh learns that a
    /// user changed tier (the tags select the link's profile).
    #[serde(default)]
    link_tags: Option<Vec<String>>,
}

impl Envelope {
    /// `webhook_timestamp` as ISO-8601 (zone-less is UTC) or unix seconds.
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        match &self.webhook_timestamp {
            serde_json::Value::String(s) => parse_time(s),
            serde_json::Value::Number(n) => DateTime::from_timestamp(n.as_i64()?, 0),
            _ => None,
        }
    }

    /// A bounded label for metrics: the known event names, else `other`.
    pub fn event_label(&self) -> &'static str {
        match self.webhook_event.as_str() {
            PRODUCT_REFRESH => PRODUCT_REFRESH,
            STATE_CHANGED => STATE_CHANGED,
            TRANSACTIONS_UPDATES => TRANSACTIONS_UPDATES,
            _ => "other",
        }
    }
}

const PRODUCT_REFRESH: &str = "link.product_refresh";
const STATE_CHANGED: &str = "link.state_changed";
const TRANSACTIONS_UPDATES: &str = "transactions.updates_available";

/// What applying a delivery came to; the `result` label of the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The store changed (or was already at least as new).
    Applied,
    /// Nothing to do: unknown link, other event or state, irrelevant transition.
    Ignored,
}

impl Applied {
    pub fn label(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Ignored => "ignored",
        }
    }
}

/// Applies a verified delivery's effect. `Err` only when the store failed.
pub(crate) async fn apply(
    store: &dyn Store,
    env: &Envelope,
    now: DateTime<Utc>,
) -> Result<Applied, StoreError> {
    if env.webhook_event == TRANSACTIONS_UPDATES {
        metrics::counter!("linkfresh_webhook_transactions_updates_total").increment(1);
        return Ok(Applied::Applied);
    }
    let Some(link) = env.link_id.as_deref().and_then(|l| LinkId::parse(l).ok()) else {
        tracing::info!(event = %env.webhook_event, "webhook without a usable link_id; ignored");
        return Ok(Applied::Ignored);
    };
    if let Some(tags) = &env.link_tags {
        // Written only when they changed; the daemon re-resolves the
        // link's profile when it polls the change.
        store.set_tags(&link, tags).await?;
    }
    let patch = match env.webhook_event.as_str() {
        PRODUCT_REFRESH => product_refresh(env, &link),
        STATE_CHANGED => match state_changed(store, env, &link).await? {
            Some(p) => Some(p),
            None => return Ok(Applied::Ignored),
        },
        other => {
            tracing::info!(link = %link, event = other, "webhook event not used; ignored");
            None
        }
    };
    let Some(patch) = patch else {
        return Ok(Applied::Ignored);
    };
    if store.apply_patch(&link, &patch, now).await? {
        Ok(Applied::Applied)
    } else {
        tracing::info!(link = %link, event = %env.webhook_event, "webhook for a link linkfresh does not manage; ignored");
        Ok(Applied::Ignored)
    }
}

fn product_refresh(env: &Envelope, link: &LinkId) -> Option<LinkPatch> {
    let product = env.product.as_deref().and_then(|p| Product::parse(p).ok());
    let Some(product) = product else {
        tracing::info!(link = %link, product = ?env.product, "product_refresh for an unknown product; ignored");
        return None;
    };
    // The refresh happened when its state changed; a payload without that
    // time falls back to when the webhook was made.
    let at = env
        .state_changed_at
        .as_deref()
        .and_then(parse_time)
        .or_else(|| env.timestamp())?;
    let mut p = ProductPatch::default();
    match env.state.as_deref() {
        Some("completed") => p.server_refreshed_at = Some(at),
        Some("failed") => {
            tracing::warn!(
                link = %link,
                product = product.as_str(),
                error_message = env.error_message.as_deref().unwrap_or(""),
                "MoneyKit reports a failed product refresh"
            );
            p.server_attempted_at = Some(at);
        }
        _ => return None,
    }
    Some(LinkPatch {
        products: vec![(product, p)],
        ..LinkPatch::default()
    })
}

/// `connected` resumes a link parked as needs_user_action (and nothing
/// else: a paused link stays paused); `deleted` parks it.
async fn state_changed(
    store: &dyn Store,
    env: &Envelope,
    link: &LinkId,
) -> Result<Option<LinkPatch>, StoreError> {
    let state = match env.state.as_deref() {
        Some("connected") => {
            let parked = store
                .load_link(link)
                .await?
                .is_some_and(|l| l.state == LinkState::NeedsUserAction);
            if !parked {
                return Ok(None);
            }
            tracing::info!(link = %link, "link reconnected (webhook); resuming");
            (LinkState::Active, None)
        }
        Some("deleted") => {
            tracing::info!(link = %link, "link deleted (webhook); parking");
            (
                LinkState::Deleted,
                Some("MoneyKit webhook: link.state_changed to deleted".to_owned()),
            )
        }
        other => {
            tracing::info!(link = %link, state = ?other, "link state change not acted on");
            return Ok(None);
        }
    };
    Ok(Some(LinkPatch {
        state: Some(state),
        ..LinkPatch::default()
    }))
}

/// Whether `ts` lies within `tolerance` of `now`.
pub(crate) fn timely(ts: DateTime<Utc>, now: DateTime<Utc>, tolerance: TimeDelta) -> bool {
    (ts - now).abs() <= tolerance
}
