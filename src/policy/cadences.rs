//! The stored form of a link's cadences: per-product [`Cadence`]s as the
//! small JSON object the store keeps (`{"every":{..},"cron":{..}}`), parsed
//! once per distinct setting and shared by every link configured alike.
//!
//! Policy vocabulary, not the daemon's: the config writes it, the admin API
//! writes it, and the daemon's table and `explain` read it back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{Cadence, CronSchedule};
use crate::domain::Product;

/// The cadence of each product (by [`Product::index`]) of links configured
/// alike; shared, not copied, by all of them.
pub type Cadences = [Cadence; Product::ALL.len()];

/// Serialises per-product cadences for the store; `None` when all default.
pub fn cadence_to_json(cadence: &BTreeMap<Product, Cadence>) -> Option<String> {
    if cadence.is_empty() {
        return None;
    }
    let mut every = serde_json::Map::new();
    let mut cron = serde_json::Map::new();
    for (p, c) in cadence {
        match c {
            Cadence::AsOftenAsAllowed => {}
            Cadence::Every(d) => {
                let d = d.to_std().unwrap_or_default();
                every.insert(
                    p.to_string(),
                    humantime::format_duration(d).to_string().into(),
                );
            }
            Cadence::Cron(c) => {
                cron.insert(p.to_string(), c.as_str().into());
            }
        }
    }
    Some(serde_json::json!({ "every": every, "cron": cron }).to_string())
}

/// Parses what [`cadence_to_json`] wrote; unknown or bad entries are skipped
/// (the config that wrote them was checked).
///
/// An `every` longer than the 10-year bound ([`crate::duration::MAX`]) can
/// only come from a store written before the bound existed (an admin API
/// call accepted `300000y`). It is clamped to 10 years with a warning
/// rather than ignored: ignoring it would turn "almost never" into "as often
/// as allowed", the opposite of what was asked; 10 years keeps the meaning
/// and every date computed from it inside chrono's calendar.
pub fn cadence_from_json(json: Option<&str>) -> BTreeMap<Product, Cadence> {
    let mut out = BTreeMap::new();
    let Some(value) = json.and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok()) else {
        return out;
    };
    let entries = |key: &str| {
        value
            .get(key)
            .and_then(|v| v.as_object())
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((Product::parse(k).ok()?, v.as_str()?.to_owned())))
            .collect::<Vec<_>>()
    };
    for (p, s) in entries("every") {
        match crate::duration::parse_duration_bounded(&s) {
            Ok(d) => {
                out.insert(p, Cadence::Every(crate::duration::to_delta(d)));
            }
            Err(crate::duration::DurationError::TooLong) => {
                tracing::warn!(
                    product = %p,
                    every = %s,
                    "stored cadence is longer than 10 years; using 10 years (set it again through the admin API or the config)"
                );
                out.insert(
                    p,
                    Cadence::Every(crate::duration::to_delta(crate::duration::MAX)),
                );
            }
            Err(e) => {
                tracing::warn!(product = %p, every = %s, error = %e, "stored cadence ignored");
            }
        }
    }
    for (p, s) in entries("cron") {
        if let Ok(c) = CronSchedule::parse(&s) {
            out.insert(p, Cadence::Cron(c));
        }
    }
    out
}

/// Parses a link's stored cadence text into a cadence per product (the
/// default, as often as allowed, where it names none).
pub fn cadences_of(text: Option<&str>) -> Cadences {
    let parsed = cadence_from_json(text);
    std::array::from_fn(|i| parsed.get(&Product::ALL[i]).cloned().unwrap_or_default())
}

/// Parsed cadences by the stored text they came from, so that links
/// configured alike share one [`Cadences`] (and the text is parsed once, not
/// once per link). Grows with the number of distinct cadence settings, which
/// a config names by hand; never with the fleet.
#[derive(Debug, Default)]
pub struct CadenceBook {
    unset: Option<Arc<Cadences>>,
    by_text: HashMap<Box<str>, Arc<Cadences>>,
}

impl CadenceBook {
    /// The shared cadences for a link's stored cadence text.
    pub fn get(&mut self, text: Option<&str>) -> Arc<Cadences> {
        let found = match text {
            None => self.unset.as_ref(),
            Some(t) => self.by_text.get(t),
        };
        if let Some(found) = found {
            return found.clone();
        }
        let shared = Arc::new(cadences_of(text));
        match text {
            None => self.unset = Some(shared.clone()),
            Some(t) => {
                self.by_text.insert(t.into(), shared.clone());
            }
        }
        shared
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn what_the_config_writes_reads_back_as_the_same_cadences() {
        let written = BTreeMap::from([
            (Product::Identity, Cadence::Every(TimeDelta::days(7))),
            (
                Product::Transactions,
                Cadence::Cron(CronSchedule::parse("0 0 6 * * *").unwrap()),
            ),
        ]);
        let json = cadence_to_json(&written);
        assert_eq!(cadence_from_json(json.as_deref()), written);
        let per_product = cadences_of(json.as_deref());
        assert_eq!(
            per_product[Product::Identity.index()],
            Cadence::Every(TimeDelta::days(7))
        );
        assert_eq!(
            per_product[Product::Accounts.index()],
            Cadence::AsOftenAsAllowed
        );
        assert_eq!(cadence_to_json(&BTreeMap::new()), None);
    }
}
