//! Issue 14, items 7 (validation part), 8, 9, 10 and 12: `check` and `run`
//! judge a configuration alike, reserved routes, environment over file,
//! secrets kept out of error messages, and strict types in the file.

use crate::daemon;

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use daemon::{TestDaemon, fast_windows, link_ids};
use linkfresh::sim::SimConfig;

/// A minimal config that `check` and `run` both accept (with credentials).
const CREDS: &str = "[moneykit]\nclient_id = \"cid\"\nclient_secret = \"csecret\"\n";

fn linkfresh() -> Command {
    let mut cmd = Command::cargo_bin("linkfresh").unwrap();
    cmd.env_remove("LINKFRESH_CONFIG")
        .env_remove("MONEYKIT_CLIENT_ID")
        .env_remove("MONEYKIT_CLIENT_SECRET")
        .env_remove("CREDENTIALS_DIRECTORY")
        .timeout(Duration::from_secs(30));
    for (k, _) in std::env::vars() {
        if k.starts_with("LINKFRESH__") {
            cmd.env_remove(k);
        }
    }
    cmd
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

/// Runs `linkfresh COMMAND --config PATH` with extra environment variables.
fn cmd(command: &str, path: &Path, env: &[(&str, &str)]) -> Outcome {
    let mut c = linkfresh();
    c.arg(command).arg("--config").arg(path);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `check` on `body` written to a fresh folder.
fn check(body: &str, env: &[(&str, &str)]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "linkfresh.toml", body);
    cmd("check", &path, env)
}

fn assert_exit_2_naming(out: &Outcome, needles: &[&str]) {
    assert_eq!(out.code, 2, "expected exit 2:\n{}", out.all());
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "stderr lacks {n:?}:\n{}",
            out.stderr
        );
    }
}

// ---- item 7: a webhook_path on a route the server serves ----

#[test]
fn a_webhook_path_overlapping_a_served_route_is_rejected_naming_the_reserved_routes() {
    for path in [
        "/api/links",
        "/api/links/mk_a/pause",
        "/api",
        "/metrics",
        "/healthz",
        "/readyz",
        "/links",
        "/links/mk_a",
        "/metrics/extra",
    ] {
        let out = check(
            &format!("{CREDS}[server]\nwebhook_path = \"{path}\"\n"),
            &[],
        );
        assert_exit_2_naming(
            &out,
            &["[server] webhook_path", "reserved", "/metrics", "/api/"],
        );
    }
    for path in ["/webhooks/moneykit", "/hooks/mk", "/apix", "/linksfeed"] {
        let out = check(
            &format!("{CREDS}[server]\nwebhook_path = \"{path}\"\n"),
            &[],
        );
        assert_eq!(out.code, 0, "{path}: {}", out.all());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reserved_route_is_one_the_running_server_serves() {
    let d = TestDaemon::start(
        SimConfig {
            windows: fast_windows(),
            ..SimConfig::default()
        },
        &link_ids("mk_route", 1),
        "\"accounts\"",
        "admin_token = \"route-token\"\n",
    )
    .await;
    let client = reqwest::Client::new();
    assert!(!linkfresh::config::RESERVED_ROUTES.is_empty());
    for route in linkfresh::config::RESERVED_ROUTES {
        let path = route.replace("{id}", "mk_route_000");
        let mut statuses = Vec::new();
        for method in ["GET", "POST", "DELETE"] {
            let resp = client
                .request(method.parse().unwrap(), format!("http://{}{path}", d.addr))
                .header("authorization", "Bearer route-token")
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            statuses.push(resp.status().as_u16());
        }
        // The router's fallback answers 404 to every method of an unknown path.
        assert!(
            statuses.iter().any(|s| *s != 404),
            "{route} is reserved but not served: {statuses:?}"
        );
    }
    let (_sim, result) = d.stop().await;
    result.unwrap();
}

// ---- item 8: check judges what run judges ----

#[test]
fn a_config_without_client_id_is_exit_2_naming_the_key_in_check_and_in_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "linkfresh.toml",
        "[moneykit]\nbase_url = \"http://127.0.0.1:9\"\nclient_secret = \"s\"\n[server]\nlisten = \"127.0.0.1:0\"\n",
    );
    for command in ["check", "run"] {
        let out = cmd(command, &path, &[]);
        assert_exit_2_naming(&out, &["client_id", "MONEYKIT_CLIENT_ID"]);
    }
    // With the environment's client id, check is happy.
    let out = cmd("check", &path, &[("MONEYKIT_CLIENT_ID", "cid")]);
    assert_eq!(out.code, 0, "{}", out.all());
}

