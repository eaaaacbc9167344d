//! Reads the fleet page (`GET /`, as the server sends it or as Chromium
//! serialises its DOM) into numbers, and checks that its cards agree with its
//! own table: a page whose aggregates are older than its table (issue 14,
//! item 14: "0 POSTs in the last hour" above rows requested seconds ago) is
//! caught here, by the plain-HTTP test and the browser test alike.
//!
//! The table shows one page of live links, so the agreement is only
//! complete when every link fits on it (no `next` link) and none is removed;
//! and the table is read after the figures, so the fleet must be quiet in
//! between ([`quiet_fleet`]). Include beside `common/daemon.rs` as `daemon`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use linkfresh::domain::LinkId;
use linkfresh::sim::{SimConfig, SimLink, SimLinkState, Windows};

use crate::daemon::{TestDaemon, http_get, link_ids};

/// A product's last request and next due time, `None` shown as `-`.
pub type Times = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// One link of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub state: String,
    /// product -> its times.
    pub products: BTreeMap<String, Times>,
}

/// What the page says.
#[derive(Debug, Clone)]
pub struct FleetPage {
    /// The time in the page's header (when it was rendered).
    pub rendered_at: DateTime<Utc>,
    /// When the aggregates were computed (`as of`), if the page says.
    pub as_of: Option<DateTime<Utc>>,
    /// `data-count` cards: total, each state, removed.
    pub cards: BTreeMap<String, u64>,
    /// POSTs in the last hour.
    pub posts_last_hour: u64,
    /// Links due in the next hour.
    pub due_next_hour: u64,
    /// product -> never requested.
    pub never: BTreeMap<String, u64>,
    /// The links table.
    pub rows: Vec<Row>,
    /// Whether the table has a next page.
    pub more: bool,
}

fn after<'a>(html: &'a str, marker: &str) -> &'a str {
    let i = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} on the page:\n{html}"));
    &html[i + marker.len()..]
}

fn number(s: &str) -> u64 {
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number at {:?}", &s[..s.len().min(40)]))
}

fn text(cell: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in cell.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&amp;", "&").trim().to_owned()
}

/// The inner texts of the `<td>` cells of one `<tr>` chunk.
fn cells(tr: &str) -> Vec<String> {
    tr.split("<td")
        .skip(1)
        .map(|c| {
            let inner = &c[c.find('>').map_or(0, |i| i + 1)..];
            text(inner.split("</td>").next().unwrap_or(inner))
        })
        .collect()
}

/// The `<tr>` chunks of the table with `id`.
fn table<'a>(html: &'a str, id: &str) -> Vec<&'a str> {
    let t = after(html, &format!("id=\"{id}\""));
    let t = &t[..t.find("</table>").unwrap_or(t.len())];
    t.split("<tr").skip(1).collect()
}

