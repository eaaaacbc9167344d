//! The table and JSON line each scenario prints, and the machine it ran on.

use super::*;

pub(crate) struct Report {
    scenario: &'static str,
    rows: Vec<(String, String, String, Option<bool>)>,
    json: serde_json::Map<String, Value>,
}

impl Report {
    pub(crate) fn new(scenario: &'static str) -> Self {
        let mut json = serde_json::Map::new();
        json.insert("scenario".into(), json!(scenario));
        json.insert("machine".into(), json!(machine()));
        Self {
            scenario,
            rows: Vec::new(),
            json,
        }
    }

    /// A figure with an optional target and verdict; `key` also goes into the JSON.
    pub(crate) fn row(
        &mut self,
        key: &str,
        label: &str,
        value: Value,
        shown: String,
        target: &str,
        ok: Option<bool>,
    ) {
        self.json.insert(key.into(), value);
        if let Some(ok) = ok {
            self.json.insert(format!("{key}_ok"), json!(ok));
        }
        self.rows.push((label.into(), shown, target.into(), ok));
    }

    pub(crate) fn info(&mut self, key: &str, value: Value) {
        self.json.insert(key.into(), value);
    }

    pub(crate) fn print(&self) {
        let w0 = self
            .rows
            .iter()
            .map(|r| r.0.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let w1 = self
            .rows
            .iter()
            .map(|r| r.1.len())
            .max()
            .unwrap_or(0)
            .max(5);
        let w2 = self
            .rows
            .iter()
            .map(|r| r.2.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let mut out = format!("\n== {} ==\n", self.scenario);
        let _ = writeln!(
            out,
            "{:<w0$}  {:>w1$}  {:<w2$}  verdict",
            "figure", "value", "target"
        );
        for (label, value, target, ok) in &self.rows {
            let verdict = match ok {
                Some(true) => "ok",
                Some(false) => "MISSED",
                None => "",
            };
            let _ = writeln!(out, "{label:<w0$}  {value:>w1$}  {target:<w2$}  {verdict}");
        }
        print!("{out}");
        println!("{}", Value::Object(self.json.clone()));
    }
}

pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cpus} cpus, {mem_gib:.0} GiB, {model}")
}
