//! The fleet pages in headless Chromium against the daemon on the simulator:
//! the page loads with the expected counts, the due chart is an `<svg>` with
//! bars, search finds a link and a link's page shows its explain text.
//! The cards must agree with the table (issue 14, item 14). Screenshots land
//! in `target/screenshots/`.
//!
//! Needs `chromium` (`.ci/install-chromium.sh`); skipped, loudly, without it,
//! except under `LINKFRESH_REQUIRE_ALL=1` (see `common/optional.rs`).

use crate::daemon;
use crate::fleet_page;
use crate::optional;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon::{TestDaemon, fast_windows, http_get, link_ids};
use linkfresh::sim::SimConfig;

const TOKEN: &str = "browser-test-token";

/// The Chromium binary, or `None` when the tests are to be skipped.
fn chromium() -> Option<String> {
    optional::available(optional::Suite::Browser)
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium with `args` then `url`; its stdout.
async fn run_chromium(bin: &str, args: &[String], url: String) -> String {
    let bin = bin.to_owned();
    let args = args.to_vec();
    tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(&bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(&args)
            .arg(&url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
            out
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("chromium did not finish {url} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        reader.join().unwrap()
    })
    .await
    .unwrap()
}

async fn dump_dom(bin: &str, url: String) -> String {
    run_chromium(bin, &["--dump-dom".into()], url).await
}

async fn screenshot(bin: &str, url: String, name: &str) -> PathBuf {
    let file = screenshots_dir().join(name);
    let _ = std::fs::remove_file(&file);
    run_chromium(
        bin,
        &[
            format!("--screenshot={}", file.display()),
            "--window-size=1280,900".into(),
        ],
        url,
    )
    .await;
    assert!(file.exists(), "no screenshot written to {}", file.display());
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_page_shows_counts_chart_search_and_a_links_explain_view_in_chromium() {
    let Some(bin) = chromium() else { return };
    let links = link_ids("mk_fleet", 5);
    let mut d = TestDaemon::start(
        SimConfig {
            windows: fast_windows(),
            ..SimConfig::default()
        },
        &links,
        "\"accounts\", \"transactions\"",
        &format!("admin_token = \"{TOKEN}\"\n"),
    )
    .await;
    // Every link refreshed once, then one paused through the API.
    let mut refreshed = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while refreshed.len() < links.len() && Instant::now() < deadline {
        if let Ok(Some(a)) =
            tokio::time::timeout(Duration::from_millis(200), d.activity.recv()).await
            && a.outcome == "accepted"
        {
            refreshed.insert(a.link.to_string());
        }
    }
    assert_eq!(refreshed.len(), links.len(), "not every link was refreshed");
    let paused = reqwest::Client::new()
        .post(format!("http://{}/api/links/mk_fleet_004/pause", d.addr))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(paused.status().as_u16(), 200);
    // The aggregates are cached for 2 s and due times reach the store up to
    // a second after they are computed: wait for the pause and the due
    // chart's bars to show.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let (status, body) = http_get(d.addr, "/").await;
        assert_eq!(status, 200);
        if body.contains("data-count=\"paused\">1<") && body.contains("class=\"bar\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pause or due bars never showed:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let base = format!("http://{}", d.addr);
    let dom = dump_dom(&bin, format!("{base}/")).await;
    assert!(dom.contains("data-count=\"total\">5<"), "{dom}");
    assert!(dom.contains("data-count=\"active\">4<"), "{dom}");
    assert!(dom.contains("data-count=\"paused\">1<"), "{dom}");
    assert!(dom.contains("<svg"), "no chart:\n{dom}");
    assert!(
        dom.contains("class=\"bar\""),
        "the chart has no bars:\n{dom}"
    );
    assert!(dom.contains("id=\"ages\""), "{dom}");
    for l in &links {
        assert!(
            dom.contains(&format!("/links/{l}\"")),
            "{l} not in the table"
        );
    }
    screenshot(&bin, format!("{base}/"), "fleet.png").await;

    let dom = dump_dom(&bin, format!("{base}/?q=fleet_003")).await;
    assert!(dom.contains("href=\"/links/mk_fleet_003\""), "{dom}");
    assert!(
        !dom.contains("href=\"/links/mk_fleet_001\""),
        "search did not filter:\n{dom}"
    );
    let dom = dump_dom(&bin, format!("{base}/?state=paused")).await;
    assert!(
        dom.contains("href=\"/links/mk_fleet_004\"")
            && !dom.contains("href=\"/links/mk_fleet_000\""),
        "{dom}"
    );
    screenshot(&bin, format!("{base}/?q=fleet_003"), "fleet-search.png").await;

    let dom = dump_dom(&bin, format!("{base}/links/mk_fleet_002")).await;
    assert!(dom.contains("id=\"explain\""), "{dom}");
    assert!(dom.contains("class=\"why\""), "{dom}");
    let why = [
        "window until",
        "due now",
        "coalescing",
        "riding along",
        "first request",
    ];
    assert!(
        why.iter().any(|w| dom.contains(w)),
        "no explain text:\n{dom}"
    );
    assert!(dom.contains(">accepted<"), "no history:\n{dom}");
    screenshot(&bin, format!("{base}/links/mk_fleet_002"), "link.png").await;

    let (status, _) = http_get(d.addr, "/links/mk_unknown").await;
    assert_eq!(status, 404);
    let (status, _) = http_get(d.addr, "/?state=sleepy").await;
    assert_eq!(status, 400);
    d.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_pages_cards_agree_with_its_table_in_chromium() {
    let Some(bin) = chromium() else { return };
    let (d, quiet) = fleet_page::quiet_fleet().await;
    // Over HTTP until the figures are past the last answer, then in Chromium.
    fleet_page::page_after(d.addr, quiet).await;
    let dom = dump_dom(&bin, format!("http://{}/", d.addr)).await;
    let page = fleet_page::FleetPage::parse(&dom);
    page.assert_cards_agree_with_table();
    assert_eq!(page.posts_last_hour, 4, "{page:#?}");
    assert_eq!(page.cards["deleted"], 1, "{page:#?}");
    assert_eq!(page.due_next_hour, 4, "{page:#?}");
    let as_of = page
        .as_of
        .expect("the page says as of when its figures are");
    assert!(
        page.rendered_at - as_of <= chrono::TimeDelta::seconds(5),
        "figures as of {as_of} on a page of {}",
        page.rendered_at
    );
    screenshot(&bin, format!("http://{}/", d.addr), "fleet-agree.png").await;
    d.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_ids_and_reasons_are_escaped_on_the_pages() {
    let d = TestDaemon::start(
        SimConfig {
            windows: fast_windows(),
            ..SimConfig::default()
        },
        &["mk_<b>x<i>&'y'".to_owned()],
        "\"accounts\"",
        "",
    )
    .await;
    let (status, body) = http_get(d.addr, "/").await;
    assert_eq!(status, 200);
    assert!(!body.contains("<b>x<i>"), "{body}");
    assert!(
        body.contains("mk_&lt;b&gt;x&lt;i&gt;&amp;&#39;y&#39;"),
        "{body}"
    );
    let (status, body) = http_get(d.addr, "/links/mk_%3Cb%3Ex%3Ci%3E%26%27y%27").await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("<b>x<i>"));
    let (_, body) = http_get(d.addr, "/?q=%3Cscript%3E").await;
    assert!(!body.contains("<script>") && body.contains("&lt;script&gt;"));
    d.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_card_shows_used_limit_and_money_and_the_table_says_who_waits_in_chromium() {
    let Some(bin) = chromium() else { return };
    // 6 POSTs an hour: pacing lets one out now and the next in 10 minutes,
    // so the figures hold still while the browser reads them.
    let d = TestDaemon::start(
        SimConfig {
            windows: fast_windows(),
            ..SimConfig::default()
        },
        &link_ids("mk_budget_page", 4),
        "\"accounts\", \"transactions\"",
        "[budget]\nposts_per_day = 6\nwindow = \"1h\"\nprice_per_post = 0.25\ncurrency = \"USD\"\n",
    )
    .await;
    let shown = daemon::wait_until_async(Duration::from_secs(20), || async {
        d.sim.posts() == 1
            && http_get(d.addr, "/")
                .await
                .1
                .contains("data-budget=\"used\">1<")
    })
    .await;
    assert!(
        shown,
        "one POST spent and shown; the simulator saw {}",
        d.sim.posts()
    );
    let dom = dump_dom(&bin, format!("http://{}/", d.addr)).await;
    let card = |name: &str| -> String {
        let marker = format!("data-budget=\"{name}\">");
        let from = dom
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {dom}"))
            + marker.len();
        dom[from..].split('<').next().unwrap().to_owned()
    };
    assert_eq!(card("used"), d.sim.posts().to_string());
    assert_eq!(card("limit"), "6");
    assert_eq!(card("remaining"), "5");
    assert!(dom.contains("0.25 USD"), "the POST's price is shown: {dom}");
    assert!(
        dom.contains("1.50 USD"),
        "the limit's price is shown: {dom}"
    );
    assert!(
        dom.contains("waiting for budget until"),
        "the links held back say so: {dom}"
    );
    screenshot(&bin, format!("http://{}/", d.addr), "fleet-budget.png").await;
    d.stop().await.1.unwrap();
}
