//! Shared helpers: a simulator plus a client pointed at it.
#![allow(dead_code)]

use std::time::Duration;

use linkfresh::domain::LinkId;
use linkfresh::moneykit::{ClientConfig, MoneyKit};
use linkfresh::secret::Secret;
use linkfresh::sim::{self, SimConfig, SimHandle};

pub fn id(s: &str) -> LinkId {
    LinkId::parse(s).unwrap()
}

pub fn client_config(base_url: &str, cfg: &SimConfig) -> ClientConfig {
    ClientConfig {
        base_url: base_url.to_owned(),
        client_id: cfg.client_id.clone(),
        client_secret: Secret::new(cfg.client_secret.clone()),
        api_version: "2023-02-18".into(),
        request_timeout: Duration::from_secs(5),
        scope: None,
    }
}

/// A simulator with `cfg` and a client with the right credentials.
pub async fn sim_and_client(cfg: SimConfig) -> (SimHandle, MoneyKit) {
    let sim = sim::spawn(cfg.clone()).await;
    let client = MoneyKit::new(client_config(&sim.base_url(), &cfg)).unwrap();
    (sim, client)
}

/// Polls `check` every 20 ms until it is true or `limit` passes; whether it
/// was. For waits on the simulator's clock or state instead of a guess.
pub async fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}
