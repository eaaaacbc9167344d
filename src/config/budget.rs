//! `[budget]`: the fleet-wide cap on POSTs in any rolling window, and the
//! optional price that turns POSTs into money in `plan`, the fleet page and
//! the metrics.
//!
//! Decisions written down here:
//! - `posts_per_day` is required once `[budget]` is present (a table that
//!   sets only a price would cap nothing, which is more likely a mistake
//!   than a wish) and must be at least 1.
//! - `window` is the rolling window the cap counts over, 24 h by default.
//!   It is a real setting, not a test knob: a team billed per week or per
//!   hour sets it, and the end-to-end tests use it to compress the day.
//!   It may not exceed `[database] history_retention` (less the slack of
//!   [`Budget::slack`]), since the count is read from the stored history of
//!   POSTs.
//! - `currency` is a three-letter code (`USD`, `EUR`) and needs
//!   `price_per_post`; a price without a currency is printed as a bare
//!   number.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::duration;
use crate::policy::budget::Budget;

/// `[budget]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBudget {
    pub posts_per_day: Option<i64>,
    pub price_per_post: Option<f64>,
    pub currency: Option<String>,
    pub window: Option<String>,
}

/// `[budget]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetConfig {
    /// The cap and its window, as the allocator uses them.
    pub budget: Budget,
    /// What one POST costs, if known.
    pub price_per_post: Option<f64>,
    /// The price's currency code.
    pub currency: Option<String>,
}

impl BudgetConfig {
    /// `posts` in money, e.g. `12.40 USD` (None without a price).
    pub fn money(&self, posts: u64) -> Option<String> {
        let price = self.price_per_post?;
        let amount = format!("{:.2}", price * posts as f64);
        Some(match &self.currency {
            Some(c) => format!("{amount} {c}"),
            None => amount,
        })
    }
}

/// The default rolling window.
pub const DEFAULT_WINDOW: &str = "24h";

/// Checks `[budget]`; `retention` is `[database] history_retention`;
/// `slack` how much later than its admission a POST may reach MoneyKit
/// (`[moneykit] request_timeout`, the longest a committed intent waits for
/// the wire, plus `[limits] margin`; see [`Budget::slack`]).
pub(super) fn check_budget(
    file: &str,
    raw: Option<RawBudget>,
    retention: Duration,
    slack: chrono::TimeDelta,
) -> Result<Option<BudgetConfig>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let invalid = |key: &str, value: String, problem: &str| ConfigError::Invalid {
        file: file.to_owned(),
        key: format!("[budget] {key}"),
        value,
        problem: problem.to_owned(),
    };
    let posts_per_day = match raw.posts_per_day {
        None => {
            return Err(ConfigError::Missing {
                file: file.to_owned(),
                key: "[budget] posts_per_day".into(),
                help: "a [budget] table needs the most POSTs allowed in any rolling window, e.g. posts_per_day = 50000".into(),
            });
        }
        Some(n) => u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
            invalid(
                "posts_per_day",
                n.to_string(),
                "must be a whole number from 1 to 4294967295",
            )
        })?,
    };
    let window_raw = raw.window.as_deref().unwrap_or(DEFAULT_WINDOW);
    let window = duration::parse_duration_bounded(window_raw)
        .map_err(|e| invalid("window", format!("{window_raw:?}"), &e.to_string()))?;
    if window < Duration::from_secs(1) {
        return Err(invalid(
            "window",
            format!("{window_raw:?}"),
            "must be at least 1s",
        ));
    }
    if duration::to_delta(window) + slack > duration::to_delta(retention) {
        return Err(invalid(
            "window",
            format!("{window_raw:?}"),
            "with [moneykit] request_timeout and [limits] margin, must not exceed [database] history_retention: the budget counts the POSTs kept in the history",
        ));
    }
    if let Some(p) = raw.price_per_post
        && !(p.is_finite() && p >= 0.0)
    {
        return Err(invalid(
            "price_per_post",
            p.to_string(),
            "must be a number of 0 or more",
        ));
    }
    if let Some(c) = &raw.currency {
        if raw.price_per_post.is_none() {
            return Err(invalid(
                "currency",
                format!("{c:?}"),
                "needs price_per_post: a currency without a price has nothing to name",
            ));
        }
        if !(c.len() == 3 && c.chars().all(|ch| ch.is_ascii_uppercase())) {
            return Err(invalid(
                "currency",
                format!("{c:?}"),
                "must be a three-letter ISO 4217 code in capitals, e.g. USD or EUR",
            ));
        }
    }
    Ok(Some(BudgetConfig {
        budget: Budget {
            posts_per_day,
            window: duration::to_delta(window),
            slack,
        },
        price_per_post: raw.price_per_post,
        currency: raw.currency,
    }))
}
