//! `linkfresh check`: validate the configuration and print what it will do.

use chrono::TimeDelta;

use super::{ConfigArg, Failure};
use crate::config::{self, Config, SecretSource};
use crate::domain::Product;
use crate::policy::Cadence;
use crate::secret::redact_url;

/// Runs `check`: a bad config is returned as an error (exit 2).
pub fn run(args: &ConfigArg) -> Result<(), Failure> {
    let config = args.load()?;
    // What `run` judges, except that a secret file absent here is a warning.
    let credentials = config::credentials(&config, config::Stage::Check)?;
    for w in &credentials.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", summary(&config));
    Ok(())
}

/// The most requests per day a link can cost: each product at most once per
/// its spacing (or its `every`), and about one POST per spacing of its
/// fastest product, since slower products ride along.
fn per_day(config: &Config) -> ([u64; Product::ALL.len()], u64) {
    let day = TimeDelta::days(1).num_milliseconds() as f64;
    let mut per_product = [0u64; Product::ALL.len()];
    let mut posts = 0u64;
    for link in &config.links {
        let mut fastest = f64::MAX;
        for p in link.products.iter() {
            let spacing = config.rules.limits.spacing(p);
            let spacing = match link.cadence_in(&config.rules, p) {
                Cadence::Every(e) => e.max(spacing),
                // At most: as if the user were always active.
                Cadence::Demand(d) => match d.active {
                    Cadence::Every(e) => e.max(spacing),
                    _ => spacing,
                },
                _ => spacing,
            };
            let ms = spacing.num_milliseconds().max(1) as f64;
            per_product[p.index()] += (day / ms).ceil() as u64;
            fastest = fastest.min(ms);
        }
        posts += (day / fastest).ceil() as u64;
    }
    (per_product, posts)
}

/// `profiles: default (3 links), premium (priority 10, tags plan:premium,
/// demand; 1 link by name)`: links by name only, tags are learned at run time.
fn profiles_line(config: &Config) -> String {
    let profiles = &config.rules.profiles;
    let mut parts = Vec::new();
    for p in std::iter::once(profiles.default_profile()).chain(profiles.named()) {
        let named = config
            .links
            .iter()
            .filter(|l| std::sync::Arc::ptr_eq(profiles.select(l.profile.as_deref(), &[]), p))
            .count();
        let mut about = Vec::new();
        if p.priority != 0 {
            about.push(format!("priority {}", p.priority));
        }
        if !p.tags.is_empty() {
            about.push(format!("tags {}", p.tags.join(" ")));
        }
        if p.has_demand() {
            about.push("active/idle".to_owned());
        }
        let about = if about.is_empty() {
            String::new()
        } else {
            format!("{}; ", about.join(", "))
        };
        parts.push(format!(
            "{} ({about}{named} link{})",
            p.name,
            if named == 1 { "" } else { "s" }
        ));
    }
    format!("profiles: {}\n", parts.join(", "))
}

fn human(d: TimeDelta) -> String {
    humantime::format_duration(d.to_std().unwrap_or_default()).to_string()
}

fn secret_line(what: &str, s: &SecretSource) -> String {
    match s {
        SecretSource::Missing => format!("{what}: not set"),
        SecretSource::Inline(_) => format!("{what}: set inline or from the environment"),
        SecretSource::File(p) if p.is_file() => format!("{what}: file {}", p.display()),
        SecretSource::File(p) => {
            format!("{what}: file {} (WARNING: not readable here)", p.display())
        }
    }
}

/// The text `check` prints.
pub fn summary(config: &Config) -> String {
    let (per_product, posts) = per_day(config);
    let mut out = format!(
        "config: {} (revision {})\n",
        config.path.display(),
        config.revision
    );
    out += &format!("links: {}", config.links.len());
    if let Some(f) = &config.links_file {
        out += &format!(" (links_file {})", f.display());
    }
    out += "\n";
    let counts: Vec<String> = Product::ALL
        .iter()
        .map(|p| {
            (
                p,
                config
                    .links
                    .iter()
                    .filter(|l| l.products.contains(*p))
                    .count(),
            )
        })
        .filter(|(_, n)| *n > 0)
        .map(|(p, n)| format!("{p} {n}"))
        .collect();
    out += &format!("products: {}\n", counts.join(", "));
    out += &profiles_line(config);
    let limits: Vec<String> = Product::ALL
        .iter()
        .map(|p| format!("{p} {}", human(config.rules.limits.window(*p))))
        .collect();
    out += &format!(
        "limits: {}; margin {}\n",
        limits.join(", "),
        human(config.rules.limits.margin)
    );
    let total: u64 = per_product.iter().sum();
    out += &format!(
        "cost per day at most: {total} product refreshes in about {posts} POSTs ({:.3} POSTs/s; max_requests_per_second = {})\n",
        posts as f64 / 86_400.0,
        config.moneykit.max_requests_per_second
    );
    if let Some(b) = &config.budget {
        out += &super::plan_cost::check_line(b, posts);
    }
    out += &format!("database: {}\n", redact_url(&config.database.url));
    out += &format!(
        "moneykit: {} (version {})\n",
        redact_url(&config.moneykit.base_url),
        config.moneykit.api_version
    );
    out += &format!(
        "{}; {}\n",
        match &config.moneykit.client_id {
            Some(_) => "client_id: set".to_owned(),
            None =>
                "client_id: not set (required by run: [moneykit] client_id or MONEYKIT_CLIENT_ID)"
                    .to_owned(),
        },
        secret_line("client_secret", &config.moneykit.client_secret)
    );
    out += &format!(
        "server: {}; {}\n",
        config.server.listen,
        secret_line("admin_token", &config.server.admin_token)
    );
    if config.discovery.enabled {
        out += &format!(
            "discovery: every {}\n",
            humantime::format_duration(config.discovery.every)
        );
    }
    if let Some(events) = &config.events {
        let stale: Vec<String> = events
            .stale_after
            .iter()
            .map(|(p, d)| format!("{p} {}", humantime::format_duration(*d)))
            .collect();
        out += &format!(
            "events: {} (secret set; retry for {}; stale after: {})\n",
            crate::secret::redact_url(&events.url),
            humantime::format_duration(events.retry_for),
            if stale.is_empty() {
                "not checked".to_owned()
            } else {
                stale.join(", ")
            }
        );
    }
    out += "ok\n";
    out
}
