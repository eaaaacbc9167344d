//! Profiles in the configuration (issue 17): the example passes `check`,
//! every kind of bad profile exits 2 naming the key and what is allowed.

use std::path::Path;

use assert_cmd::Command;

fn check_file(path: &Path) -> (i32, String, String) {
    let out = Command::cargo_bin("linkfresh")
        .unwrap()
        .env_remove("LINKFRESH_CONFIG")
        .env("MONEYKIT_CLIENT_ID", "test-client")
        .env("MONEYKIT_CLIENT_SECRET", "test-secret")
        .args(["check", "--config"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `check` on `body` with a links file `links` beside it.
fn check(body: &str, links: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("linkfresh.toml");
    std::fs::write(&path, body).unwrap();
    std::fs::write(dir.path().join("links.txt"), links).unwrap();
    check_file(&path)
}

const BASE: &str = "[moneykit]\nclient_id = \"c\"\nclient_secret = \"s\"\n";

fn rejected(body: &str, links: &str, needles: &[&str]) {
    let (code, _, err) = check(&format!("{}{BASE}{body}", top(links)), links);
    assert_eq!(code, 2, "expected exit 2 for:\n{body}\nstderr: {err}");
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks {needle:?}:\n{err}");
    }
}

/// `links_file` must stand before the first table.
fn top(links: &str) -> &'static str {
    if links.is_empty() {
        ""
    } else {
        "links_file = \"links.txt\"\n"
    }
}

const PREMIUM: &str = "[profiles.premium]\ntags = [\"plan:premium\"]\nactive_for = \"24h\"\nactive = { transactions = \"1h\" }\nidle = { transactions = \"24h\" }\n";

#[test]
fn the_profiles_example_config_passes_check() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/profiles.example.toml");
    let (code, out, err) = check_file(&path);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
}

#[test]
fn a_profile_with_links_and_a_links_file_naming_it_passes_check() {
    let body = format!(
        "{}{BASE}{PREMIUM}[[links]]\nid = \"mk_a\"\nprofile = \"premium\"\n",
        top("x")
    );
    let (code, out, err) = check(
        &body,
        "mk_b accounts profile=premium\nmk_c profile=default\n",
    );
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
}

#[test]
fn an_unknown_key_in_a_profile_exits_2_naming_it() {
    rejected(
        "[profiles.premium]\nactive_fro = \"24h\"\n",
        "",
        &["active_fro", "profiles"],
    );
}

#[test]
fn an_unknown_product_in_a_profile_exits_2_naming_what_is_allowed() {
    rejected(
        "[profiles.premium]\nactive_for = \"1h\"\nactive = { balances = \"1h\" }\n",
        "",
        &["[profiles.premium] active.balances", "accounts"],
    );
    rejected(
        "[profiles.premium]\nproducts = [\"accounts\"]\nactive_for = \"1h\"\nidle = { transactions = \"24h\" }\n",
        "",
        &[
            "[profiles.premium] idle.transactions",
            "not among this profile's products",
        ],
    );
}

#[test]
fn an_unknown_profile_on_a_link_or_a_links_file_line_exits_2_naming_the_allowed_ones() {
    rejected(
        &format!("{PREMIUM}[[links]]\nid = \"mk_a\"\nprofile = \"gold\"\n"),
        "",
        &[
            "[[links]] #1 profile",
            "\"gold\"",
            "allowed: default, premium",
        ],
    );
    rejected(
        PREMIUM,
        "mk_a\nmk_b profile=gold\n",
        &["links.txt:2", "allowed: default, premium"],
    );
}

#[test]
fn half_written_demand_rules_and_bad_idle_values_exit_2() {
    rejected(
        "[profiles.p]\nidle = \"never\"\n",
        "",
        &["[profiles.p] active_for", "is not set"],
    );
    rejected(
        "[profiles.p]\nactive_for = \"1h\"\n",
        "",
        &["[profiles.p] active_for", "no effect"],
    );
    rejected(
        "[profiles.p]\nactive_for = \"1h\"\nidle = \"sometimes\"\n",
        "",
        &["[profiles.p] idle", "\"never\""],
    );
    rejected(
        "[profiles.p]\nactive_for = \"1h\"\nactive = { accounts = \"10m\" }\n",
        "",
        &[
            "[profiles.p] active.accounts",
            "shorter than [limits] accounts",
        ],
    );
    rejected(
        "[defaults]\ntags = [\"x\"]\n",
        "",
        &["[defaults] tags", "[profiles.NAME]"],
    );
    rejected("[profiles.Premium]\n", "", &["[profiles.Premium]", "a-z"]);
}
