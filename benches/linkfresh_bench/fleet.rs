//! `fleet-1m`: a million links in a `links_file`: check time, start to first
//! POST (empty store and restart), peak RSS, store size.

use super::*;

pub(crate) async fn fleet(args: &Args, dir: &Path) -> Result<Report> {
    let n = args.links.unwrap_or(1_000_000);
    let run_secs = args.duration.unwrap_or(30);
    let hour = args.window.unwrap_or(3600.0);
    let c = http();
    let mut report = Report::new("fleet-1m");
    report.info("links", json!(n));
    report.info("products_per_link", json!(4));

    let sim_addr = free_addr()?;
    let base_url = format!("http://{sim_addr}");
    let setup = Setup {
        hour,
        links: n,
        products: ALL4,
        prefix: "mk_fleet",
        // The fleet needs n / hour POSTs per second; leave room.
        max_rps: ((n as f64 / hour) * 4.0).max(100.0) as u32,
        in_flight: args.in_flight,
        margin_ms: 30_000.min((hour * 1000.0 / 120.0) as u64),
        coalesce_ms: (hour * 1000.0 / 6.0) as u64,
        first_spread_ms: 60_000,
        list_sim_links: false,
    };
    let t = Instant::now();
    let config = write_config(dir, &setup, &base_url, free_addr()?)?;
    eprintln!(
        "fleet-1m: wrote {n} links in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // linkfresh check: a separate process, wall clock.
    let t = Instant::now();
    let out = Command::new(linkfresh_bin()?)
        .args(["check", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .output()?;
    let check_s = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("check failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    report.row(
        "check_s",
        "linkfresh check",
        json!(check_s),
        format!("{check_s:.2} s"),
        "< 5 s",
        Some(check_s < 5.0),
    );

    let mut sim = start_sim(&c, dir, &config, sim_addr).await?;

    let mut first_post = None;
    let mut hwm_series = Vec::new();
    for (round, label) in [(0, "cold"), (1, "restart")] {
        let before = get_json(&c, &format!("{base_url}/_sim/stats")).await?;
        let posts_before = count(&before, "refresh", None);
        let t0 = Instant::now();
        let mut daemon = start_daemon(dir, &config, &args.daemon_log, &format!("daemon-{label}"))?;
        let pid = daemon.pid();
        let limit = Duration::from_secs(120);
        let mut got = None;
        while t0.elapsed() < limit {
            if !daemon.alive() {
                bail!("daemon exited:\n{}", daemon.tail());
            }
            let s = get_json(&c, &format!("{base_url}/_sim/stats")).await?;
            if count(&s, "refresh", None) > posts_before {
                got = Some(t0.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let Some(first) = got else {
            bail!("no POST within {limit:?}:\n{}", daemon.tail());
        };
        let (hwm_at_first, _) = memory_kib(pid);
        // Let it run: the scheduler holds the whole fleet, the dispatcher works.
        let run_until = Instant::now() + Duration::from_secs(run_secs);
        while Instant::now() < run_until {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if !daemon.alive() {
                bail!("daemon exited:\n{}", daemon.tail());
            }
        }
        let (hwm, rss) = memory_kib(pid);
        let cpu = cpu_seconds(pid);
        let after = get_json(&c, &format!("{base_url}/_sim/stats")).await?;
        daemon.stop(Duration::from_secs(30));
        hwm_series.push(json!({"start": label, "first_post_s": first, "vmhwm_mib_at_first_post": hwm_at_first as f64 / 1024.0, "vmhwm_mib": hwm as f64 / 1024.0, "vmrss_mib": rss as f64 / 1024.0, "cpu_s": cpu, "posts": count(&after, "refresh", None) - posts_before, "gets": count(&after, "get_link", None) - count(&before, "get_link", None), "violations": after["violations"]}));
        let hwm_mib = hwm as f64 / 1024.0;
        if round == 0 {
            first_post = Some(first);
            report.row(
                "first_post_s",
                "start to first POST (empty store)",
                json!(first),
                format!("{first:.2} s"),
                "< 10 s",
                Some(first < 10.0),
            );
            report.row(
                "vmhwm_mib",
                &format!("peak RSS (VmHWM) after {run_secs} s"),
                json!(hwm_mib),
                format!("{hwm_mib:.0} MiB"),
                "< 512 MiB",
                Some(hwm_mib < 512.0),
            );
        } else {
            report.row(
                "restart_first_post_s",
                "start to first POST (restart)",
                json!(first),
                format!("{first:.2} s"),
                "< 10 s",
                Some(first < 10.0),
            );
            report.row(
                "restart_vmhwm_mib",
                "peak RSS (VmHWM), restart",
                json!(hwm_mib),
                format!("{hwm_mib:.0} MiB"),
                "< 512 MiB",
                Some(hwm_mib < 512.0),
            );
        }
    }
    let _ = first_post;
    let db = dir.join("linkfresh.db");
    let size = store_bytes(&db) as f64 / 1024.0 / 1024.0;
    report.row(
        "store_mib",
        "store size (db + wal)",
        json!(size),
        format!("{size:.0} MiB"),
        "reported",
        None,
    );
    let stats = get_json(&c, &format!("{base_url}/_sim/stats")).await?;
    let v = stats["violations"].as_u64().unwrap_or(0);
    report.row(
        "violations",
        "window violations",
        json!(v),
        v.to_string(),
        "0",
        Some(v == 0),
    );
    report.info("runs", json!(hwm_series));
    sim.stop(Duration::from_secs(5));
    Ok(report)
}
