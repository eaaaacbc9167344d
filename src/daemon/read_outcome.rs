//! What each answer to a `GET /links/{id}` does to a link: the read's
//! counterpart of [`outcome`](super::outcome), a pure function from (link,
//! purpose, time, answer) to the new in-memory state and the patch the store
//! must record. A reconcile learns the server's times; a re-check learns
//! whether a parked link is connected again. Park reasons come from
//! [`Parked`], as for a POST's answer.

use chrono::{DateTime, Utc};

use super::dispatch::ReadPurpose;
use super::parked::Parked;
use super::table::Entry;
use crate::domain::{LinkState, Product};
use crate::moneykit::LinkOutcome;
use crate::moneykit::wire::LinkStatus;
use crate::policy::Rules;
use crate::store::{LinkPatch, ProductPatch};

/// Applies the answer `outcome` to a read of `entry` for `purpose`, received
/// at `received_at`; returns what the store must record (possibly nothing).
pub(crate) fn resolve_read(
    entry: &mut Entry,
    purpose: ReadPurpose,
    received_at: DateTime<Utc>,
    outcome: LinkOutcome,
    rules: &Rules,
) -> LinkPatch {
    let mut patch = LinkPatch::default();
    match outcome {
        Ok(link) => {
            entry.needs_reconcile = false;
            for p in Product::ALL {
                let Some(server) = link.product(p) else {
                    continue;
                };
                let (refreshed, attempted) = (server.refreshed_at, server.last_attempted_at);
                if let Some(s) = entry.product_mut(p) {
                    s.saw_server_time(refreshed.max(attempted));
                }
                if refreshed.is_some() || attempted.is_some() {
                    patch.products.push((
                        p,
                        ProductPatch {
                            server_refreshed_at: refreshed,
                            server_attempted_at: attempted,
                            ..ProductPatch::default()
                        },
                    ));
                }
            }
            if purpose == ReadPurpose::Recheck {
                if link.state == LinkStatus::Connected {
                    tracing::info!(link = %entry.id, "link is connected again; resuming");
                    entry.state = LinkState::Active;
                    entry.recheck_at = None;
                    patch.state = Some((LinkState::Active, None));
                } else {
                    entry.recheck_at = Some(received_at + rules.backoff_max);
                }
            }
        }
        Err(e) => match Parked::of_read(&e) {
            Some(parked) => {
                let state = parked.state();
                entry.state = state;
                entry.needs_reconcile = false;
                if state == LinkState::NeedsUserAction {
                    entry.recheck_at = Some(received_at + rules.backoff_max);
                }
                patch.state = Some((state, Some(parked.reason())));
            }
            None => {
                // Transient: back off and read again later; never POST
                // blind to a link we know nothing of.
                entry.failures = entry.failures.saturating_add(1);
                let delay = crate::policy::backoff::backoff_delay(
                    rules.backoff_base,
                    rules.backoff_max,
                    entry.failures,
                    entry.hash,
                );
                entry.backoff_until = Some(received_at + delay);
                if purpose == ReadPurpose::Recheck {
                    entry.recheck_at = Some(received_at + delay);
                }
                tracing::warn!(link = %entry.id, error = %e, "reading the link failed; backing off");
            }
        },
    }
    patch
}

/// The activity label of a read.
pub(crate) fn read_label(purpose: ReadPurpose) -> &'static str {
    match purpose {
        ReadPurpose::Reconcile => "reconciled",
        ReadPurpose::Recheck => "rechecked",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::outcome::resolve;
    use crate::daemon::table::fresh_record;
    use crate::domain::ProductSet;
    use crate::moneykit::{ApiError, RefreshOutcome};

    fn entry() -> Entry {
        Entry::from_record(&fresh_record("mk_t", "accounts"), Default::default())
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn a_read_parks_a_link_in_the_same_state_and_words_as_a_post() {
        let answers = [
            (ApiError::NotFound, RefreshOutcome::NotFound),
            (ApiError::Deleted, RefreshOutcome::Deleted),
            (
                ApiError::BadState {
                    link_error_code: Some("auth_expired".into()),
                },
                RefreshOutcome::BadState {
                    link_error_code: Some("auth_expired".into()),
                },
            ),
            (
                ApiError::BadState {
                    link_error_code: None,
                },
                RefreshOutcome::BadState {
                    link_error_code: None,
                },
            ),
        ];
        let rules = Rules::default();
        for (read, post) in answers {
            let (mut by_read, mut by_post) = (entry(), entry());
            let patch = resolve_read(
                &mut by_read,
                ReadPurpose::Reconcile,
                t(1),
                Err(read),
                &rules,
            );
            let products = ProductSet::parse_list("accounts").unwrap();
            let r = resolve(&mut by_post, products, t(0), t(1), &post, &rules);
            assert!(patch.state.is_some(), "{post:?} parks");
            assert_eq!(patch.state, r.patch.state, "{post:?}");
            assert_eq!(by_read.state, by_post.state);
            assert_eq!(by_read.recheck_at, by_post.recheck_at);
            assert!(!by_read.needs_reconcile);
        }
    }

    #[test]
    fn a_failed_read_backs_off_without_parking() {
        let mut e = entry();
        let patch = resolve_read(
            &mut e,
            ReadPurpose::Recheck,
            t(1),
            Err(ApiError::Timeout),
            &Rules::default(),
        );
        assert_eq!(patch, LinkPatch::default());
        assert_eq!(e.failures, 1);
        assert!(e.backoff_until.is_some_and(|b| b > t(1)));
        assert_eq!(e.recheck_at, e.backoff_until);
    }
}
