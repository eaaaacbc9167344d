//! Profiles: tiers of links (`[profiles.NAME]`, and `[defaults]` for the
//! rest) that say what to refresh, how often, how important it is when the
//! budget is short, and how demand from the owning app moves the cadence.
//!
//! A link's profile, first match wins (the README's "Profiles" section):
//! 1. `profile = "..."` on its `[[links]]` entry, its `links_file` line, or
//!    set through the admin API (stored with the link's cadence settings);
//! 2. else the profile whose `tags` share a tag with the link's MoneyKit
//!    `link_tags` (learned by reconciliation and discovery); when several
//!    match, the highest `priority` wins, then the name in byte order;
//! 3. else `[defaults]`, the profile named `default`.
//!
//! A product's cadence, first match wins: the link's own `every`/`cron`, the
//! profile's `active`/`idle` demand rule for that product (a per-product map;
//! `idle = "never"` covers every product), the profile's `every`/`cron`, and
//! otherwise as often as the window allows. The profile's `products` are the
//! link's products when the link names the profile and no products of its
//! own; a profile selected by tags changes cadence and priority only (the
//! link's products were fixed when it was configured or discovered).
//!
//! This file is the shared vocabulary: the budget reads a link's
//! [`Profile::priority`] and name from the daemon's table.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Cadence;
use super::cadences::Cadences;
use crate::domain::{Product, ProductSet};

/// The name of the profile `[defaults]` defines.
pub const DEFAULT_PROFILE: &str = "default";

/// One profile, checked. Shared (`Arc`) by every link that has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// `NAME` of `[profiles.NAME]`, or [`DEFAULT_PROFILE`].
    pub name: Arc<str>,
    /// MoneyKit `link_tags` that select it (empty: only by name).
    pub tags: Vec<String>,
    /// Products of a link that names the profile without its own list.
    pub products: ProductSet,
    /// Higher first when the budget is short; 0 by default.
    pub priority: i32,
    /// The cadence of each product (by [`Product::index`]): a demand rule,
    /// the profile's `every`/`cron`, or as often as allowed.
    pub cadences: Cadences,
}

impl Profile {
    /// A profile with no cadence of its own: every product as often as allowed.
    pub fn plain(name: &str, products: ProductSet) -> Self {
        Self {
            name: Arc::from(name),
            tags: Vec::new(),
            products,
            priority: 0,
            cadences: Default::default(),
        }
    }

    /// Whether a product's cadence depends on demand (activity calls).
    pub fn has_demand(&self) -> bool {
        self.cadences
            .iter()
            .any(|c| matches!(c, Cadence::Demand(_)))
    }
}

/// The default profile of [`Profiles::default`]: accounts and transactions,
/// as often as allowed.
impl Default for Profile {
    fn default() -> Self {
        Profiles::default().default_profile().as_ref().clone()
    }
}

/// Every profile of the configuration: `[defaults]` and the named ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Profiles {
    default: Arc<Profile>,
    /// Highest priority first, then by name: the order tags are matched in.
    named: Vec<Arc<Profile>>,
}

impl Default for Profiles {
    fn default() -> Self {
        Self::new(
            Profile::plain(
                DEFAULT_PROFILE,
                ProductSet::of(Product::Accounts).union(ProductSet::of(Product::Transactions)),
            ),
            Vec::new(),
        )
    }
}

impl Profiles {
    /// The default profile and the named ones (any order).
    pub fn new(default: Profile, named: Vec<Profile>) -> Self {
        let mut named: Vec<Arc<Profile>> = named.into_iter().map(Arc::new).collect();
        named.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
        Self {
            default: Arc::new(default),
            named,
        }
    }

    /// `[defaults]`.
    pub fn default_profile(&self) -> &Arc<Profile> {
        &self.default
    }

    /// A profile by name (`default` included).
    pub fn get(&self, name: &str) -> Option<&Arc<Profile>> {
        if name == DEFAULT_PROFILE {
            return Some(&self.default);
        }
        self.named.iter().find(|p| &*p.name == name)
    }

    /// Every profile name, `default` first, for messages that say what is allowed.
    pub fn names(&self) -> Vec<&str> {
        std::iter::once(&self.default)
            .chain(&self.named)
            .map(|p| &*p.name)
            .collect()
    }

    /// The named profiles, highest priority first.
    pub fn named(&self) -> &[Arc<Profile>] {
        &self.named
    }

    /// A link's profile (see the module docs for the order). A name no
    /// longer configured (a profile removed while an API-managed link still
    /// names it) falls through to the tags, then the default.
    pub fn select(&self, explicit: Option<&str>, tags: &[String]) -> &Arc<Profile> {
        if let Some(p) = explicit.and_then(|n| self.get(n)) {
            return p;
        }
        self.named
            .iter()
            .find(|p| p.tags.iter().any(|t| tags.contains(t)))
            .unwrap_or(&self.default)
    }
}

/// A link's cadence per product: its own `every`/`cron` where set, else the
/// profile's.
pub fn link_cadences(own: &BTreeMap<Product, Cadence>, profile: &Profile) -> Cadences {
    std::array::from_fn(|i| {
        own.get(&Product::ALL[i])
            .cloned()
            .unwrap_or_else(|| profile.cadences[i].clone())
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn tagged(name: &str, tags: &[&str], priority: i32) -> Profile {
        Profile {
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            priority,
            ..Profile::plain(name, ProductSet::of(Product::Accounts))
        }
    }

    #[test]
    fn a_named_profile_beats_tags_and_tags_beat_the_default() {
        let profiles = Profiles::new(
            Profile::plain(DEFAULT_PROFILE, ProductSet::of(Product::Accounts)),
            vec![
                tagged("free", &["plan:free"], 0),
                tagged("premium", &["plan:premium", "user_type:admin"], 10),
            ],
        );
        let tags = |t: &[&str]| t.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            &*profiles.select(Some("free"), &tags(&["plan:premium"])).name,
            "free"
        );
        assert_eq!(
            &*profiles.select(None, &tags(&["x", "user_type:admin"])).name,
            "premium"
        );
        // Both match: the higher priority wins.
        assert_eq!(
            &*profiles
                .select(None, &tags(&["plan:free", "plan:premium"]))
                .name,
            "premium"
        );
        assert_eq!(
            &*profiles.select(None, &tags(&["other"])).name,
            DEFAULT_PROFILE
        );
        assert_eq!(&*profiles.select(Some("gone"), &[]).name, DEFAULT_PROFILE);
        assert_eq!(profiles.names(), vec!["default", "premium", "free"]);
    }

    #[test]
    fn a_links_own_cadence_beats_its_profiles() {
        let mut profile = Profile::plain("p", ProductSet::of(Product::Accounts));
        profile.cadences[Product::Accounts.index()] = Cadence::Every(TimeDelta::hours(4));
        profile.cadences[Product::Identity.index()] = Cadence::Every(TimeDelta::days(7));
        let own = BTreeMap::from([(Product::Accounts, Cadence::Every(TimeDelta::hours(2)))]);
        let c = link_cadences(&own, &profile);
        assert_eq!(
            c[Product::Accounts.index()],
            Cadence::Every(TimeDelta::hours(2))
        );
        assert_eq!(
            c[Product::Identity.index()],
            Cadence::Every(TimeDelta::days(7))
        );
        assert_eq!(c[Product::Transactions.index()], Cadence::AsOftenAsAllowed);
    }
}
