//! The policy's reasoning per link and product, in words and JSON: what
//! `status`, `explain`, the fleet page and the admin API all show, so the
//! four never disagree.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{LinkId, LinkState, Product};
use crate::policy::budget::{Budget, Candidate, Usage, allocate};
use crate::policy::cadences::resolve;
use crate::policy::demand::{activity_from_secs, activity_secs};
use crate::policy::phase::link_hash;
use crate::policy::{Evaluation, LinkSchedule, ProductState, Profiles, Rules, Why, evaluate};
use crate::store::{LinkRecord, Store, StoreError};

/// One product's line in `status --json`.
#[derive(Debug, Serialize)]
pub struct ProductStatus {
    /// The product.
    pub product: Product,
    /// Send time of our last request that may have reached MoneyKit.
    pub last_requested_at: Option<DateTime<Utc>>,
    /// Latest refreshed/attempted time the server reported.
    pub server_seen_at: Option<DateTime<Utc>>,
    /// End of its window.
    pub window_end: Option<DateTime<Utc>>,
    /// When it is due (None: parked or inactive).
    pub next_due_at: Option<DateTime<Utc>>,
    /// Why it is or is not sent now (`kind`, `until`, `with`).
    pub why: Why,
    /// The same, in words.
    pub why_text: String,
}

/// One link in `status --json`.
#[derive(Debug, Serialize)]
pub struct LinkStatus {
    /// The link id.
    pub link: LinkId,
    /// Its profile (`default` for `[defaults]`).
    pub profile: String,
    /// The owning app's last activity call.
    pub last_activity_at: Option<DateTime<Utc>>,
    /// Its state.
    pub state: LinkState,
    /// Why it is parked or paused, if it is.
    pub reason: Option<String>,
    /// Consecutive failures.
    pub failures: u32,
    /// Link-level backoff end.
    pub backoff_until: Option<DateTime<Utc>>,
    /// Per product.
    pub products: Vec<ProductStatus>,
}

/// A time as the human outputs print it (UTC).
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The reason in words, as `status` and `explain` print it.
pub fn why_text(why: &Why, state: LinkState, reason: Option<&str>, parked: Option<&str>) -> String {
    match why {
        Why::DueNow => "due now".into(),
        Why::Window { until } => format!("window until {}", fmt_time(*until)),
        Why::Cadence { until } => format!("cadence (every/cron) until {}", fmt_time(*until)),
        Why::Idle { until: Some(until) } => {
            format!(
                "idle (no activity within active_for) until {}",
                fmt_time(*until)
            )
        }
        Why::Idle { until: None } => "idle: refreshed only on demand (idle = never)".into(),
        Why::FirstPhase { until } => format!("first request phased to {}", fmt_time(*until)),
        Why::Backoff { until } => format!("backoff after rate_limit until {}", fmt_time(*until)),
        Why::LinkBackoff { until } => format!("backoff after failures until {}", fmt_time(*until)),
        Why::Coalescing { with, until } => {
            format!("coalescing with {with} until {}", fmt_time(*until))
        }
        Why::RidingAlong { until } => {
            format!("riding along with the next POST at {}", fmt_time(*until))
        }
        Why::Budget { until } => format!("waiting for budget until {}", fmt_time(*until)),
        Why::Parked => format!("parked: {}", parked.unwrap_or("forbidden")),
        Why::Inactive => match state {
            LinkState::Active => "removed from the configuration".into(),
            LinkState::Paused => "paused by an operator".into(),
            _ => format!("parked: {}", reason.unwrap_or(state.as_str())),
        },
    }
}

/// The policy's input for a stored link, as the daemon's table builds it
/// (times to the store's millisecond; a test in `daemon::table` holds the
/// two equal), so that what is explained is what the daemon decides.
pub(crate) fn schedule_of(rec: &LinkRecord, profiles: &Profiles) -> LinkSchedule {
    let (_, cadences) = resolve(rec.cadence.as_deref(), &rec.tags, profiles);
    LinkSchedule {
        hash: link_hash(&rec.id),
        first_seen_at: rec.created_at,
        runnable: rec.state == LinkState::Active && !rec.removed,
        backoff_until: rec.backoff_until,
        // Rounded as the daemon's table keeps it.
        last_activity_at: activity_from_secs(activity_secs(rec.last_activity_at)),
        products: rec
            .products
            .iter()
            .map(|p| {
                let stored = rec.schedules.iter().find(|s| s.product == p);
                ProductState {
                    product: p,
                    cadence: cadences[p.index()].clone(),
                    last_requested_at: to_ms(stored.and_then(|s| s.last_requested_at)),
                    server_seen_at: to_ms(
                        stored.and_then(|s| s.server_refreshed_at.max(s.server_attempted_at)),
                    ),
                    backoff_until: to_ms(stored.and_then(|s| s.backoff_until)),
                    parked: stored.is_some_and(|s| s.parked_reason.is_some()),
                    refresh_requested: stored.is_some_and(|s| s.refresh_requested),
                }
            })
            .collect(),
    }
}