#[test]
fn a_config_without_any_client_secret_is_exit_2_in_check_and_in_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "linkfresh.toml",
        "[moneykit]\nbase_url = \"http://127.0.0.1:9\"\nclient_id = \"c\"\n[server]\nlisten = \"127.0.0.1:0\"\n",
    );
    for command in ["check", "run"] {
        let out = cmd(command, &path, &[]);
        assert_exit_2_naming(&out, &["client_secret"]);
    }
}

#[test]
fn a_secret_file_not_there_yet_is_a_warning_in_check_and_an_error_in_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "linkfresh.toml",
        "[moneykit]\nbase_url = \"http://127.0.0.1:9\"\nclient_id = \"c\"\nclient_secret_file = \"absent/client_secret\"\n\
         [server]\nlisten = \"127.0.0.1:0\"\nadmin_token_file = \"absent/admin_token\"\n",
    );
    let out = cmd("check", &path, &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr.contains("warning") && out.stderr.contains("client_secret_file"),
        "{}",
        out.all()
    );
    assert!(out.stderr.contains("admin_token_file"), "{}", out.all());
    let out = cmd("run", &path, &[]);
    assert_exit_2_naming(&out, &["client_secret_file", "absent/client_secret"]);
}

#[test]
fn an_empty_admin_token_file_is_exit_2_in_check_and_in_run() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "admin_token", "\n");
    let path = write(
        dir.path(),
        "linkfresh.toml",
        "[moneykit]\nbase_url = \"http://127.0.0.1:9\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
         [database]\nurl = \"sqlite://lf.db\"\n[server]\nlisten = \"127.0.0.1:0\"\nadmin_token_file = \"admin_token\"\n",
    );
    for command in ["check", "run"] {
        let out = cmd(command, &path, &[]);
        assert_exit_2_naming(&out, &["admin_token_file", "empty"]);
    }
}

// ---- item 9: environment over file ----

/// The example config and its links file, copied to a fresh folder.
fn example_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let toml = std::fs::read_to_string("config/linkfresh.example.toml").unwrap();
    let path = write(dir.path(), "linkfresh.toml", &toml);
    std::fs::copy(
        "config/links.example.txt",
        dir.path().join("links.example.txt"),
    )
    .unwrap();
    (dir, path)
}

#[test]
fn the_example_with_the_client_secret_in_the_environment_passes_check() {
    let (_dir, path) = example_copy();
    for var in [
        "MONEYKIT_CLIENT_SECRET",
        "LINKFRESH__MONEYKIT__CLIENT_SECRET",
    ] {
        let out = cmd(
            "check",
            &path,
            &[("MONEYKIT_CLIENT_ID", "cid"), (var, "from-env")],
        );
        assert_eq!(out.code, 0, "{var}: {}", out.all());
        assert!(
            out.stdout
                .contains("client_secret: set inline or from the environment"),
            "{}",
            out.stdout
        );
        assert!(!out.all().contains("from-env"), "{}", out.all());
    }
}

#[test]
fn an_admin_token_in_the_environment_overrides_the_files_token_file() {
    let out = check(
        &format!("{CREDS}[server]\nadmin_token_file = \"/nonexistent/admin_token\"\n"),
        &[("LINKFRESH__SERVER__ADMIN_TOKEN", "env-token")],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("admin_token: set inline or from the environment"),
        "{}",
        out.stdout
    );
    assert!(!out.stderr.contains("admin_token_file"), "{}", out.stderr);
}

#[test]
fn a_file_setting_both_inline_and_file_secrets_stays_an_error_whatever_the_environment() {
    let out = check(
        "[moneykit]\nclient_id = \"c\"\nclient_secret = \"hunter2\"\nclient_secret_file = \"/x\"\n",
        &[("MONEYKIT_CLIENT_SECRET", "from-env")],
    );
    assert_exit_2_naming(&out, &["client_secret", "client_secret_file"]);
    assert!(!out.all().contains("hunter2"), "{}", out.all());
}

// ---- item 10: secrets never appear in error messages ----

#[test]
fn a_duplicate_client_secret_key_is_named_without_echoing_its_value() {
    let out = check(
        "[moneykit]\nclient_id = \"c\"\nclient_secret = \"hunter2-first\"\nclient_secret = \"hunter2-second\"\n",
        &[],
    );
    assert_exit_2_naming(
        &out,
        &["linkfresh.toml", "line 4", "duplicate", "client_secret"],
    );
    assert!(!out.all().contains("hunter2"), "{}", out.all());
}

