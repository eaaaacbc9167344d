//! What a plan costs: POSTs and money per day per profile, and what the
//! `[budget]` would hold back, for `linkfresh plan`.
//!
//! One line per profile a link names (`[profiles.NAME]`; `default` for the
//! rest, as `[defaults]` is called). Tags select profiles only at run time,
//! from MoneyKit's answers, so a plan groups by the profile named in the
//! configuration. "Per day" scales the plan to 24 hours.
//! The budget's part replays the planned POSTs, in time order, through the
//! daemon's own allocator: a POST it would not admit when planned counts as
//! deferred. In the daemon a deferred POST goes later, in place of a later
//! one, so over a long horizon "deferred" is what the budget saves.

use chrono::TimeDelta;
use serde::Serialize;

use crate::config::Config;
use crate::policy::budget::{Candidate, allocate};
use crate::policy::plan::PlannedPost;

/// One profile's share of the plan.
#[derive(Debug, Serialize)]
pub struct ProfileCost {
    /// The profile (`default` for links without one).
    pub profile: String,
    /// Links in it.
    pub links: usize,
    /// POSTs it wants per 24 hours.
    pub posts_per_day: f64,
    /// What they cost per 24 hours (with `[budget] price_per_post`).
    pub money_per_day: Option<f64>,
}

/// What the budget does to the plan.
#[derive(Debug, Serialize)]
pub struct BudgetEffect {
    /// `[budget] posts_per_day`.
    pub posts_per_day: u32,
    /// `[budget] window` in seconds.
    pub window_seconds: i64,
    /// Planned POSTs the budget lets out when planned.
    pub sent: usize,
    /// Planned POSTs it holds back.
    pub deferred: usize,
}

/// The cost part of `plan --json`.
#[derive(Debug, Serialize)]
pub struct PlanCost {
    /// Per profile.
    pub profiles: Vec<ProfileCost>,
    /// `[budget] currency`, if set.
    pub currency: Option<String>,
    /// With a `[budget]`: what it would hold back.
    pub budget: Option<BudgetEffect>,
}

/// The cost of `posts`, planned over `horizon` for `config`'s links.
pub fn cost(config: &Config, posts: &[PlannedPost], horizon: TimeDelta) -> PlanCost {
    let days =
        horizon.num_milliseconds().max(1) as f64 / TimeDelta::days(1).num_milliseconds() as f64;
    let price = config.budget.as_ref().and_then(|b| b.price_per_post);
    let profile_of = |link: usize| {
        config
            .rules
            .profiles
            .select(config.links[link].profile.as_deref(), &[])
    };
    // (links, posts) per profile name, in name order.
    let mut groups: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for link in 0..config.links.len() {
        groups
            .entry(profile_of(link).name.to_string())
            .or_default()
            .0 += 1;
    }
    for post in posts {
        groups
            .entry(profile_of(post.link).name.to_string())
            .or_default()
            .1 += 1;
    }
    let profiles = groups
        .into_iter()
        .map(|(profile, (links, n))| {
            let per_day = n as f64 / days;
            ProfileCost {
                profile,
                links,
                posts_per_day: per_day,
                money_per_day: price.map(|p| p * per_day),
            }
        })
        .collect();
    let budget = config.budget.as_ref().map(|b| {
        let mut usage = Vec::new();
        let (mut sent, mut deferred) = (0, 0);
        for post in posts {
            let candidate = Candidate {
                on_demand: false,
                priority: profile_of(post.link).priority,
                stale_since: None,
            };
            if allocate(&b.budget, &usage, post.at, &[candidate])
                .admitted
                .is_empty()
            {
                deferred += 1;
            } else {
                sent += 1;
                match usage.last_mut() {
                    Some((t, n)) if *t == post.at => *n += 1,
                    _ => usage.push((post.at, 1)),
                }
            }
        }
        BudgetEffect {
            posts_per_day: b.budget.posts_per_day,
            window_seconds: b.budget.window.num_seconds(),
            sent,
            deferred,
        }
    });
    PlanCost {
        profiles,
        currency: config.budget.as_ref().and_then(|b| b.currency.clone()),
        budget,
    }
}

/// The cost in words, after the plan's table.
pub fn print(cost: &PlanCost) {
    let money = |m: Option<f64>| match (m, &cost.currency) {
        (Some(m), Some(c)) => format!(", {m:.2} {c}"),
        (Some(m), None) => format!(", {m:.2}"),
        (None, _) => String::new(),
    };
    for p in &cost.profiles {
        println!(
            "profile {}: {} links, {:.0} POSTs per day{}",
            p.profile,
            p.links,
            p.posts_per_day,
            money(p.money_per_day)
        );
    }
    if let Some(b) = &cost.budget {
        println!(
            "budget {} POSTs per {}: would send {} and defer {} of the planned POSTs",
            b.posts_per_day,
            humantime::format_duration(std::time::Duration::from_secs(
                b.window_seconds.max(0) as u64
            )),
            b.sent,
            b.deferred
        );
    }
}

/// `check`'s budget line: the cap against the most the fleet could want
/// (`wanted` POSTs a day).
pub fn check_line(b: &crate::config::BudgetConfig, wanted: u64) -> String {
    let window = humantime::format_duration(b.budget.window.to_std().unwrap_or_default());
    let per_day = f64::from(b.budget.posts_per_day) * TimeDelta::days(1).num_milliseconds() as f64
        / b.budget.window.num_milliseconds().max(1) as f64;
    let money = b
        .money(u64::from(b.budget.posts_per_day))
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    let verdict = if (wanted as f64) > per_day {
        format!("the fleet may want up to {wanted} a day: the budget will defer some")
    } else {
        format!("the fleet wants at most {wanted} a day: within it")
    };
    format!(
        "budget: {} POSTs per {window}{money}; {verdict}\n",
        b.budget.posts_per_day
    )
}
