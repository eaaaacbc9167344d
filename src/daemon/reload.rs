//! Putting a configuration into the store: the configured links as the
//! store's [`LinkSpec`]s (at start, on reload, and in the one-shot commands),
//! and [`reload`], which re-reads the file when the composition root
//! forwards a SIGHUP or a change of the config folder.

use std::path::Path;
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::{self, LinkConfig};
use crate::policy::Rules;
use crate::store::{LinkSource, LinkSpec, Store, SyncReport};

/// What a reload produced for the loop.
pub(crate) struct Reloaded {
    /// New policy rules.
    pub rules: Rules,
    /// The new `[budget]`.
    pub budget: Option<config::BudgetConfig>,
}

/// The store's view of the configured links. Takes them rather than
/// copying them: with a million links the copies were a hundred megabytes
/// more at the start-up peak (`std::mem::take(&mut config.links)`).
pub(crate) fn link_specs(links: Vec<LinkConfig>) -> Vec<LinkSpec> {
    links
        .into_iter()
        .map(|l| LinkSpec {
            cadence: l.cadence_json(),
            products: l.products,
            source: LinkSource::Config,
            id: l.id,
        })
        .collect()
}

/// Says so when a sync was refused because another replica synced a newer
/// config (a rolling update in progress): this replica keeps scheduling the
/// link set the store holds, which is the newer one.
pub(crate) fn log_if_behind(report: &SyncReport, number: i64) {
    if let Some(newer) = report.behind {
        tracing::warn!(
            revision = number,
            stored_revision = newer,
            "this replica's config is behind: the store holds the links of revision {newer}, newer than this config's revision {number}; not overwriting them (update this replica's config)"
        );
    }
}

/// Re-reads the config and syncs it into the store; returns the new rules,
/// or `None` (the running configuration is kept) when the new one is
/// invalid or the sync fails. The synced links are then streamed in pages by
/// the [`loader`](super::loader), as at start, not loaded whole: a million
/// links loaded at once held the records beside the table (hundreds of
/// megabytes more) and stalled the loop until the last one was read.
pub(crate) async fn reload(path: &Path, store: &Arc<dyn Store>, clock: Clock) -> Option<Reloaded> {
    crate::notify::reloading();
    let mut config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "reload rejected: keeping the running configuration");
            crate::notify::ready();
            return None;
        }
    };
    let specs = link_specs(std::mem::take(&mut config.links));
    let result = store
        .sync_config_numbered(
            config.revision_number,
            &config.revision,
            &specs,
            clock.now(),
        )
        .await;
    drop(specs);
    if let Ok(report) = &result {
        log_if_behind(report, config.revision_number);
    }
    crate::notify::ready();
    match result {
        Ok(report) => {
            tracing::info!(
                added = report.added,
                removed = report.removed,
                changed = report.changed,
                "configuration reloaded"
            );
            Some(Reloaded {
                rules: config.rules,
                budget: config.budget,
            })
        }
        Err(e) => {
            tracing::error!(error = %e, "reload failed in the store: keeping the running configuration");
            None
        }
    }
}
