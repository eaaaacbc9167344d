//! Applying what comes back from the dispatcher: a POST's answer through
//! [`resolve`], a read's through [`resolve_read`], a job that was not sent
//! (a refused claim reloads the link), and the activity line of each.

use chrono::{DateTime, TimeDelta, Utc};

use super::Scheduler;
use crate::daemon::Activity;
use crate::daemon::dispatch::{Done, NotSentReason, ReadPurpose};
use crate::daemon::outcome::resolve;
use crate::daemon::read_outcome::{read_label, resolve_read};
use crate::daemon::writer::Write;
use crate::policy::{Decision, decide};
use crate::store::{LinkPatch, Outcome};

impl Scheduler {
    /// Applies a finished job: a POST's answer (see [`resolve`]), a read's,
    /// or a job that was not sent.
    pub(super) fn on_done(&mut self, done: Done) {
        let now = self.clock.now();
        let idx = match &done {
            Done::Refresh { idx, .. } | Done::Read { idx, .. } | Done::NotSent { idx, .. } => *idx,
        };
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.table.get(idx).is_vacant() {
            // Never: a link in flight is not released. Nothing to apply.
            return;
        }
        self.table.get_mut(idx).in_flight = false;
        self.apply(done, now);
        // Dropped with its partition while in flight: its answer is
        // recorded above, its slot is free now.
        self.release_if_dropped(idx);
    }

    fn apply(&mut self, done: Done, now: DateTime<Utc>) {
        match done {
            Done::Refresh {
                idx,
                products,
                due_at,
                attempt,
                sent_at,
                received_at,
                outcome,
            } => {
                let entry = self.table.get_mut(idx);
                let r = resolve(entry, products, sent_at, received_at, &outcome, &self.rules);
                let link = entry.id.clone();
                for p in r.counted.iter() {
                    metrics::counter!(crate::metrics::PRODUCTS_REQUESTED_TOTAL, "product" => p.as_str()).increment(1);
                }
                if !r.counted.is_empty() {
                    metrics::histogram!(crate::metrics::DUE_LAG_SECONDS)
                        .record(((sent_at - due_at).num_milliseconds().max(0)) as f64 / 1000.0);
                }
                let link_hash = entry.hash;
                if r.rate_limited {
                    metrics::counter!(crate::metrics::RATE_LIMITED_TOTAL).increment(1);
                    self.limiter.on_rate_limited(link_hash);
                }
                if let Some(msg) = &r.fatal {
                    tracing::error!(link = %link, error = %msg, "fatal answer from MoneyKit; stopping");
                    if let Ok(mut f) = self.heartbeat.fatal.lock() {
                        *f = Some(msg.clone());
                    }
                }
                tracing::info!(link = %link, products = %products, outcome = %r.label, status = ?r.status, detail = ?r.detail, "refresh");
                let (label, detail) = (r.label.clone(), r.detail.clone());
                let _ = self.writes.send(Write::Outcome(Outcome {
                    attempt,
                    link: link.clone(),
                    label: r.label,
                    status: r.status,
                    detail: r.detail,
                    at: received_at,
                    patch: r.patch,
                }));
                self.consider(idx, now);
                self.report(idx, products.to_list(), label, detail);
            }
            Done::Read {
                idx,
                purpose,
                received_at,
                outcome,
            } => {
                self.on_read(idx, purpose, received_at, *outcome);
                self.consider(idx, now);
            }
            Done::NotSent {
                idx,
                reason: NotSentReason::ClaimedElsewhere,
            } => {
                tracing::debug!(link = %self.table.get(idx).id, "claimed by another replica; reloading");
                self.refused.push(idx);
            }
            Done::NotSent {
                idx,
                reason: NotSentReason::NotHeld,
            } => {
                // Dropped with its partition, or the hold is uncertain
                // until the next heartbeat: decide again then.
                tracing::debug!(link = %self.table.get(idx).id, "partition not held; not sent");
                if !self.table.get(idx).removed {
                    self.timer
                        .schedule(&mut self.table, idx, now + TimeDelta::seconds(1));
                }
            }
            Done::NotSent { idx, reason } => {
                tracing::warn!(link = %self.table.get(idx).id, %reason, "request not sent");
                self.timer
                    .schedule(&mut self.table, idx, now + TimeDelta::seconds(1));
            }
        }
    }

    /// Applies a `GET /links/{id}` (see [`resolve_read`]).
    pub(super) fn on_read(
        &mut self,
        idx: usize,
        purpose: ReadPurpose,
        received_at: DateTime<Utc>,
        outcome: crate::moneykit::LinkOutcome,
    ) {
        let entry = self.table.get_mut(idx);
        let learned_tags = outcome.as_ref().ok().map(|l| l.link_tags.clone());
        let patch = resolve_read(entry, purpose, received_at, outcome, &self.rules);
        let link = entry.id.clone();
        if let Some(tags) = learned_tags {
            self.learned_tags(idx, &tags);
        }
        if patch != LinkPatch::default() {
            let _ = self.writes.send(Write::Patch(link, patch));
        }
        self.report(idx, String::new(), read_label(purpose).to_owned(), None);
    }

    pub(super) fn report(
        &self,
        idx: usize,
        products: String,
        label: String,
        detail: Option<String>,
    ) {
        let Some(tx) = &self.activity else { return };
        let e = self.table.get(idx);
        let next_due = match decide(&e.schedule(), &self.rules, self.clock.now()) {
            Decision::Wait { until } => Some(until),
            Decision::Send { .. } => Some(self.clock.now()),
            Decision::Idle => None,
        };
        let _ = tx.send(Activity {
            link: e.id.clone(),
            products,
            outcome: label,
            detail,
            state: e.state,
            next_due,
        });
    }
}
