//! The simulator's memory: tokens, per-link per-product windows and the
//! statistics tests assert on. Every operation is O(1) in the number of
//! links (a HashMap), so 100k+ links cost nothing per request.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{LinkId, Product, ProductSet};
use crate::moneykit::wire::{Link, LinkErrorCode, LinkStatus, ProductErrorCode, ProductState};

use super::config::{SimConfig, SimLink, SimLinkState};

/// Counters the simulator keeps, served at `GET /_sim/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimStats {
    /// Requests by endpoint (`token`, `refresh`, `get_link`, `list_links`,
    /// `jwks`) and then by status code.
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
    /// Refreshes that asked for a product inside its window.
    pub violations: u64,
    /// Refreshes for a link sent before a `Retry-After` it was given ended.
    pub retry_after_violations: u64,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// Products named in authenticated refresh requests, whatever the answer.
    pub products_requested: BTreeMap<String, u64>,
    /// Products actually refreshed (inside a 202, not rate limited).
    pub products_refreshed: BTreeMap<String, u64>,
    /// Authenticated refresh POSTs per link, whatever the answer.
    pub posts_per_link: BTreeMap<String, u64>,
    /// Requests that came without a `MoneyKit-Version` header.
    pub missing_version_header: u64,
    /// Authenticated refresh POSTs by arrival, in buckets of 100 ms (key:
    /// unix milliseconds / 100), to judge a fleet-wide rate limit.
    #[serde(default)]
    pub posts_per_100ms: BTreeMap<i64, u64>,
}

