//! The sections of the fleet page `GET /`: counts by state, the "as of"
//! line, requests over the last hour and day, POSTs due per minute, data age
//! per product, and the searchable, keyset-paged table of links. Each writes
//! its HTML into the page body.

use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Utc};

use super::{PAGE_LINKS, Summary};
use crate::domain::LinkState;
use crate::explain::link_status_within;
use crate::server::AppState;
use crate::server::html::{age, bar_chart, escape, time, url_encode};
use crate::store::LinkRecord;
use crate::store::fleet::{FleetCounts, LinkSearch, ProductAge};

pub(super) fn counts_section(body: &mut String, c: &FleetCounts) {
    let _ = write!(
        body,
        "<section><h2>Links</h2><div class=\"cards\" id=\"counts\">\
         <div class=\"card\"><a href=\"/\"><b data-count=\"total\">{}</b>total</a></div>",
        c.total()
    );
    for state in LinkState::ALL.map(LinkState::as_str) {
        let n = c.by_state.get(state).copied().unwrap_or(0);
        let _ = write!(
            body,
            "<div class=\"card\"><a href=\"/?state={state}\"><b class=\"s-{state}\" data-count=\"{state}\">{n}</b>{state}</a></div>"
        );
    }
    let _ = write!(
        body,
        "<div class=\"card\"><a href=\"/?state=removed\"><b data-count=\"removed\">{}</b>removed</a></div></div></section>",
        c.removed
    );
}

/// When the cards below were computed; the table is read per request.
pub(super) fn as_of_line(body: &mut String, s: &AppState, sum: &Summary) {
    let _ = write!(
        body,
        "<p class=\"muted\" id=\"as-of\">Figures as of <time datetime=\"{}\">{}</time> UTC \
         (recomputed when older than {} s); the links table is current.</p>",
        sum.as_of.format("%Y-%m-%dT%H:%M:%SZ"),
        sum.as_of.format("%H:%M:%S"),
        s.fleet.summary_ttl.as_secs_f64()
    );
}

pub(super) fn requests_section(body: &mut String, sum: &Summary) {
    body.push_str(
        "<section><h2>Refreshes sent</h2><table id=\"requests\"><tr><th></th>\
         <th class=\"n\">POSTs</th><th class=\"n\">429s</th><th class=\"n\">errors</th>\
         <th class=\"n\">no answer yet</th></tr>",
    );
    for (label, c) in [("last hour", sum.last_hour), ("last day", sum.last_day)] {
        let _ = write!(
            body,
            "<tr><th>{label}</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            c.sent, c.rate_limited, c.errors, c.pending
        );
    }
    body.push_str("</table></section>");
}

pub(super) fn due_section(body: &mut String, sum: &Summary) {
    let total: u64 = sum.due_per_minute.iter().sum();
    let peak = sum.due_per_minute.iter().copied().max().unwrap_or(0);
    let from = sum.due_from;
    let chart = bar_chart(&sum.due_per_minute, 1100, 160, 10, |i| {
        (from + TimeDelta::minutes(i as i64))
            .format("%H:%M")
            .to_string()
    });
    let _ = write!(
        body,
        "<section><h2>POSTs due in the next hour, per minute</h2>\
         <p class=\"muted\" id=\"due-summary\">{total} links due; busiest minute {peak}. \
         Times are UTC; each bar counts links with a product due in that minute.</p>{chart}</section>"
    );
}

pub(super) fn age_section(body: &mut String, ages: &[ProductAge]) {
    body.push_str(
        "<section><h2>Data age per product (since last requested)</h2><table id=\"ages\"><tr>\
         <th>product</th><th class=\"n\">links</th><th class=\"n\">never requested</th>\
         <th class=\"n\">median</th><th class=\"n\">p90</th><th class=\"n\">p99</th><th class=\"n\">oldest</th></tr>",
    );
    for a in ages {
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            a.product,
            a.rows,
            a.never,
            age(a.p50),
            age(a.p90),
            age(a.p99),
            age(a.max)
        );
    }
    if ages.is_empty() {
        body.push_str("<tr><td colspan=\"7\" class=\"muted\">no products yet</td></tr>");
    }
    body.push_str("</table></section>");
}

