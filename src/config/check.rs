//! Turns the raw file into a checked [`Config`], naming every bad value.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::TimeDelta;

use super::check_links::{check_link, first_duplicate, profile_of, revision};
use super::checker::{Checker, database_url};
use super::raw::RawSettings;
use super::{
    Config, ConfigError, DEFAULT_INITIAL_SETTLE, DatabaseConfig, DiscoveryConfig, LinkConfig,
    MoneyKitConfig, SecretSource, ServerConfig, links_file,
};
use crate::domain::Product;
use crate::policy::partitions::{DEFAULT_PARTITIONS, MAX_PARTITIONS};
use crate::policy::{Limits, Rules};

/// Checks every value of `raw` read from `path`.
pub(super) fn check(
    path: &Path,
    raw: RawSettings,
    env: &HashMap<String, String>,
) -> Result<Config, ConfigError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Absolute, so that a daemon that changes directory still finds its files.
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let c = Checker {
        file: path.display().to_string(),
        dir: &dir,
    };

    let m = raw.moneykit;
    let base_url = m.base_url.trim_end_matches('/').to_owned();
    match reqwest::Url::parse(&base_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => {
            return Err(c.invalid(
                "[moneykit] base_url",
                &crate::secret::redact_url(&m.base_url),
                "not an http(s) URL; e.g. https://api.moneykit.com",
            ));
        }
    }
    if m.api_version.trim().is_empty() {
        return Err(c.invalid(
            "[moneykit] api_version",
            &m.api_version,
            "must not be empty; e.g. 2023-02-18",
        ));
    }
    if m.max_requests_per_second == 0 {
        return Err(c.invalid(
            "[moneykit] max_requests_per_second",
            "0",
            "must be at least 1",
        ));
    }
    if m.max_in_flight == 0 {
        return Err(c.invalid("[moneykit] max_in_flight", "0", "must be at least 1"));
    }
    let mut client_secret = c.secret(
        "[moneykit] client_secret",
        m.client_secret,
        m.client_secret_file.as_deref(),
    )?;
    if client_secret == SecretSource::Missing
        && let Some(dir) = env.get("CREDENTIALS_DIRECTORY")
    {
        // systemd's LoadCredential=client_secret:...
        client_secret = SecretSource::File(Path::new(dir).join("client_secret"));
    }
    let moneykit = MoneyKitConfig {
        base_url,
        client_id: m.client_id.filter(|s| !s.trim().is_empty()),
        client_secret,
        scope: m.scope,
        api_version: m.api_version,
        request_timeout: c.duration("[moneykit] request_timeout", &m.request_timeout, false)?,
        max_requests_per_second: m.max_requests_per_second,
        max_in_flight: m.max_in_flight,
    };

    let d = raw.database;
    let lease = c.duration("[database] lease", &d.lease, false)?;
    let initial_settle = match &d.initial_settle {
        None => DEFAULT_INITIAL_SETTLE.min(lease / 2),
        Some(raw) => {
            let settle = c.duration("[database] initial_settle", raw, true)?;
            if settle >= lease {
                return Err(c.invalid(
                    "[database] initial_settle",
                    raw,
                    format!(
                        "must be shorter than [database] lease ({}): a replica's announcement lasts one lease; \"0s\" turns the wait off",
                        d.lease
                    ),
                ));
            }
            settle
        }
    };
    let database = DatabaseConfig {
        url: database_url(&c, &d.url)?,
        lease,
        initial_settle,
        history_retention: c.duration(
            "[database] history_retention",
            &d.history_retention,
            false,
        )?,
        partitions: d.partitions,
    };
    if !(1..=MAX_PARTITIONS).contains(&d.partitions) {
        return Err(c.invalid(
            "[database] partitions",
            &d.partitions.to_string(),
            format!("must be from 1 to {MAX_PARTITIONS}; the default is {DEFAULT_PARTITIONS}"),
        ));
    }
    let revision_number = raw.revision.unwrap_or(0);
    if revision_number < 0 {
        return Err(c.invalid(
            "revision",
            &revision_number.to_string(),
            "must be a whole number of at least 0, raised with every config change a rolling update deploys",
        ));
    }

    let l = raw.limits;
    let mut windows = [TimeDelta::zero(); Product::ALL.len()];
    for (p, v) in [
        (Product::Accounts, &l.accounts),
        (Product::Transactions, &l.transactions),
        (Product::AccountNumbers, &l.account_numbers),
        (Product::Identity, &l.identity),
        (Product::Investments, &l.investments),
        (Product::Enrichment, &l.enrichment),
    ] {
        windows[p.index()] = c.delta(&format!("[limits] {p}"), v, false)?;
    }
    let limits = Limits::new(windows, c.delta("[limits] margin", &l.margin, true)?);

    let s = raw.schedule;
    let rules = Rules {
        limits,
        coalesce: c.delta("[schedule] coalesce", &s.coalesce, true)?,
        backoff_base: c.delta("[schedule] backoff_base", &s.backoff_base, false)?,
        backoff_max: c.delta("[schedule] backoff_max", &s.backoff_max, false)?,
        first_spread: c.delta("[schedule] first_spread", &s.first_spread, true)?,
        ride_along_share: s.ride_along_share,
        profiles: Default::default(),
    };
    if rules.backoff_max < rules.backoff_base {
        return Err(c.invalid(
            "[schedule] backoff_max",
            &s.backoff_max,
            format!(
                "is shorter than backoff_base = {:?}; backoff_max must be at least backoff_base",
                s.backoff_base
            ),
        ));
    }
    if !(0.0..=0.5).contains(&rules.ride_along_share) {
        return Err(c.invalid(
            "[schedule] ride_along_share",
            &s.ride_along_share.to_string(),
            "must be between 0 and 0.5 (a share of the product's window)",
        ));
    }

    let sv = raw.server;
    let server = ServerConfig {
        listen: sv.listen.parse().map_err(|_| {
            c.invalid(
                "[server] listen",
                &sv.listen,
                "not a socket address; e.g. 127.0.0.1:9464 or 0.0.0.0:9464",
            )
        })?,
        admin_token: c.secret(
            "[server] admin_token",
            sv.admin_token,
            sv.admin_token_file.as_deref(),
        )?,
        webhook_path: {
            let path = sv.webhook_path.trim();
            let ok = path.len() > 1
                && path.starts_with('/')
                && path
                    .chars()
                    .all(|ch| ch.is_ascii_graphic() && !"?#{}*:".contains(ch));
            if !ok {
                return Err(c.invalid(
                    "[server] webhook_path",
                    &sv.webhook_path,
                    "must be an absolute URL path without query, colons, braces or wildcards; e.g. /webhooks/moneykit",
                ));
            }
            if let Some(route) = overlapping_route(path) {
                return Err(c.invalid(
                    "[server] webhook_path",
                    &sv.webhook_path,
                    format!(
                        "overlaps {route}, which the server itself serves; reserved: {}; use another path, e.g. /webhooks/moneykit",
                        reserved_summary()
                    ),
                ));
            }
            path.to_owned()
        },
        webhook_listen: match sv.webhook_listen.as_deref() {
            None => None,
            Some(raw) => Some(raw.parse().map_err(|_| {
                c.invalid(
                    "[server] webhook_listen",
                    raw,
                    "not a socket address; e.g. 127.0.0.1:9465 behind a TLS-terminating proxy",
                )
            })?),
        },
    };
    if server.webhook_listen == Some(server.listen) {
        return Err(c.invalid(
            "[server] webhook_listen",
            &server.listen.to_string(),
            "must differ from [server] listen (it is a second listener serving only the webhook route)",
        ));
    }

    let dc = raw.discovery;
    let discovery = DiscoveryConfig {
        enabled: dc.enabled,
        every: c.duration("[discovery] every", &dc.every, false)?,
        products: c.products("[discovery] products", &dc.products)?,
        tags: dc.tags,
    };
    let profiles = super::profiles::check(&c.file, &rules, raw.defaults, raw.profiles)?;
    let default_products = profiles.default_profile().products;
    let rules = Rules {
        profiles: std::sync::Arc::new(profiles),
        ..rules
    };

    let mut links = Vec::new();
    for (i, rl) in raw.links.into_iter().enumerate() {
        links.push(check_link(&c, &rules, default_products, i, rl)?);
    }
    let from_table = links.len();
    let links_file = raw.links_file.as_deref().map(|f| c.path(f));
    // Line numbers of the links file's entries, for a duplicate's message.
    let mut file_lines: Vec<u32> = Vec::new();
    if let Some(lf) = &links_file {
        use std::io::BufRead as _;
        let name = lf.display().to_string();
        let cannot_read =
            |e: std::io::Error| c.invalid("links_file", &name, format!("cannot be read: {e}"));
        // A line at a time, each straight into its link: neither the
        // file's text nor a list of parsed lines is held beside the links.
        let mut reader = std::io::BufReader::new(std::fs::File::open(lf).map_err(cannot_read)?);
        // Sized once from a first pass: growing a million-link vector by
        // doubling copies it (mimalloc's realloc), the old one still held.
        let count = count_lines(&mut reader).map_err(cannot_read)?;
        links.reserve_exact(count);
        file_lines.reserve_exact(count);
        let mut raw = String::new();
        let mut number = 0usize;
        let name_of_file = name.clone();
        loop {
            raw.clear();
            if reader.read_line(&mut raw).map_err(cannot_read)? == 0 {
                break;
            }
            number += 1;
            let text = raw.strip_suffix('\n').unwrap_or(&raw);
            let text = text.strip_suffix('\r').unwrap_or(text);
            let parsed =
                links_file::parse_line(number, text).map_err(|e| ConfigError::LinksFile {
                    file: name.clone(),
                    line: e.line,
                    problem: e.problem,
                })?;
            let Some(line) = parsed else {
                continue;
            };
            file_lines.push(u32::try_from(line.line).unwrap_or(u32::MAX));
            links.push(LinkConfig {
                id: line.id,
                products: match (line.products, &line.profile) {
                    (Some(p), _) => p,
                    (None, Some(name)) => {
                        profile_of(&rules, name)
                            .map_err(|problem| ConfigError::LinksFile {
                                file: name_of_file.clone(),
                                line: line.line,
                                problem,
                            })?
                            .products
                    }
                    (None, None) => default_products,
                },
                cadence: BTreeMap::new(),
                profile: match line.profile {
                    Some(name) => {
                        profile_of(&rules, &name).map_err(|problem| ConfigError::LinksFile {
                            file: name_of_file.clone(),
                            line: line.line,
                            problem,
                        })?;
                        Some(name)
                    }
                    None => None,
                },
            });
        }
    }
    if let Some((first, second)) = first_duplicate(&links) {
        let origin = |i: usize| match i.checked_sub(from_table) {
            None => format!("{} [[links]] #{}", c.file, i + 1),
            Some(j) => format!(
                "{}:{}",
                links_file.as_deref().unwrap_or(Path::new("")).display(),
                file_lines[j]
            ),
        };
        return Err(ConfigError::Duplicate {
            id: links[first].id.to_string(),
            first: origin(first),
            second: origin(second),
        });
    }

    let revision = revision(&links);
    let slack = crate::duration::to_delta(moneykit.request_timeout) + rules.limits.margin;
    let budget =
        super::budget::check_budget(&c.file, raw.budget, database.history_retention, slack)?;
    let events = super::events::check(&c.file, c.dir, raw.events)?;
    Ok(Config {
        path: path.to_path_buf(),
        moneykit,
        database,
        rules,
        server,
        discovery,
        default_products,
        links,
        links_file,
        revision,
        budget,
        events,
        revision_number,
    })
}

