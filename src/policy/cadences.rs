//! The stored form of a link's cadences: per-product [`Cadence`]s as the
//! small JSON object the store keeps (`{"every":{..},"cron":{..}}`), parsed
//! once per distinct setting and shared by every link configured alike.
//!
//! Policy vocabulary, not the daemon's: the config writes it, the admin API
//! writes it, and the daemon's table and `explain` read it back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::profile::{Profile, Profiles, link_cadences};
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
            // A profile's demand rule lives in the config, never in a link's row.
            Cadence::AsOftenAsAllowed | Cadence::Demand(_) => {}
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
/// default, as often as allowed, where it names none), without a profile.
pub fn cadences_of(text: Option<&str>) -> Cadences {
    let parsed = cadence_from_json(text);
    std::array::from_fn(|i| parsed.get(&Product::ALL[i]).cloned().unwrap_or_default())
}

/// Adds the profile a link names (`profile = "..."`, or the admin API's
/// `profile`) to its stored cadence settings: the store keeps them as one
/// opaque text, so a change of either is a change of the link, and links
/// configured alike still share one parsed form.
pub fn with_profile(json: Option<String>, profile: Option<&str>) -> Option<String> {
    let Some(profile) = profile else {
        return json;
    };
    let mut value = json
        .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    if let Some(map) = value.as_object_mut() {
        map.insert("profile".into(), profile.into());
    }
    Some(value.to_string())
}

/// The profile named in stored cadence settings (see [`with_profile`]).
pub fn profile_in(text: Option<&str>) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text?).ok()?;
    Some(value.get("profile")?.as_str()?.to_owned())
}

/// A link's profile and cadences from its stored settings and MoneyKit tags.
pub fn resolve(
    text: Option<&str>,
    tags: &[String],
    profiles: &Profiles,
) -> (Arc<Profile>, Cadences) {
    let profile = profiles.select(profile_in(text).as_deref(), tags).clone();
    let cadences = link_cadences(&cadence_from_json(text), &profile);
    (profile, cadences)
}

/// A link's profile and the cadence of each of its products, shared by
/// every link configured alike (same settings, same profile).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkRules {
    /// The link's profile (`Default`: the default profile).
    pub profile: Arc<Profile>,
    /// The cadence of each product (by [`Product::index`]).
    pub cadences: Cadences,
    /// The stored settings these came from (`None`: none), so that a link
    /// whose tags change can be resolved again without its record.
    pub settings: Option<Arc<str>>,
    /// The settings name the profile: tags do not change it.
    pub named: bool,
}

/// One stored settings text, parsed once.
#[derive(Debug)]
struct Parsed {
    own: BTreeMap<Product, Cadence>,
    profile: Option<String>,
    /// The cadences of links with this text, per profile they resolve to.
    resolved: Vec<Arc<LinkRules>>,
}

/// Parsed cadences by the stored text they came from and the profile the
/// link resolves to, so that links configured alike share one [`Cadences`]
/// (and the text is parsed once, not once per link). Grows with the number
/// of distinct settings times profiles, which a config names by hand; never
/// with the fleet. Built for one set of profiles: a reload builds a new book.
#[derive(Debug, Default)]
pub struct CadenceBook {
    profiles: Arc<Profiles>,
    by_text: HashMap<Box<str>, Parsed>,
}

impl CadenceBook {
    /// An empty book resolving profiles from `profiles`.
    pub fn new(profiles: Arc<Profiles>) -> Self {
        Self {
            profiles,
            by_text: HashMap::new(),
        }
    }

    /// The shared profile and cadences of a link with stored settings `text`
    /// and MoneyKit `tags`.
    pub fn get(&mut self, text: Option<&str>, tags: &[String]) -> Arc<LinkRules> {
        let key = text.unwrap_or("");
        if !self.by_text.contains_key(key) {
            let parsed = Parsed {
                own: cadence_from_json(text),
                profile: profile_in(text),
                resolved: Vec::new(),
            };
            self.by_text.insert(key.into(), parsed);
        }
        let parsed = self.by_text.get_mut(key).expect("inserted above");
        let profile = self.profiles.select(parsed.profile.as_deref(), tags);
        if let Some(found) = parsed
            .resolved
            .iter()
            .find(|r| Arc::ptr_eq(&r.profile, profile))
        {
            return found.clone();
        }
        let named = parsed
            .profile
            .as_deref()
            .is_some_and(|n| self.profiles.get(n).is_some());
        let rules = Arc::new(LinkRules {
            profile: profile.clone(),
            cadences: link_cadences(&parsed.own, profile),
            settings: text.map(Arc::from),
            named,
        });
        parsed.resolved.push(rules.clone());
        rules
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
