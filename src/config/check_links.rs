//! The checks of the configured links: each `[[links]]` entry's id,
//! products and cadences, the first repeated id, and the revision that
//! tells one link set from another.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::ConfigError;
use super::LinkConfig;
use super::checker::Checker;
use super::raw::RawLink;
use crate::domain::{LinkId, Product, ProductSet};
use crate::policy::{Cadence, CronSchedule, Rules};

/// Checks the `[[links]]` entry at `index` (0-based), filling in the
/// products of the profile it names, else `defaults`.
pub(super) fn check_link(
    c: &Checker<'_>,
    rules: &Rules,
    defaults: ProductSet,
    index: usize,
    rl: RawLink,
) -> Result<LinkConfig, ConfigError> {
    let at = |key: &str| format!("[[links]] #{} {key}", index + 1);
    let id = LinkId::parse(&rl.id).map_err(|e| c.invalid(&at("id"), &rl.id, e.to_string()))?;
    let profile = match &rl.profile {
        Some(name) => Some(
            profile_of(rules, name).map_err(|problem| c.invalid(&at("profile"), name, problem))?,
        ),
        None => None,
    };
    let products = match (&rl.products, profile) {
        (Some(names), _) => c.products(&at("products"), names)?,
        (None, Some(profile)) => profile.products,
        (None, None) => defaults,
    };
    let mut cadence = BTreeMap::new();
    for (name, raw) in &rl.every {
        let key = at(&format!("every.{name}"));
        let p = Product::parse(name).map_err(|e| c.invalid(&key, name, e.to_string()))?;
        if !products.contains(p) {
            return Err(c.invalid(
                &key,
                raw,
                format!("{p} is not among this link's products ({products})"),
            ));
        }
        let every = c.delta(&key, raw, false)?;
        let limit = rules.limits.window(p);
        if every < limit {
            return Err(c.invalid(&key, raw, format!(
                "shorter than [limits] {p} = {}; MoneyKit would refuse the extra requests, so use at least that",
                humantime::format_duration(limit.to_std().unwrap_or_default())
            )));
        }
        cadence.insert(p, Cadence::Every(every));
    }
    for (name, raw) in &rl.cron {
        let key = at(&format!("cron.{name}"));
        let p = Product::parse(name).map_err(|e| c.invalid(&key, name, e.to_string()))?;
        if !products.contains(p) {
            return Err(c.invalid(
                &key,
                raw,
                format!("{p} is not among this link's products ({products})"),
            ));
        }
        if cadence.contains_key(&p) {
            return Err(c.invalid(
                &key,
                raw,
                format!("{p} has both every and cron; choose one"),
            ));
        }
        let schedule = CronSchedule::parse(raw).map_err(|e| c.invalid(&key, raw, e.to_string()))?;
        cadence.insert(p, Cadence::Cron(schedule));
    }
    Ok(LinkConfig {
        id,
        products,
        cadence,
        profile: rl.profile,
    })
}

/// A profile a link names (on `[[links]]` or a links file line), or what
/// is allowed.
pub(super) fn profile_of<'r>(
    rules: &'r Rules,
    name: &str,
) -> Result<&'r crate::policy::Profile, String> {
    rules.profiles.get(name).map(|p| &**p).ok_or_else(|| {
        format!(
            "no such profile; allowed: {} (define it as [profiles.NAME])",
            rules.profiles.names().join(", ")
        )
    })
}

/// The first repeated id in file order, as (index of its first appearance,
/// index of the repeat with the lowest index). Sorting indices rather than
/// filling a map of every id keeps a million-link check within a few
/// megabytes beside the links themselves (the map, with the place of each id
/// as text, took a quarter of a gigabyte).
pub(super) fn first_duplicate(links: &[LinkConfig]) -> Option<(usize, usize)> {
    let mut order: Vec<u32> = (0..u32::try_from(links.len()).unwrap_or(u32::MAX)).collect();
    order.sort_unstable_by(|&a, &b| {
        links[a as usize]
            .id
            .cmp(&links[b as usize].id)
            .then(a.cmp(&b))
    });
    order
        .windows(2)
        .filter(|w| links[w[0] as usize].id == links[w[1] as usize].id)
        .map(|w| (w[0] as usize, w[1] as usize))
        // Sorted by (id, index), a group's adjacent first pair is its first
        // appearance and first repeat; the earliest repeat overall wins.
        .min_by_key(|&(_, second)| second)
}

/// A short hash of the link set and cadences: equal configs, equal revisions.
pub(super) fn revision(links: &[LinkConfig]) -> String {
    let mut h = Sha256::new();
    for l in links {
        h.update(l.id.as_str().as_bytes());
        h.update([
            0,
            l.products.iter().fold(0u8, |acc, p| acc | 1 << p.index()),
        ]);
        if let Some(j) = l.cadence_json() {
            h.update(j.as_bytes());
        }
        h.update([b'\n']);
    }
    let digest = h.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}
