//! Small helpers for the server-rendered pages: escaping, the page frame,
//! time formatting and the inline SVG bar chart. No templates, no scripts,
//! no external assets: the pages work offline and behind any proxy.

use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Utc};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query or path component (RFC 3986 unreserved kept).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}\
header{background:#1d2330;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:baseline}\
header a{color:#fff;text-decoration:none;font-weight:600;font-size:18px}header span{color:#aab}\
main{padding:16px 24px;max-width:1200px}section{background:#fff;border:1px solid #dde;border-radius:6px;padding:12px 16px;margin:0 0 16px}\
h2{font-size:15px;margin:0 0 8px}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef;vertical-align:top}th{color:#556;font-weight:600}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.cards{display:flex;gap:12px;flex-wrap:wrap}\
.card{border:1px solid #dde;border-radius:6px;padding:8px 14px;min-width:110px;background:#fff}\
.card b{display:block;font-size:22px}.card a{color:inherit;text-decoration:none}\
.s-active{color:#17803d}.s-paused{color:#8a6d00}.s-not_found,.s-deleted{color:#a33}.s-needs_user_action{color:#b35c00}\
form{display:flex;gap:8px;margin:0 0 8px}input,select,button{font:inherit;padding:4px 8px}\
svg .bar{fill:#3b6fd8}svg .axis{stroke:#99a;stroke-width:1}svg text{font-size:11px;fill:#556}\
.muted{color:#778}code{font-size:13px}";

/// Wraps `body` in the page frame with `title`.
pub fn page(title: &str, store: &str, now: DateTime<Utc>, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body>\
         <header><a href=\"/\">linkfresh</a><a href=\"/replicas\">replicas</a><span>{}</span><span>store {}</span><span>{} UTC</span></header>\
         <main>{body}</main></body></html>",
        escape(title),
        escape(title),
        escape(store),
        now.format("%Y-%m-%d %H:%M:%S"),
    )
}

/// A time as the pages show it, or a dash.
pub fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

/// A duration rounded to its largest units (`3d 4h`, `12m 5s`, `800ms`).
pub fn age(d: Option<TimeDelta>) -> String {
    let Some(d) = d else { return "-".into() };
    let ms = d.num_milliseconds().max(0);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// A bar chart of `counts` (one bar per bucket, labelled every `label_every`
/// buckets with `label(i)`), sized to `width` × `height` pixels.
pub fn bar_chart(
    counts: &[u64],
    width: u32,
    height: u32,
    label_every: usize,
    label: impl Fn(usize) -> String,
) -> String {
    let (left, bottom, top) = (40.0, 18.0, 8.0);
    let plot_w = f64::from(width) - left - 4.0;
    let plot_h = f64::from(height) - bottom - top;
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let slot = plot_w / counts.len().max(1) as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" aria-label=\"POSTs due per minute\">"
    );
    let base = top + plot_h;
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{left}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\"/>\
         <line class=\"axis\" x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{base}\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max}</text>\
         <text x=\"{}\" y=\"{base}\" text-anchor=\"end\">0</text>",
        left + plot_w,
        left - 4.0,
        top + 10.0,
        left - 4.0,
    );
    for (i, &n) in counts.iter().enumerate() {
        let x = left + i as f64 * slot;
        if n > 0 {
            let h = (n as f64 / max as f64 * plot_h).max(1.0);
            let _ = write!(
                svg,
                "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{} : {n}</title></rect>",
                x + 0.5,
                base - h,
                (slot - 1.0).max(1.0),
                escape(&label(i)),
            );
        }
        if label_every > 0 && i % label_every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{x:.1}\" y=\"{}\">{}</text>",
                base + 13.0,
                escape(&label(i))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn url_encoding_keeps_unreserved_characters() {
        assert_eq!(url_encode("mk_a-1.~ b/&"), "mk_a-1.~%20b%2F%26");
    }

    #[test]
    fn ages_are_rounded_to_their_largest_units() {
        assert_eq!(age(Some(TimeDelta::milliseconds(800))), "800ms");
        assert_eq!(age(Some(TimeDelta::seconds(725))), "12m 5s");
        assert_eq!(
            age(Some(TimeDelta::seconds(3 * 86_400 + 4 * 3600))),
            "3d 4h"
        );
    }

    #[test]
    fn the_chart_draws_one_bar_per_non_empty_bucket() {
        let svg = bar_chart(&[0, 3, 1], 300, 100, 1, |i| format!("+{i}m"));
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 2);
    }
}
