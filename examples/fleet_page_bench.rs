//! Times the fleet page on a large fleet: fills a fresh SQLite store with
//! LINKS links (default 100,000; two products each, a request and an outcome
//! per link over the last hour, due times spread over the next hour), serves
//! the daemon's router and times `GET /` (aggregates recomputed on every
//! request: the cache is off), a search, a state filter, a far page and a
//! link's page.
//!
//! ```text
//! cargo run --release --example fleet_page_bench -- [LINKS]
//! ```
//!
//! Each store query is timed alone first.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use linkfresh::domain::{LinkId, ProductSet};
use linkfresh::moneykit::{ClientConfig, MoneyKit};
use linkfresh::policy::Rules;
use linkfresh::secret::Secret;
use linkfresh::server::fleet::FleetContext;
use linkfresh::server::{AppState, router};
use linkfresh::store::{self, Intent, LinkPatch, LinkSource, LinkSpec, Outcome};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("fleet.db").display()
    );
    let store = store::connect(&url).await?;
    let both = ProductSet::parse_list("accounts,transactions")?;
    let links: Vec<LinkSpec> = (0..n)
        .map(|i| LinkSpec {
            id: LinkId::parse(&format!("mk_{i:022}")).unwrap(),
            products: both,
            cadence: None,
            source: LinkSource::Config,
        })
        .collect();
    let t = Instant::now();
    let now = Utc::now();
    store.sync_config("bench", &links, now).await?;
    for (c, chunk) in links.chunks(5_000).enumerate() {
        let intents: Vec<Intent> = chunk
            .iter()
            .enumerate()
            .map(|(i, l)| Intent {
                link: l.id.clone(),
                products: both,
                at: now - TimeDelta::milliseconds(((c * 5_000 + i) * 3_600_000 / n) as i64),
                claim: None,
            })
            .collect();
        let ids = store.record_intents(&intents).await?;
        let outcomes: Vec<Outcome> = ids
            .iter()
            .zip(&intents)
            .enumerate()
            .map(|(i, (id, intent))| Outcome {
                attempt: id.expect("an unguarded intent is always recorded"),
                link: intent.link.clone(),
                label: match i % 50 {
                    0 => "rate_limited",
                    1 => "server_error",
                    _ => "accepted",
                }
                .into(),
                status: Some(202),
                detail: None,
                at: intent.at,
                patch: LinkPatch::default(),
            })
            .collect();
        store.record_outcomes(&outcomes).await?;
        let dues: Vec<_> = intents
            .iter()
            .flat_map(|i| {
                let due = i.at + TimeDelta::hours(1);
                both.iter().map(move |p| (i.link.clone(), p, Some(due)))
            })
            .collect();
        store.set_next_due(&dues).await?;
    }
    for l in links.iter().step_by(97) {
        store.set_paused(&l.id, true, now).await?;
    }
    println!(
        "filled {n} links in {:.1?} ({})",
        t.elapsed(),
        store.describe()
    );

    let t = Instant::now();
    store.fleet_counts().await?;
    println!("fleet_counts                 {:>8.1?}", t.elapsed());
    let t = Instant::now();
    store.attempt_counts_since(now - TimeDelta::days(1)).await?;
    println!("attempt_counts_since(1 day)  {:>8.1?}", t.elapsed());
    let t = Instant::now();
    store
        .due_histogram(now, now + TimeDelta::hours(1), TimeDelta::minutes(1))
        .await?;
    println!("due_histogram(1 h by 1 min)  {:>8.1?}", t.elapsed());
    let t = Instant::now();
    store.data_age(now).await?;
    println!("data_age                     {:>8.1?}", t.elapsed());

    let client = MoneyKit::new(ClientConfig {
        base_url: "http://127.0.0.1:9".into(),
        client_id: "bench".into(),
        client_secret: Secret::new("bench"),
        api_version: "2023-02-18".into(),
        request_timeout: Duration::from_secs(1),
        scope: None,
    })?;
    let rules = tokio::sync::watch::channel(std::sync::Arc::new(Rules::default())).1;
    let mut fleet = FleetContext::new(rules, None, Default::default());
    // FLEET_TTL_MS=2000 measures the page as served (aggregates reused for
    // 2 s, refreshed in the background); the default 0 recomputes them for
    // every request.
    fleet.summary_ttl = Duration::from_millis(
        std::env::var("FLEET_TTL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let state = AppState::new(
        linkfresh::metrics::install(),
        store.clone(),
        client,
        Default::default(),
        fleet,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router(state)).await });

    let http = reqwest::Client::new();
    let far = format!("mk_{:022}", n * 9 / 10);
    for (label, path) in [
        ("GET /", "/".to_owned()),
        (
            "GET /?q=0000004242 (substring search)",
            "/?q=0000004242".to_owned(),
        ),
        ("GET /?state=paused", "/?state=paused".to_owned()),
        ("GET /?after=<90% id> (far page)", format!("/?after={far}")),
        ("GET /links/{id}", format!("/links/mk_{:022}", 4242)),
    ] {
        let mut times = Vec::new();
        for _ in 0..7 {
            let t = Instant::now();
            let resp = http.get(format!("http://{addr}{path}")).send().await?;
            anyhow::ensure!(resp.status().is_success(), "{path}: {}", resp.status());
            let body = resp.text().await?;
            times.push(t.elapsed());
            anyhow::ensure!(body.contains("</html>"));
        }
        times.sort();
        println!(
            "{label:<42} median {:>8.1?}  min {:>8.1?}  max {:>8.1?}",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1]
        );
    }
    Ok(())
}