#[test]
fn a_syntax_error_on_an_admin_token_line_does_not_echo_the_token() {
    let out = check(
        &format!("{CREDS}[server]\nadmin_token = \"tok-secret-42\n"),
        &[],
    );
    assert_exit_2_naming(&out, &["linkfresh.toml", "line 5"]);
    assert!(!out.all().contains("tok-secret-42"), "{}", out.all());
    let out = check(
        &format!("{CREDS}[server]\nadmin_token = tok-secret-42\n"),
        &[],
    );
    assert_exit_2_naming(&out, &["linkfresh.toml", "line 5"]);
    assert!(!out.all().contains("tok-secret-42"), "{}", out.all());
}

#[test]
fn check_prints_a_base_url_without_its_password() {
    let out = check(
        "[moneykit]\nbase_url = \"http://user:pa55word@127.0.0.1:9\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("moneykit: http://user:"),
        "{}",
        out.stdout
    );
    assert!(!out.all().contains("pa55word"), "{}", out.all());
    let out = check(
        "[moneykit]\nbase_url = \"ftp://user:pa55word@host\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
        &[],
    );
    assert_exit_2_naming(&out, &["base_url"]);
    assert!(!out.all().contains("pa55word"), "{}", out.all());
}

#[test]
fn a_links_file_full_of_secrets_is_rejected_by_line_number_without_echoing_it() {
    for content in [
        "AWS_SECRET_ACCESS_KEY=s3cr3t/value\0HOME=/root\0",
        "password = s3cr3t\n",
        "mk_ok\nmk_a s3cr3t\n",
        "mk_ok\nmk_b accounts,s3cr3t\n",
    ] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "secrets.txt", content);
        let path = write(
            dir.path(),
            "linkfresh.toml",
            &format!("links_file = \"secrets.txt\"\n{CREDS}"),
        );
        let out = cmd("check", &path, &[]);
        assert_exit_2_naming(&out, &["secrets.txt:"]);
        assert!(
            !out.all().contains("s3cr3t") && !out.all().contains("AWS_SECRET"),
            "{content:?}: {}",
            out.all()
        );
    }
}

// ---- item 12: strict types in the file, parsed strings from the environment ----

#[test]
fn a_wrong_type_in_the_file_is_exit_2_naming_the_key_and_the_type() {
    for (line, key, kind) in [
        ("max_in_flight = \"8\"", "max_in_flight", "integer"),
        ("max_in_flight = 8.5", "max_in_flight", "integer"),
        (
            "max_requests_per_second = true",
            "max_requests_per_second",
            "integer",
        ),
        ("client_secret = 987654321", "client_secret", "string"),
        ("request_timeout = 30", "request_timeout", "string"),
    ] {
        let out = check(
            &format!("[moneykit]\nclient_id = \"c\"\n{line}\n"),
            &[("MONEYKIT_CLIENT_SECRET", "s")],
        );
        assert_exit_2_naming(&out, &["linkfresh.toml", key, kind]);
        assert!(!out.all().contains("987654321"), "{}", out.all());
    }
    let out = check(
        &format!("{CREDS}[schedule]\nride_along_share = \"0.1\"\n"),
        &[],
    );
    assert_exit_2_naming(&out, &["ride_along_share", "number"]);
    let out = check(&format!("{CREDS}[discovery]\nenabled = \"yes\"\n"), &[]);
    assert_exit_2_naming(&out, &["enabled", "boolean"]);
}

#[test]
fn environment_values_are_parsed_and_a_bad_one_names_the_variable() {
    let out = check(CREDS, &[("LINKFRESH__MONEYKIT__MAX_IN_FLIGHT", "8")]);
    assert_eq!(out.code, 0, "{}", out.all());
    for bad in ["8.5", "abc"] {
        let out = check(CREDS, &[("LINKFRESH__MONEYKIT__MAX_IN_FLIGHT", bad)]);
        assert_exit_2_naming(&out, &["LINKFRESH__MONEYKIT__MAX_IN_FLIGHT", "integer"]);
    }
    let out = check(CREDS, &[("LINKFRESH__SCHEDULE__RIDE_ALONG_SHARE", "0.1")]);
    assert_eq!(out.code, 0, "{}", out.all());
    let out = check(CREDS, &[("LINKFRESH__DISCOVERY__ENABLED", "maybe")]);
    assert_exit_2_naming(&out, &["LINKFRESH__DISCOVERY__ENABLED"]);
}
