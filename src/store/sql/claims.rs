//! The decisions of the claim guard (see "Several replicas" in the
//! [ownership docs](crate::store::ownership)) and of lease release, as plain functions of
//! what the database returned: testable without one, and written once for
//! one intent or many.

use std::collections::HashMap;

use crate::store::records::{ceil_ms, ms};
use crate::store::{Claim, Intent, Outcome};

/// A link's lease as stored: `(lease_owner, lease_until)`.
pub(crate) type Lease = (Option<String>, Option<i64>);

/// Whether `claim` may take the link of `intent` given its stored lease:
/// refused when the link was not returned (unknown, removed, or locked by
/// another transaction right now) or another replica holds a lease that
/// has not expired at the send time.
pub(crate) fn lease_allows(intent: &Intent, claim: &Claim, lease: Option<&Lease>) -> bool {
    match lease {
        None => false,
        Some((Some(owner), Some(until))) => *owner == claim.owner || *until <= ms(intent.at),
        Some(_) => true,
    }
}

/// Whether every product of `intent` is stored as never requested, or as
/// requested no later than the replica believed (its known time rounded up
/// to the stored millisecond). `stored` maps `(link, product)` to
/// `last_requested_at`; a missing row is being written elsewhere (schedule
/// rows exist for every product of a stored link), so it refuses.
pub(crate) fn known_times_allow(
    intent: &Intent,
    claim: &Claim,
    stored: &HashMap<(String, String), Option<i64>>,
) -> bool {
    intent.products.iter().all(|product| {
        let key = (intent.link.as_str().to_owned(), product.as_str().to_owned());
        let Some(at) = stored.get(&key) else {
            return false;
        };
        let known = claim
            .known
            .iter()
            .find(|(p, _)| *p == product)
            .and_then(|(_, at)| *at)
            .map(ceil_ms);
        match (*at, known) {
            (None, _) => true,
            (Some(stored), Some(known)) => stored <= known,
            (Some(_), None) => false,
        }
    })
}

/// A partition as a claim's fence check reads it: `(holder, epoch, lease
/// unexpired by the database's clock)`.
pub(crate) type Holding = (Option<String>, i64, bool);

/// Whether `claim`'s fence still holds: no fence (SQLite, tools) always
/// does; otherwise its replica must hold the partition at the epoch it
/// believes, under a lease the database's clock says has not expired. A
/// replica that was paused past its lease, or lost the partition to
/// another, is refused here even if the link's own guards would pass.
pub(crate) fn fence_allows(claim: &Claim, parts: &HashMap<i32, Holding>) -> bool {
    let Some(fence) = claim.fence else {
        return true;
    };
    let Ok(part) = i32::try_from(fence.part) else {
        return false;
    };
    matches!(parts.get(&part), Some((Some(holder), epoch, true))
        if *holder == claim.owner && *epoch == fence.epoch)
}