/// A time truncated to the millisecond, the precision the table keeps.
fn to_ms(t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp_millis(t.timestamp_millis()))
}

/// Marks what is due now as waiting for budget until `until`: what the
/// daemon's budget gate does with a link the allocator defers (see
/// [`budget_hold`]).
pub fn hold_for_budget(status: &mut LinkStatus, until: DateTime<Utc>) {
    for p in status.products.iter_mut().filter(|p| p.why == Why::DueNow) {
        p.why = Why::Budget { until };
        p.why_text = why_text(&p.why, status.state, None, None);
    }
}

/// Whether the budget holds back a link whose products in `status` are due
/// now, and until when: the allocator asked about this link alone, given
/// the POSTs spent in the window (`usage`, from the store). Other links
/// due at the same moment may still take the budget first; this is what
/// the link meets on its own.
pub fn budget_hold(
    rec: &LinkRecord,
    priority: i32,
    status: &LinkStatus,
    budget: &Budget,
    usage: Usage<'_>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let due: Vec<&ProductStatus> = status
        .products
        .iter()
        .filter(|p| p.why == Why::DueNow)
        .collect();
    if due.is_empty() {
        return None;
    }
    let stale_since = due
        .iter()
        .map(|p| p.last_requested_at.max(p.server_seen_at))
        .try_fold(None::<DateTime<Utc>>, |oldest, t| {
            t.map(|t| Some(oldest.map_or(t, |o| o.min(t))))
        })
        .flatten();
    let on_demand = due.iter().any(|p| {
        rec.schedules
            .iter()
            .any(|s| s.product == p.product && s.refresh_requested)
    });
    let candidate = Candidate {
        on_demand,
        priority,
        stale_since,
    };
    allocate(budget, usage, now, &[candidate]).retry_at
}

/// The POSTs spent in the budget's window, as the store counts them (every
/// replica's), for [`budget_hold`].
pub async fn budget_usage(
    store: &dyn Store,
    budget: &Budget,
    now: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, u32)>, StoreError> {
    store
        .posts_since(now - budget.span(), budget.bucket(), None)
        .await
}

/// [`link_status`], with what is due now shown as waiting for budget when
/// the budget holds it back (`budget`: the cap and the POSTs spent).
pub fn link_status_within(
    rec: &LinkRecord,
    rules: &Rules,
    budget: Option<(&Budget, Usage<'_>)>,
    now: DateTime<Utc>,
) -> LinkStatus {
    let mut status = link_status(rec, rules, now);
    let priority = || {
        resolve(rec.cadence.as_deref(), &rec.tags, &rules.profiles)
            .0
            .priority
    };
    if let Some((budget, usage)) = budget
        && let Some(until) = budget_hold(rec, priority(), &status, budget, usage, now)
    {
        hold_for_budget(&mut status, until);
    }
    status
}

/// The policy's view of one stored link (`explain`, `status`, the fleet page
/// and the admin API all show this, so they never disagree).
pub fn link_status(rec: &LinkRecord, rules: &Rules, now: DateTime<Utc>) -> LinkStatus {
    let schedule = schedule_of(rec, &rules.profiles);
    let Evaluation { products, .. } = evaluate(&schedule, rules, now);
    let (profile, _) = resolve(rec.cadence.as_deref(), &rec.tags, &rules.profiles);
    LinkStatus {
        link: rec.id.clone(),
        profile: profile.name.to_string(),
        last_activity_at: rec.last_activity_at,
        state: rec.state,
        reason: rec.reason.clone(),
        failures: rec.failures,
        backoff_until: rec.backoff_until,
        products: products
            .iter()
            .zip(&schedule.products)
            .map(|(plan, state)| {
                let parked = rec
                    .schedules
                    .iter()
                    .find(|s| s.product == plan.product)
                    .and_then(|s| s.parked_reason.as_deref());
                ProductStatus {
                    product: plan.product,
                    last_requested_at: state.last_requested_at,
                    server_seen_at: state.server_seen_at,
                    window_end: plan.window_end,
                    next_due_at: plan.due_at,
                    why: plan.why,
                    why_text: why_text(&plan.why, rec.state, rec.reason.as_deref(), parked),
                }
            })
            .collect(),
    }
}
