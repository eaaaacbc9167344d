//! The fleet page's budget card: POSTs used in the rolling window, the
//! limit, what is left, and where the current pace leads (with money when a
//! price is set). Shown only with a `[budget]`.

use std::fmt::Write as _;

use crate::config::BudgetConfig;
use crate::policy::budget::Standing;

/// The card's figures, computed with the page's other aggregates.
#[derive(Debug)]
pub(crate) struct BudgetFigures {
    /// The budget in force when the figures were computed.
    pub config: BudgetConfig,
    /// How it stands.
    pub standing: Standing,
    /// The POSTs spent in the window, for explaining the table's links.
    pub usage: Vec<(chrono::DateTime<chrono::Utc>, u32)>,
}

/// "Projected" is the POSTs a whole window would spend at the pace of its
/// last 1/24 (the last hour of a day), at most the limit: where the
/// budget ends the day if nothing changes. With pacing on, a fleet that
/// wants more than its budget shows the limit here.
pub(super) fn budget_section(body: &mut String, b: &BudgetFigures) {
    let s = &b.standing;
    let window = humantime::format_duration(b.budget_window().to_std().unwrap_or_default());
    let money = |n: u64| {
        b.config
            .money(n)
            .map(|m| format!(" · <span data-money>{m}</span>"))
            .unwrap_or_default()
    };
    let share = if s.limit == 0 {
        0.0
    } else {
        100.0 * s.used as f64 / s.limit as f64
    };
    let _ = write!(
        body,
        "<section><h2>Budget</h2><div class=\"cards\" id=\"budget\">\
         <div class=\"card\"><b data-budget=\"used\">{}</b>used in the last {window} ({share:.0}%){}</div>\
         <div class=\"card\"><b data-budget=\"limit\">{}</b>limit per {window}{}</div>\
         <div class=\"card\"><b data-budget=\"remaining\">{}</b>left now</div>\
         <div class=\"card\"><b data-budget=\"projected\">{}</b>projected per {window} at the pace of its last 1/24{}</div>\
         </div></section>",
        s.used,
        money(s.used),
        s.limit,
        money(s.limit),
        s.remaining,
        s.projected,
        money(s.projected),
    );
}

impl BudgetFigures {
    fn budget_window(&self) -> chrono::TimeDelta {
        self.config.budget.window
    }
}
