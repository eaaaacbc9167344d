//! Wire fidelity judged from outside our code: MoneyKit's own Python SDK
//! (`pip install moneykit`) must parse everything the simulator sends.
//! Set `LINKFRESH_SKIP_PYTHON=1` to skip where Python is unavailable.

use std::process::Command;

use linkfresh::domain::LinkId;
use linkfresh::sim::{self, SimConfig, SimLink, SimLinkState};

fn python_with_sdk() -> Result<(), String> {
    let out = Command::new("python3")
        .args(["-c", "import moneykit"])
        .output()
        .map_err(|e| {
            format!("python3 not runnable ({e}); install Python 3, then: pip install moneykit")
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "the moneykit Python SDK is missing; run: pip install moneykit\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moneykits_python_sdk_understands_the_simulator() {
    if std::env::var("LINKFRESH_SKIP_PYTHON").is_ok_and(|v| v == "1") {
        eprintln!("LINKFRESH_SKIP_PYTHON=1: skipping the SDK check");
        return;
    }
    if let Err(why) = python_with_sdk() {
        panic!("{why} (or set LINKFRESH_SKIP_PYTHON=1 to skip)");
    }
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
        tokio::task::spawn_blocking(move || Command::new("python3").arg(script).arg(url).output())
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