/// The number of lines of a file (its line ends, plus a last line without
/// one), read through `reader`, which is then rewound.
fn count_lines(reader: &mut std::io::BufReader<std::fs::File>) -> std::io::Result<usize> {
    use std::io::{BufRead as _, Seek as _};
    let (mut lines, mut last) = (0usize, b'\n');
    loop {
        let buf = reader.fill_buf()?;
        let Some(&end) = buf.last() else {
            break;
        };
        lines += buf.iter().filter(|&&b| b == b'\n').count();
        last = end;
        let n = buf.len();
        reader.consume(n);
    }
    reader.rewind()?;
    Ok(lines + usize::from(last != b'\n'))
}

/// The first path segment of a route (`""` for `/`).
fn first_segment(path: &str) -> &str {
    path.trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
}

/// The route of the daemon's own router that a webhook path would collide
/// with: any path in the namespace (first segment) of a served route, so
/// that `/api/...` and `/links/...` stay free for routes to come.
fn overlapping_route(path: &str) -> Option<&'static str> {
    let segment = first_segment(path);
    super::RESERVED_ROUTES
        .iter()
        .copied()
        .find(|route| path == *route || (!segment.is_empty() && first_segment(route) == segment))
}

/// The reserved routes for a message: `/, /metrics, ..., /links/..., /api/...`.
fn reserved_summary() -> String {
    let mut out: Vec<String> = Vec::new();
    for route in super::RESERVED_ROUTES {
        let segment = first_segment(route);
        let shown = if route.trim_start_matches('/').contains('/') || route.contains('{') {
            format!("/{segment}/...")
        } else {
            (*route).to_owned()
        };
        if !out.contains(&shown) {
            out.push(shown);
        }
    }
    out.join(", ")
}