impl SimStats {
    /// Requests to `endpoint` answered with `status`.
    pub fn count(&self, endpoint: &str, status: u16) -> u64 {
        self.requests
            .get(endpoint)
            .and_then(|m| m.get(&status.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// The most authenticated refresh POSTs that arrived within any one
    /// second (ten consecutive 100 ms buckets).
    pub fn max_posts_in_any_second(&self) -> u64 {
        self.max_posts_in(10)
    }

    /// The most authenticated refresh POSTs that arrived within any
    /// `buckets` consecutive 100 ms buckets.
    pub fn max_posts_in(&self, buckets: i64) -> u64 {
        let mut best = 0;
        for &start in self.posts_per_100ms.keys() {
            let sum: u64 = self
                .posts_per_100ms
                .range(start..start + buckets)
                .map(|(_, n)| n)
                .sum();
            best = best.max(sum);
        }
        best
    }

    /// All requests to `endpoint`.
    pub fn total(&self, endpoint: &str) -> u64 {
        self.requests
            .get(endpoint)
            .map(|m| m.values().sum())
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ProductSim {
    /// Start of the current window (last request that refreshed it).
    pub window_start: Option<DateTime<Utc>>,
    pub refreshed_at: Option<DateTime<Utc>>,
    pub last_attempted_at: Option<DateTime<Utc>>,
    pub error: Option<ProductErrorCode>,
}

#[derive(Debug, Clone)]
pub(crate) struct LinkSim {
    pub cfg: SimLink,
    pub created_at: DateTime<Utc>,
    pub products: [ProductSim; 6],
    pub retry_after_until: Option<DateTime<Utc>>,
    pub posts: u64,
}

impl LinkSim {
    fn new(cfg: SimLink, created_at: DateTime<Utc>) -> Self {
        Self {
            cfg,
            created_at,
            products: Default::default(),
            retry_after_until: None,
            posts: 0,
        }
    }

    fn link_error_code(&self) -> String {
        self.cfg
            .link_error_code
            .clone()
            .unwrap_or_else(|| "auth_expired".into())
    }

    /// The wire view (`LinkCommon`).
    pub fn view(&self) -> Link {
        let error_code = (self.cfg.state == SimLinkState::NeedsUserAction).then(|| {
            serde_json::from_value(serde_json::Value::String(self.link_error_code()))
                .unwrap_or(LinkErrorCode::Other)
        });
        let products = Product::ALL
            .into_iter()
            .map(|p| {
                let s = &self.products[p.index()];
                let state = ProductState {
                    refreshed_at: s.refreshed_at,
                    last_attempted_at: s.last_attempted_at,
                    error_code: s.error,
                    error_message: s.error.map(|_| "Product refresh rate limited".to_owned()),
                    unavailable: self
                        .cfg
                        .forbidden_products
                        .contains(p)
                        .then(|| "Permission not granted".to_owned()),
                    settings: None,
                    has_history: (p == Product::Transactions).then_some(s.refreshed_at.is_some()),
                };
                (p, state)
            })
            .collect();
        Link {
            link_id: self.cfg.id.to_string(),
            institution_id: "mk_inst_simbank".into(),
            institution_name: "Simulated Bank".into(),
            institution_avatar: "https://example.invalid/simbank.png".into(),
            state: match self.cfg.state {
                SimLinkState::NeedsUserAction => LinkStatus::Error,
                SimLinkState::Deleted => LinkStatus::Deleted,
                _ => LinkStatus::Connected,
            },
            error_code,
            last_synced_at: self.products.iter().filter_map(|p| p.refreshed_at).max(),
            provider: "moneykit".into(),
            link_tags: self.cfg.tags.clone(),
            webhook: self.cfg.webhook.clone(),
            products,
            available_products: Product::ALL
                .into_iter()
                .filter(|p| !self.cfg.forbidden_products.contains(*p))
                .collect(),
        }
    }
}

/// Age of one product across the simulator's links, served at
/// `GET /_sim/freshness`: how stale the data a client kept fresh is now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProductFreshness {
    /// Links that have had this product refreshed at least once.
    pub refreshed_links: u64,
    /// Median age of `refreshed_at`, seconds.
    pub p50_age_s: f64,
    /// 99th percentile age of `refreshed_at`, seconds.
    pub p99_age_s: f64,
    /// Oldest `refreshed_at`, seconds.
    pub max_age_s: f64,
}

/// What a refresh request comes to, decided under the lock.
#[derive(Debug)]
pub(crate) enum RefreshDecision {
    NotFound,
    Deleted,
    BadState(String),
    Forbidden(ProductSet),
    /// 429 with `Retry-After` of this many seconds (none: no header).
    WindowLimited(i64),
    Accepted(Box<Link>),
}

/// Everything behind the simulator's one lock.
pub(crate) struct State {
    pub cfg: SimConfig,
    pub started: DateTime<Utc>,
    pub links: HashMap<LinkId, LinkSim>,
    /// Listing order: configured links, then links as first seen.
    pub order: Vec<LinkId>,
    pub tokens: HashMap<String, DateTime<Utc>>,
    /// Test knob: refuse every token as expired (a server that disagrees).
    pub refuse_tokens: bool,
    pub stats: SimStats,
    /// When each authenticated refresh POST arrived, in arrival order: what
    /// a bill counts, so tests can check a budget in any rolling window.
    pub post_times: Vec<DateTime<Utc>>,
}

impl State {
    pub fn new(cfg: SimConfig, now: DateTime<Utc>) -> Self {
        let mut st = Self {
            cfg: SimConfig {
                links: Vec::new(),
                ..cfg.clone()
            },
            started: now,
            links: HashMap::with_capacity(cfg.links.len()),
            order: Vec::with_capacity(cfg.links.len()),
            tokens: HashMap::new(),
            refuse_tokens: false,
            stats: SimStats::default(),
            post_times: Vec::new(),
        };
        for l in cfg.links {
            st.upsert(l, now);
        }
        st
    }

    /// Adds a link or replaces its configuration, keeping its history.
    pub fn upsert(&mut self, cfg: SimLink, now: DateTime<Utc>) {
        match self.links.get_mut(&cfg.id) {
            Some(l) => l.cfg = cfg,
            None => {
                self.order.push(cfg.id.clone());
                self.links.insert(cfg.id.clone(), LinkSim::new(cfg, now));
            }
        }
    }

    pub fn record(&mut self, endpoint: &str, status: u16) {
        *self
            .stats
            .requests
            .entry(endpoint.to_owned())
            .or_default()
            .entry(status.to_string())
            .or_default() += 1;
    }

    pub fn in_outage(&self, now: DateTime<Utc>) -> bool {
        self.cfg.faults.outages.iter().any(|o| {
            let start = self.started + TimeDelta::from_std(o.start_after).unwrap_or(TimeDelta::MAX);
            let end = start + TimeDelta::from_std(o.duration).unwrap_or(TimeDelta::MAX);
            start <= now && now < end
        })
    }

    /// The link, created on first sight when unknown links are allowed.
    pub fn link_mut(&mut self, id: &LinkId, now: DateTime<Utc>) -> Option<&mut LinkSim> {
        if !self.links.contains_key(id) {
            if !self.cfg.unknown_links_allowed {
                return None;
            }
            self.upsert(SimLink::healthy(id.clone()), now);
        }
        self.links.get_mut(id)
    }

    /// Issues a token valid until `now + token_ttl`.
    pub fn issue_token(&mut self, now: DateTime<Utc>) -> (String, u64) {
        self.stats.tokens_issued += 1;
        let value = format!(
            "sim_at_{}_{:016x}",
            self.stats.tokens_issued,
            rand::random::<u64>()
        );
        let ttl = self.cfg.token_ttl;
        let expires = now + TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX);
        if self.tokens.len() > 10_000 {
            self.tokens.retain(|_, exp| *exp > now);
        }
        self.tokens.insert(value.clone(), expires);
        (value, ttl.as_secs())
    }

    /// `Err(error_code)` unless the bearer token is known and unexpired.
    pub fn check_token(&self, token: Option<&str>, now: DateTime<Utc>) -> Result<(), &'static str> {
        match token.and_then(|t| self.tokens.get(t)) {
            None => Err("api_error.auth.unauthorized"),
            Some(exp) if *exp <= now || self.refuse_tokens => {
                Err("api_error.auth.expired_access_token")
            }
            Some(_) => Ok(()),
        }
    }

    /// Applies one authenticated refresh request. `force_429` is the
    /// injected-fault roll; it only applies once the request passed the link checks.
    pub fn refresh(
        &mut self,
        id: &LinkId,
        asked: ProductSet,
        now: DateTime<Utc>,
        force_429: bool,
    ) -> RefreshDecision {
        self.post_times.push(now);
        for p in asked.iter() {
            *self
                .stats
                .products_requested
                .entry(p.as_str().to_owned())
                .or_default() += 1;
        }
        let windows = self.cfg.windows;
        let Some(link) = self.link_mut(id, now) else {
            return RefreshDecision::NotFound;
        };
        link.posts += 1;
        let posts = link.posts;
        let until = link.retry_after_until;
        let decision = match link.cfg.state {
            SimLinkState::NotFound => RefreshDecision::NotFound,
            SimLinkState::Deleted => RefreshDecision::Deleted,
            SimLinkState::NeedsUserAction => RefreshDecision::BadState(link.link_error_code()),
            SimLinkState::Healthy => {
                let forbidden = ProductSet::from_iter(
                    asked
                        .iter()
                        .filter(|p| link.cfg.forbidden_products.contains(*p)),
                );
                if !forbidden.is_empty() {
                    RefreshDecision::Forbidden(forbidden)
                } else {
                    let window_end = asked
                        .iter()
                        .filter_map(|p| {
                            let start = link.products[p.index()].window_start?;
                            let end = start
                                + TimeDelta::from_std(windows.get(p)).unwrap_or(TimeDelta::MAX);
                            (now < end).then_some(end)
                        })
                        .max();
                    if let Some(end) = window_end {
                        // Logged, so that a violation can be traced back
                        // to the POSTs on either side of it.
                        tracing::warn!(link = %id, products = %asked, at = %now, window_ends = %end, "POST inside a rate-limit window: answered 429, counted as a violation");
                        // Ceil, so a client that honours it lands after the window.
                        let ms = (end - now).num_milliseconds();
                        let secs = (ms + 999) / 1000;
                        link.retry_after_until = Some(end.max(until.unwrap_or(end)));
                        RefreshDecision::WindowLimited(secs.max(1))
                    } else if force_429 {
                        RefreshDecision::WindowLimited(-1)
                    } else {
                        for p in asked.iter() {
                            let s = &mut link.products[p.index()];
                            s.last_attempted_at = Some(now);
                            if link.cfg.rate_limited_products.contains(p) {
                                s.error = Some(ProductErrorCode::RateLimit);
                            } else {
                                s.error = None;
                                s.window_start = Some(now);
                                s.refreshed_at = Some(now);
                            }
                        }
                        RefreshDecision::Accepted(Box::new(link.view()))
                    }
                }
            }
        };
        self.stats
            .posts_per_link
            .insert(id.as_str().to_owned(), posts);
        *self
            .stats
            .posts_per_100ms
            .entry(now.timestamp_millis().div_euclid(100))
            .or_default() += 1;
        if until.is_some_and(|u| now < u) {
            self.stats.retry_after_violations += 1;
        }
        match &decision {
            RefreshDecision::WindowLimited(s) if *s > 0 => self.stats.violations += 1,
            RefreshDecision::Accepted(_) => {
                let rl = self.links[id].cfg.rate_limited_products;
                for p in asked.iter().filter(|p| !rl.contains(*p)) {
                    *self
                        .stats
                        .products_refreshed
                        .entry(p.as_str().to_owned())
                        .or_default() += 1;
                }
            }
            _ => {}
        }
        decision
    }

    /// Per product, the age of `refreshed_at` across every link refreshed
    /// at least once, at `now`. O(links): for benchmarks and tests, not a hot path.
    pub fn freshness(&self, now: DateTime<Utc>) -> BTreeMap<String, ProductFreshness> {
        let mut out = BTreeMap::new();
        for p in Product::ALL {
            let mut ages: Vec<i64> = self
                .links
                .values()
                .filter_map(|l| l.products[p.index()].refreshed_at)
                .map(|t| (now - t).num_milliseconds().max(0))
                .collect();
            if ages.is_empty() {
                continue;
            }
            ages.sort_unstable();
            let at = |q: f64| {
                let i = ((ages.len() as f64 * q).ceil() as usize).clamp(1, ages.len()) - 1;
                ages[i] as f64 / 1000.0
            };
            out.insert(
                p.as_str().to_owned(),
                ProductFreshness {
                    refreshed_links: ages.len() as u64,
                    p50_age_s: at(0.5),
                    p99_age_s: at(0.99),
                    max_age_s: at(1.0),
                },
            );
        }
        out
    }

    /// Sets the `Retry-After` deadline given to a link by an injected 429.
    pub fn note_retry_after(&mut self, id: &LinkId, until: DateTime<Utc>) {
        if let Some(l) = self.links.get_mut(id) {
            l.retry_after_until = Some(l.retry_after_until.map_or(until, |u| u.max(until)));
        }
    }
}
