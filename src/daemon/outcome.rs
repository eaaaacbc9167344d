//! What each answer to a refresh POST does to a link: a pure function from
//! (link, products, times, answer) to the new in-memory state and the patch
//! the store must record. Kept apart from the I/O so every branch of
//! DESIGN.md's semantics is tested without a network.

use chrono::{DateTime, Utc};

use super::parked::Parked;
use super::table::Entry;
use crate::domain::ProductSet;
use crate::moneykit::RefreshOutcome;
use crate::policy::Rules;
use crate::policy::backoff::backoff_delay;
use crate::policy::phase::mix64;
use crate::store::{LinkPatch, ProductPatch};

/// The effect of one answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// What the store must record.
    pub patch: LinkPatch,
    /// Short outcome label for history and logs (`accepted`, `rate_limited`, ...).
    pub label: String,
    /// HTTP status, when there was one.
    pub status: Option<u16>,
    /// Human detail for history and logs.
    pub detail: Option<String>,
    /// Products now counted as requested.
    pub counted: ProductSet,
    /// Set when the daemon must stop (bad credentials).
    pub fatal: Option<String>,
    /// A 429: feeds the global slow-down.
    pub rate_limited: bool,
}

/// Applies `outcome` of a POST of `products` sent at `sent_at` to `entry`.
pub fn resolve(
    entry: &mut Entry,
    products: ProductSet,
    sent_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    outcome: &RefreshOutcome,
    rules: &Rules,
) -> Resolution {
    let mut r = Resolution {
        patch: LinkPatch::default(),
        label: String::new(),
        status: None,
        detail: None,
        counted: ProductSet::EMPTY,
        fatal: None,
        rate_limited: false,
    };
    match outcome {
        RefreshOutcome::Accepted {
            link,
            rate_limited_products,
        } => {
            r.label = if link.is_some() {
                "accepted".into()
            } else {
                "accepted_unreadable".into()
            };
            r.status = Some(202);
            let refused = products
                .iter()
                .filter(|p| rate_limited_products.contains(*p));
            for p in refused.collect::<Vec<_>>() {
                let i = p.index();
                entry.product_failures[i] = entry.product_failures[i].saturating_add(1);
                let until = received_at
                    + backoff_delay(
                        rules.backoff_base,
                        rules.backoff_max,
                        entry.product_failures[i].into(),
                        mix64(entry.hash ^ i as u64),
                    );
                let prev = entry.product_mut(p).map(|s| {
                    s.set_backoff_until(Some(until));
                    s.last_requested_at()
                });
                r.patch.products.push((
                    p,
                    ProductPatch {
                        last_requested_at: prev,
                        backoff_until: Some(Some(until)),
                        ..ProductPatch::default()
                    },
                ));
            }
            let accepted = ProductSet::from_iter(
                products
                    .iter()
                    .filter(|p| !rate_limited_products.contains(*p)),
            );
            for p in accepted.iter() {
                entry.product_failures[p.index()] = 0;
                let server = link.as_ref().and_then(|l| l.product(p));
                let (refreshed, attempted) = (
                    server.and_then(|s| s.refreshed_at),
                    server.and_then(|s| s.last_attempted_at),
                );
                if let Some(s) = entry.product_mut(p) {
                    s.set_last_requested_at(Some(sent_at));
                    s.saw_server_time(refreshed.max(attempted));
                    s.refresh_requested = false;
                    s.set_backoff_until(None);
                }
                r.patch.products.push((
                    p,
                    ProductPatch {
                        last_requested_at: Some(Some(sent_at)),
                        server_refreshed_at: refreshed,
                        server_attempted_at: attempted,
                        backoff_until: Some(None),
                        refresh_requested: Some(false),
                        failures: Some(0),
                        ..ProductPatch::default()
                    },
                ));
            }
            r.counted = accepted;
            entry.isolate =
                ProductSet::from_iter(entry.isolate.iter().filter(|p| !accepted.contains(*p)));
            if !rate_limited_products.is_empty() {
                r.detail = Some(format!("rate_limit reported for {rate_limited_products}"));
            }
            succeed(entry, &mut r);
        }
        RefreshOutcome::RateLimited { retry_after } => {
            r.label = "rate_limited".into();
            r.status = Some(429);
            r.rate_limited = true;
            let until_server = retry_after.map(|ra| ra.until(received_at));
            r.detail = until_server.map(|u| format!("Retry-After until {u}"));
            fail(entry, &mut r, rules, received_at, until_server);
        }
        RefreshOutcome::Forbidden { message } => {
            r.label = "forbidden".into();
            r.status = Some(403);
            r.detail = Some(message.clone());
            r.patch.restore_requested = true;
            let named: ProductSet = products
                .iter()
                .filter(|p| message.contains(p.as_str()))
                .collect();
            let culprits = if products.len() == 1 { products } else { named };
            if culprits.is_empty() {
                // Which product is not granted is unknown: send them one at a
                // time until the 403 names itself (costs a few POSTs, once).
                entry.isolate = products;
            } else {
                for p in culprits.iter() {
                    if let Some(s) = entry.product_mut(p) {
                        s.parked = true;
                    }
                    r.patch.products.push((
                        p,
                        ProductPatch {
                            parked_reason: Some(Some(format!("forbidden: {message}"))),
                            ..ProductPatch::default()
                        },
                    ));
                }
                entry.isolate =
                    ProductSet::from_iter(entry.isolate.iter().filter(|p| !culprits.contains(*p)));
            }
        }
        RefreshOutcome::NotFound => park(entry, &mut r, &Parked::NotFound),
        RefreshOutcome::Deleted => park(entry, &mut r, &Parked::Deleted),
        RefreshOutcome::BadState { link_error_code } => {
            let code = link_error_code.clone();
            park(entry, &mut r, &Parked::NeedsUserAction { code });
            entry.recheck_at = Some(received_at + rules.backoff_max);
        }
        RefreshOutcome::Auth(e) => {
            r.label = "auth_error".into();
            r.detail = Some(e.to_string());
            if e.is_fatal() {
                r.fatal = Some(e.to_string());
                r.patch.restore_requested = true;
            } else {
                fail(entry, &mut r, rules, received_at, None);
            }
        }
        RefreshOutcome::Connection { error } => {
            r.label = "connection_error".into();
            r.detail = Some(error.clone());
            fail(entry, &mut r, rules, received_at, None);
        }
        RefreshOutcome::ServerError { status } | RefreshOutcome::Unexpected { status } => {
            r.label = if matches!(outcome, RefreshOutcome::ServerError { .. }) {
                "server_error".into()
            } else {
                "unexpected_status".into()
            };
            r.status = Some(*status);
            counted_fail(entry, &mut r, rules, products, sent_at, received_at);
        }
        RefreshOutcome::Timeout => {
            r.label = "timeout".into();
            counted_fail(entry, &mut r, rules, products, sent_at, received_at);
        }
        RefreshOutcome::Interrupted { error } => {
            r.label = "interrupted".into();
            r.detail = Some(error.clone());
            counted_fail(entry, &mut r, rules, products, sent_at, received_at);
        }
    }
    r
}

