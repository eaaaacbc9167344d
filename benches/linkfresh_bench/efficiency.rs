//! `efficiency`: linkfresh against MoneyKit's Python SDK in a loop: POSTs,
//! 429s and data age on compressed windows.

use super::*;

pub(crate) struct Side {
    posts: u64,
    products: u64,
    r429: u64,
    other_errors: u64,
    fresh: BTreeMap<String, (f64, f64, u64)>,
    cpu_s: f64,
}

pub(crate) fn side_from(stats: &Value, fresh: &Value, cpu_s: f64) -> Side {
    let posts = count(stats, "refresh", None);
    let r429 = count(stats, "refresh", Some("429"));
    let ok = count(stats, "refresh", Some("202"));
    let mut f = BTreeMap::new();
    if let Some(m) = fresh.as_object() {
        for (p, v) in m {
            f.insert(
                p.clone(),
                (
                    v["p50_age_s"].as_f64().unwrap_or(f64::NAN),
                    v["p99_age_s"].as_f64().unwrap_or(f64::NAN),
                    v["refreshed_links"].as_u64().unwrap_or(0),
                ),
            );
        }
    }
    Side {
        posts,
        products: sum_map(&stats["products_requested"]),
        r429,
        other_errors: posts - ok - r429,
        fresh: f,
        cpu_s,
    }
}

