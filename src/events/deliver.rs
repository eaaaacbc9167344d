//! The delivery task: sends the outbox to `[events] url`, signed per
//! Standard Webhooks, in order per link, at least once.
//!
//! Each round claims the oldest pending event of each link (leased, so
//! that with several replicas one of them delivers it), sends them side by
//! side, and settles each: delivered on 2xx; retried later with backoff and
//! jitter on anything else, until `retry_for` is spent, then `failed`
//! (listed by `linkfresh events --failed`, replayable). A link's next
//! event waits for its head, so a receiver that was down gets each link's
//! backlog in order.
//!
//! A 410 Gone means the receiver asks never to be called again: the
//! endpoint is disabled in the store (every replica, across restarts) with
//! an error log, and events keep queueing, visible as pending, until the
//! url changes or `linkfresh events --enable`. It does not fail `/readyz`:
//! refreshing links goes on, and restarting linkfresh would not help.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::{counter, gauge};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::retry::next_try;
use crate::config::EventsConfig;
use crate::metrics::{EVENTS_OLDEST_PENDING_SECONDS, EVENTS_PENDING, EVENTS_TOTAL};
use crate::store::Store;
use crate::store::outbox::{EventRecord, Settle};

/// Events claimed per round.
const BATCH: u32 = 32;
/// The pause between rounds when nothing was due.
const POLL: Duration = Duration::from_millis(200);
/// The most of a receiver's answer that is read (for the error message).
const BODY_CAP: usize = 4096;
/// Delivered events are kept this long (for audits), then pruned.
const KEEP_DELIVERED: Duration = Duration::from_secs(7 * 86_400);

/// How one try ended.
enum Answer {
    Delivered,
    Gone,
    Failed(String),
}

/// Runs until `cancel`; spawned by the app when `[events]` is configured.
pub async fn run(store: Arc<dyn Store>, cfg: EventsConfig, cancel: CancellationToken) {
    // The config check verified the secret; a failure here is a bug.
    let signer = match standardwebhooks::Webhook::new(cfg.secret.expose()) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = %e, "[events] secret cannot sign; no events are sent");
            return;
        }
    };
    let client = match reqwest::Client::builder()
        .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
        .timeout(cfg.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("linkfresh/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the events client; no events are sent");
            return;
        }
    };
    let owner = format!("events-{:016x}", rand::random::<u64>());
    // A claim outlives the longest try; a replica that dies holding one
    // leaves it to the others after this.
    let lease = cfg.timeout + Duration::from_secs(5);
    let sweep_every = sweep_period(&cfg);
    let mut next_sweep = tokio::time::Instant::now();
    let mut next_prune = tokio::time::Instant::now();
    let mut warned_disabled = false;
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let now_i = tokio::time::Instant::now();
        if let Some(every) = sweep_every
            && now_i >= next_sweep
        {
            if let Err(e) = store.sweep_stale(&cfg.stale_after, Utc::now()).await {
                tracing::warn!(error = %e, "could not check for stale data");
            }
            next_sweep = now_i + every;
        }
        if now_i >= next_prune {
            let before = Utc::now() - crate::duration::to_delta(KEEP_DELIVERED);
            if let Err(e) = store.prune_events(before).await {
                tracing::warn!(error = %e, "could not prune delivered events");
            }
            next_prune = now_i + Duration::from_secs(3600);
        }
        publish_gauges(&*store).await;
        let sent = match store.event_endpoint().await {
            Ok(Some(ep)) if ep.disabled.is_some() => {
                if !warned_disabled {
                    tracing::error!(url = %crate::secret::redact_url(&ep.url), reason = ep.disabled.as_deref().unwrap_or(""), "the events endpoint is disabled; events queue until [events] url changes or `linkfresh events --enable`");
                    warned_disabled = true;
                }
                0
            }
            Ok(_) => {
                warned_disabled = false;
                round(&*store, &client, &signer, &cfg, &owner, lease).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the events endpoint");
                0
            }
        };
        if sent == 0 {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

/// How often the stale sweep runs: a tenth of the shortest `stale_after`,
/// between 200 ms and a minute; `None` without `stale_after`.
fn sweep_period(cfg: &EventsConfig) -> Option<Duration> {
    cfg.stale_after
        .iter()
        .map(|(_, d)| *d / 10)
        .min()
        .map(|d| d.clamp(Duration::from_millis(200), Duration::from_secs(60)))
}

async fn publish_gauges(store: &dyn Store) {
    if let Ok((n, oldest)) = store.pending_events().await {
        gauge!(EVENTS_PENDING).set(n as f64);
        let age = oldest.map_or(0.0, |t| {
            (Utc::now() - t).num_milliseconds().max(0) as f64 / 1e3
        });
        gauge!(EVENTS_OLDEST_PENDING_SECONDS).set(age);
    }
}

/// One round: claim, send side by side, settle. Returns the number tried.
async fn round(
    store: &dyn Store,
    client: &reqwest::Client,
    signer: &Arc<standardwebhooks::Webhook>,
    cfg: &EventsConfig,
    owner: &str,
    lease: Duration,
) -> usize {
    let claimed = match store.claim_events(owner, Utc::now(), lease, BATCH).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "could not claim events");
            return 0;
        }
    };
    let tried = claimed.len();
    let mut sends = JoinSet::new();
    for e in claimed {
        let (client, signer, url) = (client.clone(), signer.clone(), cfg.url.clone());
        sends.spawn(async move {
            let answer = send(&client, &signer, &url, &e).await;
            (e, answer)
        });
    }
    let mut gone = false;
    let mut settled = Vec::with_capacity(tried);
    while let Some(joined) = sends.join_next().await {
        let Ok((e, answer)) = joined else { continue };
        let now = Utc::now();
        let (how, result) = match answer {
            Answer::Delivered => (Settle::Delivered, "delivered"),
            Answer::Gone => {
                gone = true;
                (Settle::Release, "gone")
            }
            Answer::Failed(why) => settle_failure(&e, now, cfg, why),
        };
        counter!(EVENTS_TOTAL, "type" => e.kind.clone(), "result" => result).increment(1);
        settled.push((e.seq, how));
    }
    // One commit for the round; if it fails, the leases expire and the
    // events are sent again (at least once).
    if let Err(err) = store.settle_events(owner, &settled, Utc::now()).await {
        tracing::warn!(error = %err, events = settled.len(), "could not record deliveries; they will be sent again");
    }
    if gone {
        let reason = format!("the receiver answered 410 Gone at {}", Utc::now());
        tracing::error!(url = %crate::secret::redact_url(&cfg.url), "EVENTS ENDPOINT DISABLED: the receiver answered 410 Gone; no more events are sent until [events] url changes or `linkfresh events --enable`");
        if let Err(e) = store.disable_event_endpoint(Some(&reason)).await {
            tracing::error!(error = %e, "could not record the disabled events endpoint");
        }
    }
    tried
}