fn succeed(entry: &mut Entry, r: &mut Resolution) {
    entry.failures = 0;
    entry.backoff_until = None;
    r.patch.failures = Some(0);
    r.patch.backoff_until = Some(None);
}

/// Not counted as sent: the saved request times go back, the link backs off.
fn fail(
    entry: &mut Entry,
    r: &mut Resolution,
    rules: &Rules,
    now: DateTime<Utc>,
    at_least: Option<DateTime<Utc>>,
) {
    r.patch.restore_requested = true;
    back_off(entry, r, rules, now, at_least);
}

/// May have reached MoneyKit (5xx, timeout): counted as sent, and backed off.
fn counted_fail(
    entry: &mut Entry,
    r: &mut Resolution,
    rules: &Rules,
    products: ProductSet,
    sent_at: DateTime<Utc>,
    now: DateTime<Utc>,
) {
    for p in products.iter() {
        if let Some(s) = entry.product_mut(p) {
            s.set_last_requested_at(Some(sent_at));
        }
        r.patch.products.push((
            p,
            ProductPatch {
                last_requested_at: Some(Some(sent_at)),
                ..ProductPatch::default()
            },
        ));
    }
    r.counted = products;
    back_off(entry, r, rules, now, None);
}

fn back_off(
    entry: &mut Entry,
    r: &mut Resolution,
    rules: &Rules,
    now: DateTime<Utc>,
    at_least: Option<DateTime<Utc>>,
) {
    entry.failures = entry.failures.saturating_add(1);
    let until = (now
        + backoff_delay(
            rules.backoff_base,
            rules.backoff_max,
            entry.failures,
            entry.hash,
        ))
    .max(at_least.unwrap_or(now));
    entry.backoff_until = Some(until);
    r.patch.failures = Some(entry.failures);
    r.patch.backoff_until = Some(Some(until));
}

fn park(entry: &mut Entry, r: &mut Resolution, parked: &Parked) {
    let (state, reason) = (parked.state(), parked.reason());
    r.label = state.as_str().into();
    r.status = Some(parked.status());
    r.detail = Some(reason.clone());
    r.patch.restore_requested = true;
    r.patch.state = Some((state, Some(reason)));
    entry.state = state;
}

