//! Wire fidelity judged from outside our code: MoneyKit's own Python SDK
//! (`pip install moneykit`) must parse everything the simulator sends.
//! Skipped, loudly, where the SDK is missing, except under
//! `LINKFRESH_REQUIRE_ALL=1` (see `common/optional.rs`).

use crate::optional;

use std::process::Command;

use linkfresh::domain::LinkId;
use linkfresh::sim::{self, SimConfig, SimLink, SimLinkState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moneykits_python_sdk_understands_the_simulator() {
    let Some(python) = optional::available(optional::Suite::PythonSdk) else {
        return;
    };
    let id = |s: &str| LinkId::parse(s).unwrap();
    let cfg = SimConfig {
        links: vec![
            SimLink::healthy(id("mk_sdk_missing")).with_state(SimLinkState::NotFound),
            SimLink::healthy(id("mk_sdk_deleted")).with_state(SimLinkState::Deleted),
            SimLink::healthy(id("mk_sdk_broken")).with_state(SimLinkState::NeedsUserAction),
        ],
        ..SimConfig::default()
    };
    let sim = sim::spawn(cfg).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/wire_fidelity/check_sdk.py"
    );
    let url = sim.base_url();
    let out =
        tokio::task::spawn_blocking(move || Command::new(python).arg(script).arg(url).output())
            .await
            .unwrap()
            .expect("run check_sdk.py");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "check_sdk.py failed:\n{text}");
    assert!(
        sim.stats().count("refresh", 202) >= 1,
        "the SDK really talked to the simulator"
    );
}
