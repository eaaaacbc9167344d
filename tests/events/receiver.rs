//! The independent verifier: `receiver.py` (the Standard Webhooks package
//! from PyPI) as a child process, and what it logged.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::optional;

/// The secret the tests sign with.
pub const SECRET: &str = "whsec_dGVzdC1zZWNyZXQtb2YtbGlua2ZyZXNoLWV2ZW50cw==";

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `webhook-id`.
    pub id: String,
    /// Whether the Standard Webhooks package accepted the signature.
    pub verified: bool,
    /// What it answered.
    pub status: u16,
    /// The body, parsed (Null if it was not JSON).
    pub body: serde_json::Value,
}

impl Seen {
    pub fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }
    pub fn link(&self) -> &str {
        self.body["data"]["link_id"].as_str().unwrap_or("")
    }
}

/// A running receiver.
pub struct Receiver {
    child: Child,
    /// Where to send events.
    pub url: String,
    log: PathBuf,
    mode: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    /// Starts the receiver answering `mode` (`ok`, `fail`, `gone`); `None`
    /// (loudly) when the Python package is missing and skipping is allowed.
    pub fn start(mode: &str) -> Option<Self> {
        let python = optional::available(optional::Suite::PythonWebhooks)?;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("deliveries.jsonl");
        let mode_file = dir.path().join("mode");
        std::fs::write(&mode_file, mode).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/events/receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(SECRET)
            .arg(&log)
            .arg(&mode_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start receiver.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("receiver.py prints its port");
        Some(Self {
            child,
            url: format!("http://127.0.0.1:{port}/hooks/linkfresh"),
            log,
            mode: mode_file,
            _dir: dir,
        })
    }

    /// Changes the answer to verified deliveries.
    pub fn set_mode(&self, mode: &str) {
        std::fs::write(&self.mode, mode).unwrap();
    }

    /// Every delivery so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| Seen {
                id: v["id"].as_str().unwrap_or("").to_owned(),
                verified: v["verified"].as_bool().unwrap_or(false),
                status: v["status"].as_u64().unwrap_or(0) as u16,
                body: v["body"]
                    .as_str()
                    .and_then(|b| serde_json::from_str(b).ok())
                    .unwrap_or(serde_json::Value::Null),
            })
            .collect()
    }

    /// The deliveries it accepted (verified and answered 2xx).
    pub fn accepted(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.verified && (200..300).contains(&s.status))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `[events]` table the tests configure: quick retries, short timeout.
pub fn events_toml(url: &str) -> String {
    format!(
        "[events]\nurl = \"{url}\"\nsecret = \"{SECRET}\"\nbackoff_base = \"100ms\"\nbackoff_max = \"400ms\"\ntimeout = \"2s\"\n"
    )
}

/// Long enough for a few windows of the tests' simulator under load.
pub const PATIENCE: Duration = Duration::from_secs(20);