fn time(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

impl FleetPage {
    /// Reads `html`; panics naming what is missing.
    pub fn parse(html: &str) -> Self {
        let header = after(html, "<header>");
        let rendered_at = header
            .split("<span>")
            .filter_map(|s| s.split(" UTC</span>").next().and_then(time))
            .next()
            .unwrap_or_else(|| panic!("no time in the header:\n{html}"));
        let as_of = html.find("id=\"as-of\"").map(|_| {
            let dt = after(after(html, "id=\"as-of\""), "datetime=\"");
            let dt = &dt[..dt.find('"').unwrap()];
            let t = DateTime::parse_from_rfc3339(dt)
                .unwrap_or_else(|e| panic!("as-of {dt:?}: {e}"))
                .with_timezone(&Utc);
            let shown = format!("as of {}", t.format("%H:%M:%S"));
            assert!(
                text(after(html, "id=\"as-of\"")).contains(&shown),
                "the page does not print {shown:?}:\n{html}"
            );
            t
        });
        let mut cards = BTreeMap::new();
        for chunk in html.split("data-count=\"").skip(1) {
            let (key, rest) = chunk.split_once('"').unwrap();
            cards.insert(key.to_owned(), number(after(rest, ">")));
        }
        let last_hour = table(html, "requests")
            .into_iter()
            .find(|tr| tr.contains("last hour"))
            .expect("no last-hour row");
        let posts_last_hour = number(&cells(last_hour)[0]);
        let due_next_hour = number(after(after(html, "id=\"due-summary\""), ">").trim_start());
        let never = table(html, "ages")
            .into_iter()
            .map(cells)
            .filter(|c| c.len() >= 3)
            .map(|c| (c[0].clone(), number(&c[2])))
            .collect();
        let mut rows: Vec<Row> = Vec::new();
        for tr in table(html, "links") {
            let c = cells(tr);
            let product = if tr.starts_with(" class=\"link\"") {
                rows.push(Row {
                    id: c[0].clone(),
                    state: c[1].clone(),
                    products: BTreeMap::new(),
                });
                c.get(3..)
            } else {
                c.get(0..)
            };
            if let (Some(p), Some(row)) = (product.filter(|p| p.len() >= 3), rows.last_mut()) {
                row.products
                    .insert(p[0].clone(), (time(&p[1]), time(&p[2])));
            }
        }
        Self {
            rendered_at,
            as_of,
            cards,
            posts_last_hour,
            due_next_hour,
            never,
            rows,
            more: html.contains("id=\"next\""),
        }
    }

    /// Asserts that the cards agree with the table (see the module doc):
    /// figures as of `as_of` (or, for a page that does not say, as of its
    /// render time) against rows rendered at or after it. Times on the page
    /// have whole seconds, so a row counts as before `as_of` only when its
    /// second is strictly earlier.
    pub fn assert_cards_agree_with_table(&self) {
        assert!(!self.more, "every link must fit on one page to compare");
        let as_of = self.as_of.unwrap_or(self.rendered_at);
        let ctx = format!("figures as of {as_of} against the table {:#?}", self.rows);
        let card = |k: &str| self.cards.get(k).copied().unwrap_or(0);
        assert_eq!(card("removed"), 0, "removed links are not in the table");
        assert_eq!(card("total"), self.rows.len() as u64, "total; {ctx}");
        for state in [
            "active",
            "paused",
            "needs_user_action",
            "not_found",
            "deleted",
        ] {
            let rows = self.rows.iter().filter(|r| r.state == state).count() as u64;
            assert_eq!(card(state), rows, "links {state}; {ctx}");
        }
        let hour_before = as_of - TimeDelta::hours(1);
        let requested_before = self
            .rows
            .iter()
            .filter(|r| {
                r.products
                    .values()
                    .any(|(last, _)| last.is_some_and(|t| t >= hour_before && t < as_of))
            })
            .count() as u64;
        assert!(
            self.posts_last_hour >= requested_before,
            "{} POSTs in the last hour, yet {requested_before} links of the table were requested in it; {ctx}",
            self.posts_last_hour
        );
        let due_inside = self
            .rows
            .iter()
            .filter(|r| {
                r.products.values().any(|(_, next)| {
                    next.is_some_and(|t| {
                        t > as_of + TimeDelta::seconds(2)
                            && t < as_of + TimeDelta::hours(1) - TimeDelta::seconds(2)
                    })
                })
            })
            .count() as u64;
        assert!(
            self.due_next_hour >= due_inside,
            "{} links due in the next hour, yet {due_inside} links of the table are; {ctx}",
            self.due_next_hour
        );
        let mut products: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for (p, (last, _)) in self.rows.iter().flat_map(|r| r.products.iter()) {
            let (never, since) = products.entry(p).or_default();
            match last {
                None => *never += 1,
                Some(t) if *t >= as_of => *since += 1,
                Some(_) => {}
            }
        }
        for (p, (never, since)) in products {
            let shown = self.never.get(p).copied().unwrap_or(0);
            assert!(
                shown >= never && shown <= never + since,
                "{p}: {shown} never requested, the table shows {never} (and {since} requested since); {ctx}"
            );
        }
    }
}

/// Starts four healthy links and one MoneyKit has deleted, on 30-minute
/// windows, and waits until each has had its one answer.
pub async fn quiet_fleet() -> (TestDaemon, chrono::DateTime<Utc>) {
    let mut links = link_ids("mk_agree", 4);
    links.push("mk_agree_gone".into());
    let mut d = TestDaemon::start(
        SimConfig {
            windows: Windows::uniform(Duration::from_secs(1800)),
            links: vec![
                SimLink::healthy(LinkId::parse("mk_agree_gone").unwrap())
                    .with_state(SimLinkState::Deleted),
            ],
            ..SimConfig::default()
        },
        &links,
        "\"accounts\", \"transactions\"",
        "",
    )
    .await;
    let mut answered = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while answered.len() < links.len() {
        assert!(Instant::now() < deadline, "answered only {answered:?}");
        if let Ok(Some(a)) =
            tokio::time::timeout(Duration::from_millis(200), d.activity.recv()).await
        {
            answered.insert(a.link.to_string());
        }
    }
    (d, Utc::now())
}

/// GETs `/` until its figures are from after `quiet` (a second later, so
/// the last outcome is surely committed), within a deadline.
pub async fn page_after(addr: std::net::SocketAddr, quiet: chrono::DateTime<Utc>) -> FleetPage {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http_get(addr, "/").await;
        assert_eq!(status, 200, "{body}");
        let page = FleetPage::parse(&body);
        if page.as_of.unwrap_or(page.rendered_at) > quiet + TimeDelta::seconds(1) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "the figures never got past {quiet}: {page:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
