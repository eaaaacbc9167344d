//! `linkfresh check` run as a binary: good config exits 0, each kind of bad
//! config exits 2 with a message naming the key and what is allowed.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn linkfresh() -> Command {
    let mut cmd = Command::cargo_bin("linkfresh").unwrap();
    cmd.env_remove("LINKFRESH_CONFIG")
        .env_remove("MONEYKIT_CLIENT_ID")
        .env_remove("MONEYKIT_CLIENT_SECRET")
        .env_remove("CREDENTIALS_DIRECTORY");
    cmd
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("linkfresh.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// Runs `check` on `body` and returns (exit code, stdout, stderr).
fn check(body: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), body);
    std::fs::write(
        dir.path().join("links.txt"),
        "mk_file1\nmk_file2 accounts\n",
    )
    .unwrap();
    // Credentials from the environment, as `run` needs them (issue 14, item 8).
    let out = linkfresh()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .env("MONEYKIT_CLIENT_ID", "test-client")
        .env("MONEYKIT_CLIENT_SECRET", "test-secret")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_rejected(body: &str, needles: &[&str]) {
    let (code, _, err) = check(body);
    assert_eq!(code, 2, "expected exit 2 for:\n{body}\nstderr: {err}");
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks {needle:?}:\n{err}");
    }
    assert!(
        err.contains("linkfresh.toml") || err.contains("links.txt"),
        "no file named: {err}"
    );
}

#[test]
fn the_example_config_passes() {
    let out = linkfresh()
        .args(["check", "--config", "config/linkfresh.example.toml"])
        .env("MONEYKIT_CLIENT_ID", "test-client")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("links: 4"), "{stdout}");
    assert!(stdout.contains("cost per day at most"), "{stdout}");
}

#[test]
fn a_minimal_config_with_a_links_file_passes_and_counts_links() {
    let (code, out, err) = check("links_file = \"links.txt\"\n[[links]]\nid = \"mk_a\"\n");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("links: 3"), "{out}");
}

#[test]
fn an_unknown_key_is_rejected() {
    assert_rejected("[limits]\naccount = \"1h\"\n", &["account", "accounts"]);
    assert_rejected("[moneykit]\nbase_ur = \"x\"\n", &["base_ur"]);
}

#[test]
fn an_unknown_product_is_rejected() {
    assert_rejected(
        "[[links]]\nid = \"mk_a\"\nproducts = [\"balances\"]\n",
        &["balances", "allowed: accounts, transactions"],
    );
    assert_rejected(
        "[defaults]\nproducts = [\"foo\"]\n",
        &["[defaults] products", "foo"],
    );
}

#[test]
fn malformed_and_zero_durations_are_rejected() {
    assert_rejected(
        "[limits]\naccounts = \"an hour\"\n",
        &["[limits] accounts", "an hour", "90s, 15m, 1h or 1d"],
    );
    assert_rejected(
        "[limits]\naccounts = \"0s\"\n",
        &["[limits] accounts", "more than zero"],
    );
    assert_rejected("[schedule]\nbackoff_base = \"-1m\"\n", &["backoff_base"]);
}

#[test]
fn every_shorter_than_the_limit_is_rejected() {
    assert_rejected(
        "[[links]]\nid = \"mk_a\"\nproducts = [\"transactions\"]\nevery = { transactions = \"30m\" }\n",
        &[
            "every.transactions",
            "shorter than [limits] transactions = 1h",
        ],
    );
}

#[test]
fn an_invalid_cron_is_rejected() {
    assert_rejected(
        "[[links]]\nid = \"mk_a\"\nproducts = [\"identity\"]\ncron = { identity = \"at six\" }\n",
        &["cron.identity", "5 or 6 fields"],
    );
}

#[test]
fn duplicate_link_ids_are_rejected_naming_both_places() {
    assert_rejected(
        "[[links]]\nid = \"mk_a\"\n[[links]]\nid = \"mk_a\"\n",
        &["duplicate link id mk_a", "#1", "#2"],
    );
    assert_rejected(
        "links_file = \"links.txt\"\n[[links]]\nid = \"mk_file2\"\n",
        &["mk_file2", "links.txt:2"],
    );
}

