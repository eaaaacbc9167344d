//! Data age per profile, for the fleet page (issue 17: "per-profile data
//! age"). A link's profile is resolved in memory (from its own `profile`,
//! its MoneyKit tags and the configured `[profiles]`), never stored, so no
//! store query can group by it: the daemon's gauge pass, which already
//! walks the link table every second for `linkfresh_data_age_seconds`,
//! computes these too and leaves them here for the page.
//!
//! A module of its own, below both `daemon` (which writes) and `server`
//! (which reads), like [`crate::health`]. With partitioned replicas each
//! replica sees its own links only, and the page says so.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use crate::domain::Product;

/// The age of one product's data across one profile's links.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileAge {
    /// The profile's name (`default` for `[defaults]`).
    pub profile: Arc<str>,
    /// The product.
    pub product: Product,
    /// Active links of the profile carrying the product, not parked.
    pub links: u64,
    /// Of those, how many were never requested.
    pub never: u64,
    /// Seconds since the last request: median, 99th percentile, oldest
    /// (`None` when none was ever requested).
    pub p50: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// The oldest.
    pub max: Option<f64>,
}

/// The latest per-profile ages and when they were computed; cheap to clone
/// (one shared slot).
#[derive(Debug, Clone, Default)]
pub struct ProfileAges(Arc<RwLock<Snapshot>>);

/// What the gauge pass last left.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When it was computed (`None`: not yet).
    pub at: Option<DateTime<Utc>>,
    /// Ordered by profile name, then product.
    pub ages: Arc<[ProfileAge]>,
}

impl ProfileAges {
    /// Replaces the snapshot.
    pub fn publish(&self, at: DateTime<Utc>, ages: Vec<ProfileAge>) {
        if let Ok(mut s) = self.0.write() {
            *s = Snapshot {
                at: Some(at),
                ages: ages.into(),
            };
        }
    }

    /// The latest snapshot.
    pub fn latest(&self) -> Snapshot {
        self.0.read().map(|s| s.clone()).unwrap_or_default()
    }
}

/// `values` (seconds) summarized as p50, p99 and max; reorders `values`.
pub fn summarize(values: &mut [f64]) -> (Option<f64>, Option<f64>, Option<f64>) {
    if values.is_empty() {
        return (None, None, None);
    }
    let mut at = |q: f64| {
        let rank = ((values.len() - 1) as f64 * q).round() as usize;
        let (_, v, _) = values.select_nth_unstable_by(rank, f64::total_cmp);
        Some(*v)
    };
    (at(0.5), at(0.99), at(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_taken_by_rank_and_nothing_is_none() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        v.reverse();
        assert_eq!(summarize(&mut v), (Some(51.0), Some(99.0), Some(100.0)));
        assert_eq!(summarize(&mut []), (None, None, None));
        assert_eq!(summarize(&mut [7.0]), (Some(7.0), Some(7.0), Some(7.0)));
    }

    #[test]
    fn the_latest_snapshot_is_what_was_published() {
        let ages = ProfileAges::default();
        assert!(ages.latest().at.is_none());
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let one = ProfileAge {
            profile: Arc::from("premium"),
            product: Product::Transactions,
            links: 2,
            never: 1,
            p50: Some(3.0),
            p99: Some(3.0),
            max: Some(3.0),
        };
        ages.publish(at, vec![one.clone()]);
        let seen = ages.clone().latest();
        assert_eq!(seen.at, Some(at));
        assert_eq!(&seen.ages[..], &[one]);
    }
}