/// The products that go in the next POST of `entry` given the policy's
/// batch: all of it, unless an ambiguous 403 left suspects to isolate.
pub fn narrow_for_isolation(entry: &Entry, batch: ProductSet) -> ProductSet {
    match batch.iter().find(|p| entry.isolate.contains(*p)) {
        Some(suspect) if batch.len() > 1 => ProductSet::of(suspect),
        _ => batch,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::daemon::table::fresh_record;
    use crate::domain::LinkState;
    use crate::retry_after::RetryAfter;

    fn entry(products: &str) -> Entry {
        Entry::from_record(&fresh_record("mk_t", products), Default::default())
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn a_429_is_not_counted_and_waits_at_least_the_retry_after() {
        let mut e = entry("accounts");
        let ra = RetryAfter::Delay(TimeDelta::hours(2));
        let r = resolve(
            &mut e,
            ProductSet::parse_list("accounts").unwrap(),
            t(0),
            t(1),
            &RefreshOutcome::RateLimited {
                retry_after: Some(ra),
            },
            &Rules::default(),
        );
        assert!(r.rate_limited && r.patch.restore_requested && r.counted.is_empty());
        assert_eq!(e.backoff_until, Some(t(1) + TimeDelta::hours(2)));
        assert_eq!(e.products[0].last_requested_at(), None);
    }

    #[test]
    fn a_product_rate_limited_inside_a_202_alone_is_rescheduled() {
        let mut e = entry("accounts,transactions");
        let both = ProductSet::parse_list("accounts,transactions").unwrap();
        let outcome = RefreshOutcome::Accepted {
            link: None,
            rate_limited_products: ProductSet::parse_list("transactions").unwrap(),
        };
        let r = resolve(&mut e, both, t(0), t(1), &outcome, &Rules::default());
        assert_eq!(r.counted, ProductSet::parse_list("accounts").unwrap());
        assert_eq!(e.products[0].last_requested_at(), Some(t(0)));
        assert_eq!(e.products[1].last_requested_at(), None);
        assert!(e.products[1].backoff_until().is_some_and(|b| b > t(1)));
        assert_eq!(e.backoff_until, None, "the link itself is fine");
    }

    #[test]
    fn an_ambiguous_403_isolates_the_products_and_a_named_one_parks_only_it() {
        let mut e = entry("accounts,identity");
        let both = ProductSet::parse_list("accounts,identity").unwrap();
        resolve(
            &mut e,
            both,
            t(0),
            t(1),
            &RefreshOutcome::Forbidden {
                message: "nope".into(),
            },
            &Rules::default(),
        );
        assert_eq!(e.isolate, both);
        assert_eq!(narrow_for_isolation(&e, both).len(), 1);
        resolve(
            &mut e,
            both,
            t(2),
            t(3),
            &RefreshOutcome::Forbidden {
                message: "Permission not granted for: identity".into(),
            },
            &Rules::default(),
        );
        assert!(e.products[1].parked && !e.products[0].parked);
        assert_eq!(e.isolate, ProductSet::parse_list("accounts").unwrap());
    }

    #[test]
    fn server_errors_and_timeouts_count_as_sent_and_back_off() {
        for outcome in [
            RefreshOutcome::ServerError { status: 503 },
            RefreshOutcome::Timeout,
        ] {
            let mut e = entry("accounts");
            let r = resolve(
                &mut e,
                ProductSet::parse_list("accounts").unwrap(),
                t(0),
                t(1),
                &outcome,
                &Rules::default(),
            );
            assert_eq!(e.products[0].last_requested_at(), Some(t(0)), "{outcome:?}");
            assert!(!r.patch.restore_requested && e.failures == 1 && e.backoff_until.is_some());
        }
    }

    #[test]
    fn not_found_deleted_and_bad_state_park_the_link() {
        for (outcome, state) in [
            (RefreshOutcome::NotFound, LinkState::NotFound),
            (RefreshOutcome::Deleted, LinkState::Deleted),
            (
                RefreshOutcome::BadState {
                    link_error_code: Some("auth_expired".into()),
                },
                LinkState::NeedsUserAction,
            ),
        ] {
            let mut e = entry("accounts");
            let r = resolve(
                &mut e,
                ProductSet::parse_list("accounts").unwrap(),
                t(0),
                t(1),
                &outcome,
                &Rules::default(),
            );
            assert_eq!(e.state, state);
            assert!(!e.runnable() && r.patch.restore_requested);
        }
    }
}