#[test]
fn empty_product_sets_are_rejected() {
    assert_rejected(
        "[[links]]\nid = \"mk_a\"\nproducts = []\n",
        &["empty product list"],
    );
}

#[test]
fn bad_link_ids_are_rejected() {
    assert_rejected("[[links]]\nid = \"\"\n", &["link id is empty"]);
    assert_rejected("[[links]]\nid = \"mk a\"\n", &["whitespace"]);
    assert_rejected("[[links]]\nid = \"mk/a\"\n", &["'/'"]);
}

#[test]
fn a_bad_links_file_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "links_file = \"fleet.txt\"\n");
    std::fs::write(
        dir.path().join("fleet.txt"),
        "# ok\nmk_1\nmk_2 accounts,balances\n",
    )
    .unwrap();
    let out = linkfresh()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fleet.txt:3") && err.contains("allowed: accounts"),
        "{err}"
    );
}

#[test]
fn a_secret_is_never_printed_even_in_errors() {
    let (code, out, err) =
        check("[moneykit]\nclient_secret = \"hunter2\"\nclient_secret_file = \"/x\"\n");
    assert_eq!(code, 2);
    assert!(
        !out.contains("hunter2") && !err.contains("hunter2"),
        "{out}{err}"
    );
    let (code, out, err) = check("[moneykit]\nclient_secret = \"hunter2\"\n");
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("hunter2"), "{out}");
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[moneykit]\nmax_in_flight = 8\n");
    let out = linkfresh()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .env("LINKFRESH__MONEYKIT__MAX_IN_FLIGHT", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_in_flight"));
    let out = linkfresh()
        .arg("check")
        .env("LINKFRESH_CONFIG", &path)
        .env("MONEYKIT_CLIENT_ID", "abc")
        .env("MONEYKIT_CLIENT_SECRET", "def")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("client_id: set"));
}

#[test]
fn a_missing_config_file_exits_2_and_says_how_to_point_at_one() {
    let out = linkfresh()
        .args(["check", "--config", "/nonexistent/linkfresh.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

#[test]
fn bad_usage_exits_2() {
    let out = linkfresh().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_systemd_example_config_passes() {
    let out = linkfresh()
        .args(["check", "--config", "deploy/systemd/linkfresh.toml"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_partition_count_or_revision_out_of_range_is_rejected_naming_the_key() {
    assert_rejected(
        "[database]\npartitions = 0\n",
        &["[database] partitions", "from 1 to 4096", "default is 64"],
    );
    assert_rejected(
        "[database]\npartitions = 5000\n",
        &["[database] partitions", "from 1 to 4096"],
    );
    assert_rejected("revision = -1\n", &["revision", "at least 0"]);
    let (code, _, err) = check("revision = 7\n[database]\npartitions = 16\n");
    assert_eq!(code, 0, "{err}");
}

/// Issue 16: the cold-start settle is a duration shorter than the lease
/// (a replica's announcement lasts one lease); "0s" turns it off.
#[test]
fn an_initial_settle_that_is_malformed_or_not_shorter_than_the_lease_is_rejected() {
    assert_rejected(
        "[database]\ninitial_settle = \"soon\"\n",
        &["[database] initial_settle"],
    );
    assert_rejected(
        "[database]\nlease = \"5s\"\ninitial_settle = \"5s\"\n",
        &["[database] initial_settle", "shorter than [database] lease"],
    );
    for ok in [
        "[database]\ninitial_settle = \"0s\"\n",
        "[database]\nlease = \"5s\"\ninitial_settle = \"4s\"\n",
        "[database]\nlease = \"1s\"\n",
    ] {
        let (code, _, err) = check(ok);
        assert_eq!(code, 0, "{ok}: {err}");
    }
}
