//! Link discovery (`[discovery] enabled = true`): every `every`, page
//! through MoneyKit's `GET /links` and keep every link of the application
//! fresh without listing ids in the configuration. New links are stored as
//! [`LinkSource::Discovery`] with the `[discovery] products` (through
//! `upsert_link`, so the running scheduler picks them up within a second).
//! A discovered link missing from a *complete* listing is parked only after
//! `GET /links/{id}` confirms it is gone (404 → `not_found`, 410 → `deleted`):
//! listings can lag, and parking a live link would stop its refreshes.
//! Links the config file or the admin API manage are never touched.
//!
//! Requests go through the daemon's shared rate limiter, so discovery never
//! pushes the process over `max_requests_per_second`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::limiter::Limiter;
use crate::clock::Clock;
use crate::config::DiscoveryConfig;
use crate::domain::{LinkId, LinkState};
use crate::moneykit::{ApiError, MoneyKit};
use crate::store::fleet::LinkSummary;
use crate::store::{LinkPatch, LinkSource, LinkSpec, Store, StoreError};

/// Links per `GET /links` page (MoneyKit accepts 500 to 5000).
pub const PAGE_SIZE: u32 = 500;

/// What one pass did, for the log and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Links the listing returned.
    pub listed: usize,
    /// New (or returning) links stored as discovered.
    pub added: usize,
    /// Discovered links whose products changed (or that were un-parked).
    pub updated: usize,
    /// Discovered links parked because MoneyKit confirmed them gone.
    pub parked: usize,
    /// Listed links skipped by the `tags` filter.
    pub filtered: usize,
}

/// Why a pass stopped early; nothing is parked after a failed listing.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// `GET /links` failed part-way.
    #[error("listing links failed")]
    List(#[source] ApiError),
    /// The store failed.
    #[error("the store failed")]
    Store(#[from] StoreError),
    /// Shutdown began.
    #[error("cancelled")]
    Cancelled,
}

/// The discovery task's handles.
pub struct Discovery {
    /// Where links are stored.
    pub store: Arc<dyn Store>,
    /// MoneyKit.
    pub client: MoneyKit,
    /// The daemon's limiter, shared.
    pub limiter: Limiter,
    /// `[discovery]`.
    pub config: DiscoveryConfig,
    /// The daemon's clock.
    pub clock: Clock,
}

impl Discovery {
    /// Runs a pass every `every` until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.pass(&cancel).await {
                Ok(r) => tracing::info!(
                    listed = r.listed,
                    added = r.added,
                    updated = r.updated,
                    parked = r.parked,
                    filtered = r.filtered,
                    "discovery pass"
                ),
                Err(DiscoveryError::Cancelled) => return,
                Err(e) => {
                    tracing::warn!(error = %e, cause = ?std::error::Error::source(&e).map(|c| c.to_string()), "discovery pass failed; retrying next time")
                }
            }
        }
    }

    async fn limited<T>(
        &self,
        cancel: &CancellationToken,
        call: impl Future<Output = T>,
    ) -> Result<T, DiscoveryError> {
        tokio::select! {
            () = cancel.cancelled() => Err(DiscoveryError::Cancelled),
            () = self.limiter.acquire() => Ok(call.await),
        }
    }

    /// Lists every link once and reconciles the store with the listing.
    pub async fn pass(&self, cancel: &CancellationToken) -> Result<PassReport, DiscoveryError> {
        let mut listed: Vec<String> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .limited(cancel, self.client.list_links(cursor.as_deref(), PAGE_SIZE))
                .await?
                .map_err(DiscoveryError::List)?;
            listed.extend(page.links.into_iter().map(|l| l.link_id));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let mut report = PassReport {
            listed: listed.len(),
            ..PassReport::default()
        };
        let stored: HashMap<String, LinkSummary> = self
            .store
            .link_summaries()
            .await?
            .into_iter()
            .map(|s| (s.id.as_str().to_owned(), s))
            .collect();
        let mut seen: HashSet<&str> = HashSet::with_capacity(listed.len());
        for raw in &listed {
            if !seen.insert(raw.as_str()) {
                continue;
            }
            let Ok(id) = LinkId::parse(raw) else {
                tracing::warn!(link = %raw, "GET /links listed an unusable link id; skipped");
                continue;
            };
            let action = match stored.get(raw.as_str()) {
                None => Some(true),
                Some(s) if s.removed => (s.source != LinkSource::Api).then_some(true),
                Some(s) if s.source == LinkSource::Discovery => (s.products
                    != self.config.products
                    || matches!(s.state, LinkState::NotFound | LinkState::Deleted))
                .then_some(false),
                Some(_) => None,
            };
            let Some(new) = action else { continue };
            if new && !self.tags_match(cancel, &id).await? {
                report.filtered += 1;
                continue;
            }
            let spec = LinkSpec {
                id,
                products: self.config.products,
                cadence: None,
                source: LinkSource::Discovery,
            };
            self.store.upsert_link(&spec, self.clock.now()).await?;
            if new {
                report.added += 1;
            } else {
                report.updated += 1;
            }
        }
        for s in stored.values() {
            if s.source != LinkSource::Discovery
                || s.removed
                || matches!(s.state, LinkState::NotFound | LinkState::Deleted)
                || seen.contains(s.id.as_str())
            {
                continue;
            }
            if self.confirm_gone(cancel, s).await? {
                report.parked += 1;
            }
        }
        Ok(report)
    }

    /// With a `tags` filter, reads the link to see its tags.
    async fn tags_match(
        &self,
        cancel: &CancellationToken,
        id: &LinkId,
    ) -> Result<bool, DiscoveryError> {
        if self.config.tags.is_empty() {
            return Ok(true);
        }
        match self.limited(cancel, self.client.get_link(id)).await? {
            Ok(link) => Ok(link.link_tags.iter().any(|t| self.config.tags.contains(t))),
            Err(e) => {
                tracing::warn!(link = %id, error = %e, "could not read a listed link's tags; trying next pass");
                Ok(false)
            }
        }
    }

    /// Parks a discovered link that MoneyKit says is gone; true if parked.
    async fn confirm_gone(
        &self,
        cancel: &CancellationToken,
        s: &LinkSummary,
    ) -> Result<bool, DiscoveryError> {
        let (state, reason) = match self.limited(cancel, self.client.get_link(&s.id)).await? {
            Err(ApiError::NotFound) => (
                LinkState::NotFound,
                "not_found: gone from GET /links and GET /links/{id} answered 404",
            ),
            Err(ApiError::Deleted) => (
                LinkState::Deleted,
                "deleted: gone from GET /links and GET /links/{id} answered 410",
            ),
            Ok(_) => return Ok(false),
            Err(e) => {
                tracing::warn!(link = %s.id, error = %e, "could not confirm a vanished link; trying next pass");
                return Ok(false);
            }
        };
        let patch = LinkPatch {
            state: Some((state, Some(reason.to_owned()))),
            ..LinkPatch::default()
        };
        tracing::info!(link = %s.id, state = %state, "discovery: link gone; parked");
        Ok(self
            .store
            .apply_patch(&s.id, &patch, self.clock.now())
            .await?)
    }
}
