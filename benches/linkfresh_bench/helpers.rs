//! HTTP helpers against the simulator and daemon, the store read back, and
//! the statistics the scenarios compute.

use super::*;

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

pub(crate) async fn get_json(c: &reqwest::Client, url: &str) -> Result<Value> {
    Ok(c.get(url).send().await?.error_for_status()?.json().await?)
}

pub(crate) async fn wait_up(c: &reqwest::Client, url: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(r) = c.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("{url} did not answer within {limit:?}")
}

/// `requests[endpoint][status]` of `/_sim/stats`.
pub(crate) fn count(stats: &Value, endpoint: &str, status: Option<&str>) -> u64 {
    let Some(m) = stats["requests"][endpoint].as_object() else {
        return 0;
    };
    m.iter()
        .filter(|(k, _)| status.is_none_or(|s| s == k.as_str()))
        .map(|(_, v)| v.as_u64().unwrap_or(0))
        .sum()
}

pub(crate) fn sum_map(v: &Value) -> u64 {
    v.as_object()
        .map_or(0, |m| m.values().map(|v| v.as_u64().unwrap_or(0)).sum())
}

pub(crate) fn client(base_url: &str) -> Result<MoneyKit> {
    Ok(MoneyKit::new(ClientConfig {
        base_url: base_url.into(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        api_version: "2023-02-18".into(),
        request_timeout: Duration::from_secs(10),
        scope: None,
    })?)
}

/// Percentile (0..=1) of sorted values.
pub(crate) fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// `linkfresh_due_lag_seconds` buckets from `/metrics`: (le, cumulative count).
pub(crate) fn lag_histogram(text: &str) -> Vec<(f64, u64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("linkfresh_due_lag_seconds_bucket{le=\"") else {
            continue;
        };
        let Some((le, tail)) = rest.split_once("\"}") else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        let n = tail.trim().parse::<f64>().unwrap_or(0.0) as u64;
        out.push((le, n));
    }
    out
}

/// The smallest bucket bound holding quantile `q` of the histogram delta.
pub(crate) fn bucket_quantile(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> f64 {
    let delta: Vec<(f64, u64)> = after
        .iter()
        .map(|(le, n)| {
            let b = before.iter().find(|(l, _)| l == le).map_or(0, |(_, n)| *n);
            (*le, n.saturating_sub(b))
        })
        .collect();
    let total = delta.last().map_or(0, |(_, n)| *n);
    if total == 0 {
        return f64::NAN;
    }
    let want = (total as f64 * q).ceil() as u64;
    delta
        .iter()
        .find(|(_, n)| *n >= want)
        .map_or(f64::INFINITY, |(le, _)| *le)
}

pub(crate) async fn open_store(db: &Path) -> Result<sqlx::SqlitePool> {
    use std::str::FromStr;
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display()))?
        .read_only(true);
    Ok(sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await?)
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
