//! The one place that decides, for each test suite needing something cargo
//! does not install (Chromium, a PostgreSQL server, MoneyKit's Python SDK,
//! `promtool`, `kubectl`, the Standard Webhooks Python package), whether it
//! runs, is skipped or fails:
//! - what it needs is there: it runs;
//! - it is missing: the test prints a loud line and passes, and the last
//!   test target (`tests/zz_optional_suites.rs`) lists every skipped suite
//!   and the one command that runs them all, [`RUN_ALL`];
//! - it is missing under `LINKFRESH_REQUIRE_ALL=1` (set by `.ci/run`): the
//!   test fails with the install hint, so CI never skips.
//!
//! A new suite is one more [`Suite`] variant with its name, probe and hint.
#![allow(dead_code)]

use std::io::Write as _;
use std::process::{Command, Stdio};

/// The one command that installs every optional dependency and runs all
/// the tests with [`REQUIRE_ALL`] set.
pub const RUN_ALL: &str = "bash .ci/run";

/// When this variable is `1`, a missing dependency fails its tests.
pub const REQUIRE_ALL: &str = "LINKFRESH_REQUIRE_ALL";

/// A test suite that needs something outside cargo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// The fleet pages in headless Chromium (`tests/server/fleet_browser.rs`).
    Browser,
    /// The PostgreSQL store, fleet and replica tests.
    Postgres,
    /// MoneyKit's Python SDK against the simulator (`tests/client/wire_fidelity.rs`).
    PythonSdk,
    /// `promtool check rules` and `promtool test rules` on the alert rules
    /// (`tests/deploy/promtool.rs`).
    Promtool,
    /// `kubectl kustomize` of every kustomization (`tests/deploy/kustomize.rs`).
    Kubectl,
    /// The Standard Webhooks Python package verifying outbound events (`tests/events/`).
    PythonWebhooks,
}

impl Suite {
    /// Every optional suite, in the order the summary lists them.
    pub const ALL: [Suite; 6] = [
        Suite::Browser,
        Suite::Postgres,
        Suite::PythonSdk,
        Suite::PythonWebhooks,
        Suite::Promtool,
        Suite::Kubectl,
    ];

    /// The suite's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Browser => "browser",
            Suite::Postgres => "postgres",
            Suite::PythonSdk => "python-sdk",
            Suite::Promtool => "promtool",
            Suite::Kubectl => "kubectl",
            Suite::PythonWebhooks => "python-webhooks",
        }
    }

    /// How to provide what the suite needs by hand.
    pub fn hint(self) -> &'static str {
        match self {
            Suite::Browser => "install Chromium: bash .ci/install-chromium.sh",
            Suite::Postgres => {
                "set LINKFRESH_TEST_PG_URL (or DATABASE_URL) to a server, e.g. \
                 postgres://postgres@127.0.0.1:5432/test"
            }
            Suite::PythonSdk => "pip install -r tests/wire_fidelity/requirements.txt",
            Suite::Promtool | Suite::Kubectl => {
                "install promtool and kubectl (as root): bash .ci/install-monitoring-tools.sh"
            }
            Suite::PythonWebhooks => "pip install -r tests/events/requirements.txt",
        }
    }

    /// What the suite runs with (the Chromium binary, the server URL, the
    /// Python interpreter), or why it cannot run. Deterministic: the tests
    /// and the summary ask the same question and get the same answer.
    pub fn probe(self) -> Result<String, String> {
        match self {
            Suite::Browser => ["chromium", "chromium-browser", "google-chrome"]
                .into_iter()
                .find(|b| runs(b, &["--version"]))
                .map(str::to_owned)
                .ok_or_else(|| "no chromium".to_owned()),
            Suite::Postgres => std::env::var("LINKFRESH_TEST_PG_URL")
                .ok()
                .or_else(|| std::env::var("DATABASE_URL").ok())
                .filter(|u| u.starts_with("postgres"))
                .ok_or_else(|| "LINKFRESH_TEST_PG_URL unset".to_owned()),
            Suite::PythonSdk if !runs("python3", &["--version"]) => Err("no python3".into()),
            Suite::PythonSdk if !runs("python3", &["-c", "import moneykit"]) => {
                Err("python module moneykit missing".into())
            }
            Suite::PythonSdk => Ok("python3".into()),
            Suite::Promtool if runs("promtool", &["--version"]) => Ok("promtool".into()),
            Suite::Promtool => Err("no promtool".into()),
            // kustomize is built into kubectl since 1.14; ask for it, not just kubectl.
            Suite::Kubectl if runs("kubectl", &["kustomize", "--help"]) => Ok("kubectl".into()),
            Suite::Kubectl => Err("no kubectl with kustomize".into()),
            Suite::PythonWebhooks if !runs("python3", &["-c", "import standardwebhooks"]) => {
                Err("python module standardwebhooks missing".into())
            }
            Suite::PythonWebhooks => Ok("python3".into()),
        }
    }
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `LINKFRESH_REQUIRE_ALL=1`.
pub fn required() -> bool {
    std::env::var(REQUIRE_ALL).is_ok_and(|v| v == "1")
}

/// What `suite` runs with (see [`Suite::probe`]); `None` after a loud line
/// when it is missing and skipping is allowed; a panic with the install
/// hint under `LINKFRESH_REQUIRE_ALL=1`.
pub fn available(suite: Suite) -> Option<String> {
    match suite.probe() {
        Ok(with) => Some(with),
        Err(why) if required() => panic!(
            "{REQUIRE_ALL}=1 but the {} suite cannot run ({why}): {}; or run `{RUN_ALL}`",
            suite.name(),
            suite.hint()
        ),
        Err(why) => {
            // Straight to stderr: libtest captures eprintln! of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "!!!! skipped: {} suite ({why}); {}, or run `{RUN_ALL}` !!!!",
                suite.name(),
                suite.hint()
            );
            None
        }
    }
}