/// The leases that finished attempts give back, as `(link, replica)`:
/// only attempts that were claimed (their replica is recorded), and only
/// that replica's lease, so that an outcome never frees a lease another
/// replica took since. `finished` maps each finished attempt to its replica.
pub(crate) fn leases_to_release<'a>(
    outcomes: &'a [Outcome],
    finished: &'a HashMap<i64, Option<String>>,
) -> Vec<(&'a str, &'a str)> {
    outcomes
        .iter()
        .filter_map(|o| match finished.get(&o.attempt) {
            Some(Some(replica)) => Some((o.link.as_str(), replica.as_str())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::domain::{LinkId, Product, ProductSet};
    use crate::store::{LinkPatch, Timestamp};

    fn t(ms: i64) -> Timestamp {
        DateTime::<Utc>::from_timestamp_millis(ms).unwrap()
    }

    fn claimed(known: Option<Timestamp>, owner: &str, at: i64) -> (Intent, Claim) {
        let claim = Claim {
            known: vec![(Product::Accounts, known)],
            owner: owner.into(),
            lease_until: t(at + 60_000),
            fence: None,
        };
        let intent = Intent {
            link: LinkId::parse("mk_a").unwrap(),
            products: ProductSet::parse_list("accounts").unwrap(),
            at: t(at),
            claim: Some(claim.clone()),
        };
        (intent, claim)
    }

    fn stored(at: Option<i64>) -> HashMap<(String, String), Option<i64>> {
        HashMap::from([(("mk_a".to_owned(), "accounts".to_owned()), at)])
    }

    #[test]
    fn a_link_the_database_did_not_return_is_refused() {
        let (intent, claim) = claimed(None, "r1", 1_000);
        assert!(!lease_allows(&intent, &claim, None));
    }

    #[test]
    fn another_replicas_unexpired_lease_refuses_and_an_expired_or_own_one_does_not() {
        let (intent, claim) = claimed(None, "r1", 1_000);
        let other = (Some("r2".to_owned()), Some(1_001));
        assert!(!lease_allows(&intent, &claim, Some(&other)));
        let expired = (Some("r2".to_owned()), Some(1_000));
        assert!(lease_allows(&intent, &claim, Some(&expired)));
        let own = (Some("r1".to_owned()), Some(9_999));
        assert!(lease_allows(&intent, &claim, Some(&own)));
        assert!(lease_allows(&intent, &claim, Some(&(None, None))));
    }

    #[test]
    fn a_product_requested_after_what_the_replica_knew_is_refused() {
        let (intent, claim) = claimed(Some(t(500)), "r1", 1_000);
        assert!(known_times_allow(&intent, &claim, &stored(None)));
        assert!(known_times_allow(&intent, &claim, &stored(Some(500))));
        assert!(!known_times_allow(&intent, &claim, &stored(Some(501))));
        assert!(!known_times_allow(&intent, &claim, &HashMap::new()));
        let (intent, claim) = claimed(None, "r1", 1_000);
        assert!(!known_times_allow(&intent, &claim, &stored(Some(1))));
    }

    #[test]
    fn a_known_time_with_a_fraction_of_a_millisecond_matches_the_stored_truncation() {
        let known = DateTime::<Utc>::from_timestamp(1, 500_500_000).unwrap();
        let (intent, claim) = claimed(Some(known), "r1", 2_000);
        assert!(known_times_allow(&intent, &claim, &stored(Some(1_501))));
        assert!(!known_times_allow(&intent, &claim, &stored(Some(1_502))));
    }

    #[test]
    fn a_fence_passes_only_for_its_holder_at_its_epoch_under_a_live_lease() {
        let (_, mut claim) = claimed(None, "r1", 1_000);
        assert!(fence_allows(&claim, &HashMap::new()), "no fence, no check");
        claim.fence = Some(crate::store::ownership::Fence { part: 3, epoch: 7 });
        let with = |h: Holding| HashMap::from([(3, h)]);
        assert!(fence_allows(&claim, &with((Some("r1".into()), 7, true))));
        assert!(
            !fence_allows(&claim, &with((Some("r1".into()), 8, true))),
            "re-acquired since"
        );
        assert!(
            !fence_allows(&claim, &with((Some("r1".into()), 7, false))),
            "lease expired"
        );
        assert!(
            !fence_allows(&claim, &with((Some("r2".into()), 7, true))),
            "another holder"
        );
        assert!(!fence_allows(&claim, &with((None, 7, true))), "released");
        assert!(!fence_allows(&claim, &HashMap::new()), "partition not read");
    }

    #[test]
    fn only_claimed_finished_attempts_release_their_own_replicas_lease() {
        let outcome = |attempt: i64, link: &str| Outcome {
            attempt,
            link: LinkId::parse(link).unwrap(),
            label: "accepted".into(),
            status: Some(202),
            detail: None,
            at: t(0),
            patch: LinkPatch::default(),
        };
        let outcomes = [outcome(1, "mk_a"), outcome(2, "mk_b"), outcome(3, "mk_c")];
        let finished = HashMap::from([(1, Some("r1".to_owned())), (2, None)]);
        assert_eq!(
            leases_to_release(&outcomes, &finished),
            vec![("mk_a", "r1")]
        );
    }
}