/// The data age per profile and product, from the daemon's last gauge
/// pass (profiles are resolved in memory, so the store cannot group by
/// them; see [`crate::profile_ages`]). Shown only with profiles beyond
/// `[defaults]`, where it says more than the table above.
pub(super) fn profile_age_section(body: &mut String, snapshot: &crate::profile_ages::Snapshot) {
    if snapshot
        .ages
        .iter()
        .all(|a| a.profile.as_ref() == crate::policy::profile::DEFAULT_PROFILE)
    {
        return;
    }
    let secs = |s: Option<f64>| age(s.map(|s| TimeDelta::milliseconds((s * 1000.0) as i64)));
    let as_of = time(snapshot.at);
    let _ = write!(
        body,
        "<section><h2>Data age per profile</h2>\
         <p class=\"muted\">The links this daemon schedules (with several replicas, its share), as of {as_of}.</p>\
         <table id=\"profile-ages\"><tr><th>profile</th><th>product</th><th class=\"n\">links</th>\
         <th class=\"n\">never requested</th><th class=\"n\">median</th><th class=\"n\">p99</th><th class=\"n\">oldest</th></tr>"
    );
    for a in snapshot.ages.iter() {
        let _ = write!(
            body,
            "<tr data-profile=\"{}\"><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&a.profile),
            escape(&a.profile),
            a.product,
            a.links,
            a.never,
            secs(a.p50),
            secs(a.p99),
            secs(a.max),
        );
    }
    body.push_str("</table></section>");
}

pub(super) fn table_section(
    body: &mut String,
    s: &AppState,
    sum: &Summary,
    search: &LinkSearch,
    records: &[LinkRecord],
    more: bool,
    now: DateTime<Utc>,
) {
    let selected = if search.removed {
        "removed"
    } else {
        search.state.map(|s| s.as_str()).unwrap_or("")
    };
    let _ = write!(
        body,
        "<section><h2>Links</h2><form method=\"get\" action=\"/\">\
         <input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"link id contains…\" size=\"40\">\
         <select name=\"state\"><option value=\"\">live links, any state</option>",
        escape(&search.text)
    );
    for state in LinkState::ALL
        .iter()
        .map(|s| s.as_str())
        .chain(std::iter::once("removed"))
    {
        let sel = if state == selected { " selected" } else { "" };
        let _ = write!(body, "<option value=\"{state}\"{sel}>{state}</option>");
    }
    body.push_str(
        "</select><button type=\"submit\">Search</button></form><table id=\"links\"><tr><th>link</th><th>state</th>\
         <th>source</th><th>product</th><th>last requested</th><th>next due</th><th>why</th></tr>",
    );
    let rules = s.fleet.rules();
    for rec in records {
        let budget = sum
            .budget
            .as_ref()
            .map(|b| (&b.config.budget, &b.usage[..]));
        let status = link_status_within(rec, &rules, budget, now);
        let span = status.products.len().max(1);
        let _ = write!(
            body,
            "<tr class=\"link\"><td rowspan=\"{span}\"><a href=\"/links/{}\">{}</a></td>\
             <td rowspan=\"{span}\" class=\"s-{}\">{}</td><td rowspan=\"{span}\">{}</td>",
            url_encode(rec.id.as_str()),
            escape(rec.id.as_str()),
            rec.state,
            rec.state,
            rec.source
        );
        if status.products.is_empty() {
            body.push_str("<td colspan=\"4\" class=\"muted\">no products</td></tr>");
        }
        for (i, p) in status.products.iter().enumerate() {
            if i > 0 {
                body.push_str("<tr>");
            }
            let _ = write!(
                body,
                "<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                p.product,
                time(p.last_requested_at),
                time(p.next_due_at),
                escape(&p.why_text)
            );
        }
    }
    if records.is_empty() {
        body.push_str("<tr><td colspan=\"7\" class=\"muted\">no links match</td></tr>");
    }
    body.push_str("</table>");
    if let (true, Some(last)) = (more, records.last()) {
        let _ = write!(
            body,
            "<p><a id=\"next\" href=\"/?q={}&amp;state={}&amp;after={}\">next {PAGE_LINKS} →</a></p>",
            url_encode(&search.text),
            url_encode(selected),
            url_encode(last.id.as_str())
        );
    }
    body.push_str("</section>");
}
