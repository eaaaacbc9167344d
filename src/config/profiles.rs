//! `[defaults]` and `[profiles.NAME]`, checked into [`Profiles`]: every key
//! named in errors with what is allowed (exit 2).
//!
//! Decisions written down here:
//! - Profile names are `[a-z0-9_-]`, at most 64 characters, and `default`
//!   is `[defaults]`'s own: the `config` crate lowercases keys when the
//!   environment overrides anything, so a mixed-case name would not survive.
//! - `active` and `idle` name products of the profile; a product they do
//!   not name keeps the profile's `every`/`cron` (or as often as allowed)
//!   whether the link is active or idle. `idle = "never"` covers every
//!   product of the profile. Each `active`/`idle` duration, like `every`,
//!   is at least the product's `[limits]` window.
//! - `active_for` is required with `active` or `idle`, and meaningless
//!   without them (an error, so a half-written rule does not pass silently).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::TimeDelta;

use super::ConfigError;
use super::raw::{RawIdle, RawProfile};
use crate::domain::{Product, ProductSet};
use crate::duration;
use crate::policy::profile::DEFAULT_PROFILE;
use crate::policy::{Cadence, CronSchedule, Demand, Profile, Profiles, Rules};

/// Checks `[defaults]` and every `[profiles.NAME]` of `file`.
pub(super) fn check(
    file: &str,
    rules: &Rules,
    defaults: RawProfile,
    named: BTreeMap<String, RawProfile>,
) -> Result<Profiles, ConfigError> {
    let c = Check { file, rules };
    let default = c.profile(
        "[defaults]",
        DEFAULT_PROFILE,
        defaults,
        ProductSet::of(Product::Accounts).union(ProductSet::of(Product::Transactions)),
    )?;
    if !default.tags.is_empty() {
        return Err(c.invalid(
            "[defaults] tags",
            &default.tags.join(","),
            "[defaults] is the profile of links no tag selects; put tags on a [profiles.NAME] table",
        ));
    }
    let mut profiles = Vec::with_capacity(named.len());
    for (name, raw) in named {
        let table = format!("[profiles.{name}]");
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok || name == DEFAULT_PROFILE {
            return Err(c.invalid(
                &table,
                &name,
                "a profile name is 1 to 64 of a-z, 0-9, _ and -, and not \"default\" ([defaults] is that one)",
            ));
        }
        profiles.push(c.profile(&table, &name, raw, default.products)?);
    }
    Ok(Profiles::new(default, profiles))
}

struct Check<'a> {
    file: &'a str,
    rules: &'a Rules,
}

