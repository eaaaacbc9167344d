//! Gauges computed from the link table: links per state, and the age of the
//! last successful request per product as quantiles across links (one
//! series per product and quantile, never one per link).

use chrono::{DateTime, Utc};

use super::table::LinkTable;
use crate::domain::{LinkState, Product};

const QUANTILES: [(f64, &str); 4] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99"), (1.0, "1")];

/// Publishes `linkfresh_links{state}` and `linkfresh_data_age_seconds`.
pub fn publish(table: &LinkTable, now: DateTime<Utc>) {
    let mut per_state = [0u64; LinkState::ALL.len()];
    let mut ages: [Vec<f64>; Product::ALL.len()] = Default::default();
    for e in table.iter().filter(|e| !e.removed) {
        if let Some(i) = LinkState::ALL.iter().position(|s| *s == e.state) {
            per_state[i] += 1;
        }
        if e.state != LinkState::Active {
            continue;
        }
        for p in e.products.iter().filter(|p| !p.parked) {
            if let Some(last) = p.last() {
                ages[p.product.index()]
                    .push((now - last).num_milliseconds().max(0) as f64 / 1000.0);
            }
        }
    }
    for (state, n) in LinkState::ALL.iter().zip(per_state) {
        metrics::gauge!(crate::metrics::LINKS, "state" => state.as_str()).set(n as f64);
    }
    for (p, mut values) in Product::ALL.into_iter().zip(ages) {
        if values.is_empty() {
            continue;
        }
        for (q, label) in QUANTILES {
            let rank = ((values.len() - 1) as f64 * q).round() as usize;
            let (_, v, _) = values.select_nth_unstable_by(rank, f64::total_cmp);
            metrics::gauge!(crate::metrics::DATA_AGE_SECONDS, "product" => p.as_str(), "quantile" => label).set(*v);
        }
    }
}