fn settle_failure(
    e: &EventRecord,
    now: DateTime<Utc>,
    cfg: &EventsConfig,
    why: String,
) -> (Settle, &'static str) {
    let seed = e.seq as u64 ^ u64::from(e.attempts);
    match next_try(
        e.retry_since,
        now,
        e.attempts + 1,
        cfg.backoff_base,
        cfg.backoff_max,
        cfg.retry_for,
        seed,
    ) {
        Some(at) => {
            tracing::warn!(event = %e.id, link = %e.link, attempts = e.attempts + 1, retry_at = %at, error = %why, "event not delivered; retrying");
            (Settle::Retry(at, why), "retried")
        }
        None => {
            tracing::error!(event = %e.id, link = %e.link, attempts = e.attempts + 1, error = %why, "event not delivered within [events] retry_for; marked failed (see `linkfresh events --failed`)");
            (Settle::Failed(why), "failed")
        }
    }
}

/// One signed POST of `e`: the same `webhook-id` on every try, a fresh
/// `webhook-timestamp` (receivers reject old ones).
async fn send(
    client: &reqwest::Client,
    signer: &standardwebhooks::Webhook,
    url: &str,
    e: &EventRecord,
) -> Answer {
    let ts = Utc::now().timestamp();
    let signature = match signer.sign(&e.id, ts, e.payload.as_bytes()) {
        Ok(s) => s,
        Err(err) => return Answer::Failed(format!("cannot sign: {err}")),
    };
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &e.id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(e.payload.clone())
        .send()
        .await;
    let mut resp = match sent {
        Ok(r) => r,
        Err(err) => return Answer::Failed(format!("{err}")),
    };
    let status = resp.status();
    if status.is_success() {
        return Answer::Delivered;
    }
    if status == reqwest::StatusCode::GONE {
        return Answer::Gone;
    }
    let mut body = Vec::new();
    while body.len() < BODY_CAP {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c[..c.len().min(BODY_CAP - body.len())]),
            _ => break,
        }
    }
    Answer::Failed(format!(
        "HTTP {status}: {}",
        String::from_utf8_lossy(&body).trim()
    ))
}
