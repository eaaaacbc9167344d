//! A webhook receiver served on its own (`webhook::router`) over loopback,
//! with a fresh SQLite store and the simulator's JWKS.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use linkfresh::clock::Clock;
use linkfresh::domain::{LinkId, LinkState, Product, ProductSet};
use linkfresh::sim::{self, SimConfig, SimHandle};
use linkfresh::store::{LinkPatch, LinkRecord, LinkSource, LinkSpec, Store};
use linkfresh::webhook::{self, WebhookSettings, WebhookState};

pub const LINK: &str = "mk_webhook_link";

pub struct Rig {
    pub sim: SimHandle,
    pub store: Arc<dyn Store>,
    /// The receiver's webhook URL.
    pub url: String,
    _dir: tempfile::TempDir,
}

pub fn id(raw: &str) -> LinkId {
    LinkId::parse(raw).unwrap()
}

thread_local! {
    /// The test's "now": libtest runs each test on a thread of its own, and
    /// its body (tokio's current-thread runtime) stays on it.
    static TEST_NOW: DateTime<Utc> = Utc::now().trunc_subsecs(0);
}

/// Now, whole seconds (MoneyKit timestamps and the store round anyway),
/// read once per test: two `ago(30)` in one test must be the same instant,
/// and reading the clock twice straddled a second boundary in CI.
pub fn now() -> DateTime<Utc> {
    TEST_NOW.with(|now| *now)
}

pub fn ago(secs: i64) -> DateTime<Utc> {
    now() - TimeDelta::seconds(secs)
}

pub async fn rig() -> Rig {
    rig_with(WebhookSettings::default()).await
}

pub async fn rig_with(settings: WebhookSettings) -> Rig {
    let sim = sim::spawn(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("linkfresh.db").display()
    );
    let store = linkfresh::store::connect(&url).await.unwrap();
    let spec = LinkSpec {
        id: id(LINK),
        products: ProductSet::parse_list("accounts,transactions").unwrap(),
        cadence: None,
        source: LinkSource::Config,
    };
    store.sync_config("r1", &[spec], Utc::now()).await.unwrap();
    let state = WebhookState::new(
        store.clone(),
        sim.jwks_url(),
        reqwest::Client::new(),
        Clock::system(),
        settings,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, webhook::router(state)).await.unwrap();
    });
    Rig {
        sim,
        store,
        url: format!("http://{addr}{}", webhook::DEFAULT_PATH),
        _dir: dir,
    }
}

impl Rig {
    pub async fn link(&self) -> LinkRecord {
        self.store.load_link(&id(LINK)).await.unwrap().unwrap()
    }

    /// Every stored link, for "nothing changed" assertions.
    pub async fn snapshot(&self) -> Vec<LinkRecord> {
        self.store.load_links().await.unwrap()
    }

    pub async fn refreshed_at(&self, p: Product) -> Option<DateTime<Utc>> {
        self.link()
            .await
            .schedules
            .iter()
            .find(|s| s.product == p)
            .and_then(|s| s.server_refreshed_at)
    }

    pub async fn park(&self, state: LinkState) {
        let patch = LinkPatch {
            state: Some((state, Some("test".into()))),
            ..LinkPatch::default()
        };
        assert!(
            self.store
                .apply_patch(&id(LINK), &patch, Utc::now())
                .await
                .unwrap()
        );
    }

    /// Waits (up to 5 s) until `check` holds for the stored link.
    pub async fn wait_for(&self, what: &str, check: impl Fn(&LinkRecord) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if check(&self.link().await) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn jwks_requests(&self) -> u64 {
        self.sim.stats().total("jwks")
    }
}