pub(crate) async fn efficiency(args: &Args, dir: &Path) -> Result<Report> {
    let n = args.links.unwrap_or(1_000);
    let secs = args.duration.unwrap_or(300);
    let hour = args.window.unwrap_or(6.0);
    let period = args.baseline_period.unwrap_or(hour);
    let c = http();
    let mut report = Report::new("efficiency");
    report.info("links", json!(n));
    report.info("hour_s", json!(hour));
    report.info("duration_s", json!(secs));
    report.info("baseline_period_s", json!(period));

    // Two simulators with the same windows, one per contestant, side by side.
    let ddir = dir.join("daemon");
    let bdir = dir.join("baseline");
    std::fs::create_dir_all(&ddir)?;
    std::fs::create_dir_all(&bdir)?;
    let scale = hour / 3600.0;
    let mk_setup = || Setup {
        hour,
        links: n,
        products: ALL4,
        prefix: "mk_eff",
        max_rps: 1000,
        in_flight: args.in_flight.min(32),
        margin_ms: ((30_000.0 * scale) as u64).max(20),
        coalesce_ms: (600_000.0 * scale) as u64,
        first_spread_ms: (hour * 1000.0) as u64,
        list_sim_links: true,
    };
    let (dsim_addr, bsim_addr) = (free_addr()?, free_addr()?);
    let dbase = format!("http://{dsim_addr}");
    let bbase = format!("http://{bsim_addr}");
    let dconfig = write_config(&ddir, &mk_setup(), &dbase, free_addr()?)?;
    let bconfig = write_config(&bdir, &mk_setup(), &bbase, free_addr()?)?;
    let mut sims = vec![
        start_sim(&c, &ddir, &dconfig, dsim_addr).await?,
        start_sim(&c, &bdir, &bconfig, bsim_addr).await?,
    ];

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/baseline/refresh_loop.py");
    let mut py = Command::new(&args.python);
    py.arg(&script)
        .args([
            "--host",
            &bbase,
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
        ])
        .arg("--links")
        .arg(bdir.join("links.txt"))
        .args([
            "--period",
            &period.to_string(),
            "--duration",
            &secs.to_string(),
        ]);
    let t0 = Instant::now();
    let mut baseline = Proc::spawn("baseline", py, &bdir)?;
    let mut daemon = start_daemon(&ddir, &dconfig, &args.daemon_log, "daemon")?;
    let (dpid, bpid) = (daemon.pid(), baseline.pid());
    let mut bcpu = 0.0;
    // A snapshot at the end flatters a fleet whose links all refresh at the
    // same moment (the baseline's): sample both sides over the second half
    // and average, so ages are compared over time, not at one lucky instant.
    let mut samples: BTreeMap<String, [f64; 5]> = BTreeMap::new();
    let mut last_sample = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if t0.elapsed() >= Duration::from_secs(secs / 2)
            && last_sample.elapsed() >= Duration::from_secs(2)
        {
            last_sample = Instant::now();
            let (du, bu) = (
                format!("{dbase}/_sim/freshness"),
                format!("{bbase}/_sim/freshness"),
            );
            let (d, b) = tokio::join!(get_json(&c, &du), get_json(&c, &bu));
            if let (Ok(d), Ok(b)) = (d, b) {
                for p in ["accounts", "transactions", "account_numbers", "identity"] {
                    let e = samples.entry(p.to_owned()).or_insert([0.0; 5]);
                    e[0] += d[p]["p50_age_s"].as_f64().unwrap_or(f64::NAN);
                    e[1] += d[p]["p99_age_s"].as_f64().unwrap_or(f64::NAN);
                    e[2] += b[p]["p50_age_s"].as_f64().unwrap_or(f64::NAN);
                    e[3] += b[p]["p99_age_s"].as_f64().unwrap_or(f64::NAN);
                    e[4] += 1.0;
                }
            }
        }
        if !daemon.alive() {
            bail!("daemon exited:\n{}", daemon.tail());
        }
        if baseline.alive() {
            bcpu = cpu_seconds(bpid);
        } else if t0.elapsed() < Duration::from_secs(secs.saturating_sub(5)) {
            bail!("baseline exited early:\n{}", baseline.tail());
        }
    }
    // Both sides measured at the same instant.
    let urls = [
        format!("{dbase}/_sim/stats"),
        format!("{bbase}/_sim/stats"),
        format!("{dbase}/_sim/freshness"),
        format!("{bbase}/_sim/freshness"),
    ];
    let (dstats, bstats, dfresh, bfresh) = tokio::join!(
        get_json(&c, &urls[0]),
        get_json(&c, &urls[1]),
        get_json(&c, &urls[2]),
        get_json(&c, &urls[3]),
    );
    let elapsed = t0.elapsed().as_secs_f64();
    let dcpu = cpu_seconds(dpid);
    daemon.stop(Duration::from_secs(30));
    baseline.stop(Duration::from_secs(10));
    for s in &mut sims {
        s.stop(Duration::from_secs(5));
    }
    let d = side_from(&dstats?, &dfresh?, dcpu);
    let b = side_from(&bstats?, &bfresh?, bcpu);
    let hours = elapsed / hour;
    let minimum = n as f64 * hours;
    let per_link_hour = |posts: u64| posts as f64 / n as f64 / hours;

    report.info("hour_equivalents", json!(hours));
    report.info("minimum_posts", json!(minimum));
    let over = d.posts as f64 / minimum - 1.0;
    report.row(
        "daemon_posts",
        "daemon POSTs",
        json!(d.posts),
        d.posts.to_string(),
        &format!("<= {:.0} (min +5%)", minimum * 1.05),
        Some(over <= 0.05),
    );
    report.row(
        "baseline_posts",
        "baseline POSTs",
        json!(b.posts),
        b.posts.to_string(),
        "",
        None,
    );
    report.row(
        "daemon_products",
        "daemon products requested",
        json!(d.products),
        d.products.to_string(),
        "",
        None,
    );
    report.row(
        "baseline_products",
        "baseline products requested",
        json!(b.products),
        b.products.to_string(),
        "",
        None,
    );
    report.row(
        "daemon_429",
        "daemon 429s",
        json!(d.r429),
        d.r429.to_string(),
        "0",
        Some(d.r429 == 0),
    );
    report.row(
        "baseline_429",
        "baseline 429s",
        json!(b.r429),
        b.r429.to_string(),
        "",
        None,
    );
    report.info("daemon_other_errors", json!(d.other_errors));
    report.info("baseline_other_errors", json!(b.other_errors));
    report.row(
        "daemon_posts_per_link_hour",
        "daemon POSTs/link/hour-eq.",
        json!(per_link_hour(d.posts)),
        format!("{:.3}", per_link_hour(d.posts)),
        "~1",
        None,
    );
    report.row(
        "baseline_posts_per_link_hour",
        "baseline POSTs/link/hour-eq.",
        json!(per_link_hour(b.posts)),
        format!("{:.3}", per_link_hour(b.posts)),
        "",
        None,
    );
    let mut fresher = true;
    let mut ages = serde_json::Map::new();
    for p in ["accounts", "transactions", "account_numbers", "identity"] {
        let (d50, d99, dn) = d.fresh.get(p).copied().unwrap_or((f64::NAN, f64::NAN, 0));
        let (b50, b99, bn) = b.fresh.get(p).copied().unwrap_or((f64::NAN, f64::NAN, 0));
        // Ages in hour-equivalents make the figures readable at any scale.
        let ok = d99 <= b99 && dn >= bn;
        fresher &= ok;
        report.row(
            &format!("age_{p}"),
            &format!("{p} age p50/p99 at the end (h-eq.) daemon | baseline"),
            json!({"daemon": {"p50_s": d50, "p99_s": d99, "links": dn}, "baseline": {"p50_s": b50, "p99_s": b99, "links": bn}}),
            format!("{:.2}/{:.2} | {:.2}/{:.2}", d50 / hour, d99 / hour, b50 / hour, b99 / hour),
            "daemon fresher",
            Some(ok),
        );
        ages.insert(p.into(), json!([d50, d99, b50, b99]));
    }
    // Time-averaged ages over the second half: the verdict on freshness.
    let mut fresher_avg = true;
    for (p, [d50, d99, b50, b99, k]) in &samples {
        let (d50, d99, b50, b99) = (d50 / k, d99 / k, b50 / k, b99 / k);
        let ok = d50 <= b50 && d99 <= b99;
        fresher_avg &= ok;
        report.row(
            &format!("avg_age_{p}"),
            &format!("{p} mean age p50/p99 over 2nd half (h-eq.) daemon | baseline"),
            json!({"daemon": {"p50_s": d50, "p99_s": d99}, "baseline": {"p50_s": b50, "p99_s": b99}, "samples": k}),
            format!("{:.2}/{:.2} | {:.2}/{:.2}", d50 / hour, d99 / hour, b50 / hour, b99 / hour),
            "daemon fresher",
            Some(ok),
        );
    }
    report.info("fresher_time_averaged", json!(fresher_avg));
    let fewer = d.posts <= b.posts;
    report.row(
        "fresher_with_fewer",
        "fresher at equal or lower request count",
        json!(fresher && fewer),
        format!("{}", fresher && fewer),
        "true",
        Some(fresher && fewer),
    );
    report.row(
        "cpu",
        "CPU seconds daemon | baseline",
        json!([d.cpu_s, b.cpu_s]),
        format!("{:.1} | {:.1}", d.cpu_s, b.cpu_s),
        "",
        None,
    );
    Ok(report)
}