impl Check<'_> {
    fn invalid(&self, key: &str, value: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            key: key.to_owned(),
            value: format!("{value:?}"),
            problem: problem.into(),
        }
    }

    fn delta(&self, key: &str, raw: &str) -> Result<TimeDelta, ConfigError> {
        duration::parse_duration_bounded(raw)
            .map(duration::to_delta)
            .map_err(|e| self.invalid(key, raw, e.to_string()))
    }

    /// A product named as a key of `table`, which must be among `products`.
    fn product(
        &self,
        key: &str,
        name: &str,
        value: &str,
        products: ProductSet,
    ) -> Result<Product, ConfigError> {
        let p = Product::parse(name).map_err(|e| self.invalid(key, name, e.to_string()))?;
        if !products.contains(p) {
            return Err(self.invalid(
                key,
                value,
                format!("{p} is not among this profile's products ({products})"),
            ));
        }
        Ok(p)
    }

    /// A duration cadence of `p`, at least its window.
    fn every(&self, key: &str, raw: &str, p: Product) -> Result<Cadence, ConfigError> {
        let every = self.delta(key, raw)?;
        let limit = self.rules.limits.window(p);
        if every < limit {
            return Err(self.invalid(
                key,
                raw,
                format!(
                    "shorter than [limits] {p} = {}; MoneyKit would refuse the extra requests, so use at least that",
                    humantime::format_duration(limit.to_std().unwrap_or_default())
                ),
            ));
        }
        Ok(Cadence::Every(every))
    }

    fn profile(
        &self,
        table: &str,
        name: &str,
        raw: RawProfile,
        default_products: ProductSet,
    ) -> Result<Profile, ConfigError> {
        let key = |k: &str| format!("{table} {k}");
        let products = match &raw.products {
            Some(names) => {
                let mut set = ProductSet::EMPTY;
                for n in names {
                    set.insert(
                        Product::parse(n)
                            .map_err(|e| self.invalid(&key("products"), n, e.to_string()))?,
                    );
                }
                if set.is_empty() {
                    return Err(self.invalid(
                        &key("products"),
                        "[]",
                        "empty product list; give at least one of accounts, transactions, account_numbers, identity, investments, enrichment",
                    ));
                }
                set
            }
            None => default_products,
        };
        let mut base: BTreeMap<Product, Cadence> = BTreeMap::new();
        for (n, v) in &raw.every {
            let k = key(&format!("every.{n}"));
            let p = self.product(&k, n, v, products)?;
            base.insert(p, self.every(&k, v, p)?);
        }
        for (n, v) in &raw.cron {
            let k = key(&format!("cron.{n}"));
            let p = self.product(&k, n, v, products)?;
            if base.contains_key(&p) {
                return Err(self.invalid(
                    &k,
                    v,
                    format!("{p} has both every and cron; choose one"),
                ));
            }
            let c = CronSchedule::parse(v).map_err(|e| self.invalid(&k, v, e.to_string()))?;
            base.insert(p, Cadence::Cron(c));
        }
        let mut cadences: [Cadence; Product::ALL.len()] =
            std::array::from_fn(|i| base.get(&Product::ALL[i]).cloned().unwrap_or_default());

        let has_rule = !raw.active.is_empty() || raw.idle.is_some();
        match (&raw.active_for, has_rule) {
            (None, true) => {
                return Err(self.invalid(
                    &key("active_for"),
                    "",
                    "is not set, but active/idle are; say how long an activity call keeps the link active, e.g. active_for = \"24h\"",
                ));
            }
            (Some(v), false) => {
                return Err(self.invalid(
                    &key("active_for"),
                    v,
                    "has no effect without active or idle; e.g. active = { transactions = \"1h\" }, idle = { transactions = \"24h\" } or idle = \"never\"",
                ));
            }
            _ => {}
        }
        if let Some(v) = &raw.active_for {
            let active_for = self.delta(&key("active_for"), v)?;
            let mut active: BTreeMap<Product, Cadence> = BTreeMap::new();
            for (n, v) in &raw.active {
                let k = key(&format!("active.{n}"));
                let p = self.product(&k, n, v, products)?;
                active.insert(p, self.every(&k, v, p)?);
            }
            // Per product: Some(Some(c)) a cadence, Some(None) never.
            let mut idle: BTreeMap<Product, Option<Cadence>> = BTreeMap::new();
            match &raw.idle {
                None => {}
                Some(RawIdle::Word(w)) if w == "never" => {
                    for p in products.iter() {
                        idle.insert(p, None);
                    }
                }
                Some(RawIdle::Word(w)) => {
                    return Err(self.invalid(
                        &key("idle"),
                        w,
                        "is \"never\" (only on demand) or a table per product, e.g. { transactions = \"24h\", accounts = \"never\" }",
                    ));
                }
                Some(RawIdle::Map(map)) => {
                    for (n, v) in map {
                        let k = key(&format!("idle.{n}"));
                        let p = self.product(&k, n, v, products)?;
                        let c = if v == "never" {
                            None
                        } else {
                            Some(self.every(&k, v, p).map_err(|_| {
                                self.invalid(
                                    &k,
                                    v,
                                    format!(
                                        "is a duration of at least [limits] {p}, or \"never\" (only on demand)"
                                    ),
                                )
                            })?)
                        };
                        idle.insert(p, c);
                    }
                }
            }
            for p in products.iter() {
                if !active.contains_key(&p) && !idle.contains_key(&p) {
                    continue;
                }
                let own = cadences[p.index()].clone();
                cadences[p.index()] = Cadence::Demand(Arc::new(Demand {
                    active_for,
                    active: active.remove(&p).unwrap_or_else(|| own.clone()),
                    idle: idle.remove(&p).unwrap_or(Some(own)),
                }));
            }
        }
        Ok(Profile {
            name: Arc::from(name),
            tags: raw.tags,
            products,
            priority: raw.priority,
            cadences,
        })
    }
}
