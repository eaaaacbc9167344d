//! `--events-rate R`: the scenario with outbound events on (issue 18). The
//! simulator answers a share R/2 of refreshes 422 (`bad_state_rate`), each
//! a park and, at the next re-check, a resume: R events per POST. A
//! receiver in this process answers every delivery 204 and counts them.

use super::*;

/// The bench's own events receiver.
pub(crate) struct EventsSink {
    /// Deliveries received.
    pub(crate) received: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl EventsSink {
    /// Events delivered so far.
    pub(crate) fn count(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for EventsSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// With `rate > 0`: starts the receiver and appends `[events]` and the
/// simulator's 422 rate to `config`.
pub(crate) async fn enable_events(config: &Path, rate: f64) -> Result<Option<EventsSink>> {
    if rate <= 0.0 {
        return Ok(None);
    }
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut text = std::fs::read_to_string(config)?;
    let _ = write!(
        text,
        "\n[sim.faults]\nbad_state_rate = {}\n\n[events]\nurl = \"http://{addr}/events\"\n\
         secret = \"whsec_YmVuY2gtc2VjcmV0LW9mLWxpbmtmcmVzaC1ldmVudHM=\"\n",
        rate / 2.0
    );
    std::fs::write(config, text)?;
    Ok(Some(EventsSink { received, task }))
}
