//! `lateness`: send time minus due time over 100,000 links on 60 s windows.

use super::*;

pub(crate) async fn lateness(args: &Args, dir: &Path) -> Result<Report> {
    let n = args.links.unwrap_or(100_000);
    let secs = args.duration.unwrap_or(180);
    let hour = args.window.unwrap_or(60.0);
    let c = http();
    let mut report = Report::new("lateness");
    report.info("links", json!(n));
    report.info("window_s", json!(hour));
    report.info("needed_posts_per_s", json!(n as f64 / hour));

    let sim_addr = free_addr()?;
    let base_url = format!("http://{sim_addr}");
    let listen = free_addr()?;
    let margin_ms = 100;
    let setup = Setup {
        hour,
        links: n,
        products: "accounts,transactions",
        prefix: "mk_late",
        max_rps: 100_000,
        in_flight: args.in_flight,
        margin_ms,
        coalesce_ms: (hour * 1000.0 / 6.0) as u64,
        first_spread_ms: (hour * 1000.0) as u64,
        list_sim_links: false,
    };
    let config = write_config(dir, &setup, &base_url, listen)?;
    let events = enable_events(&config, args.events_rate).await?;
    report.info("events_rate", json!(args.events_rate));
    let mut sim = start_sim(&c, dir, &config, sim_addr).await?;
    let mut daemon = start_daemon(dir, &config, &args.daemon_log, "daemon")?;
    let pid = daemon.pid();
    wait_up(
        &c,
        &format!("http://{listen}/metrics"),
        Duration::from_secs(60),
    )
    .await?;
    let h0 = lag_histogram(
        &c.get(format!("http://{listen}/metrics"))
            .send()
            .await?
            .text()
            .await?,
    );
    let t0_ms = now_ms();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !daemon.alive() {
            bail!("daemon exited:\n{}", daemon.tail());
        }
    }
    let t1_ms = now_ms();
    let h1 = lag_histogram(
        &c.get(format!("http://{listen}/metrics"))
            .send()
            .await?
            .text()
            .await?,
    );
    let stats = get_json(&c, &format!("{base_url}/_sim/stats")).await?;
    let (hwm, _) = memory_kib(pid);
    let cpu = cpu_seconds(pid) / (secs as f64);
    daemon.stop(Duration::from_secs(30));

    // Exact lateness from the store: for consecutive counted POSTs of a link,
    // the second was due at first + window + margin (both products share one
    // window, so they ride one POST); lateness = its send time - that.
    let spacing_ms = (hour * 1000.0).round() as i64 + margin_ms as i64;
    let pool = open_store(&dir.join("linkfresh.db")).await?;
    let rows: Vec<(String, i64, Option<String>)> = sqlx::query_as(
        "SELECT link_id, intent_at, outcome FROM attempts WHERE intent_at < $1 ORDER BY link_id, intent_at",
    )
    .bind(t1_ms)
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    let mut late = Vec::new();
    let mut prev: Option<(&str, i64)> = None;
    for (link, at, outcome) in &rows {
        if let Some((pl, pat)) = prev
            && pl == link
            && *at >= t0_ms
        {
            late.push((at - (pat + spacing_ms)) as f64 / 1000.0);
        }
        if outcome.as_deref() == Some("accepted") {
            prev = Some((link.as_str(), *at));
        } else {
            prev = None;
        }
    }
    late.sort_by(f64::total_cmp);
    let (p50, p99, max) = (pct(&late, 0.5), pct(&late, 0.99), pct(&late, 1.0));
    let early = late.iter().filter(|l| **l < 0.0).count();
    let posts_per_s = late.len() as f64 / ((t1_ms - t0_ms) as f64 / 1000.0);
    report.row(
        "samples",
        "POSTs measured (second and later per link)",
        json!(late.len()),
        late.len().to_string(),
        "",
        None,
    );
    report.row(
        "posts_per_s",
        "of which per second",
        json!(posts_per_s),
        format!("{posts_per_s:.0} /s"),
        &format!("~{:.0} /s", n as f64 / hour),
        None,
    );
    report.row(
        "p50_s",
        "lateness p50",
        json!(p50),
        format!("{:.3} s", p50),
        "",
        None,
    );
    report.row(
        "p99_s",
        "lateness p99",
        json!(p99),
        format!("{:.3} s", p99),
        "< 1 s",
        Some(p99 < 1.0),
    );
    report.row(
        "max_s",
        "lateness max",
        json!(max),
        format!("{:.3} s", max),
        "",
        None,
    );
    report.row(
        "early",
        "sent before due (must be 0)",
        json!(early),
        early.to_string(),
        "0",
        Some(early == 0),
    );
    let (m50, m99) = (
        bucket_quantile(&h0, &h1, 0.5),
        bucket_quantile(&h0, &h1, 0.99),
    );
    report.row(
        "metric_p99_le",
        "linkfresh_due_lag_seconds p99 bucket",
        json!(m99),
        format!("<= {m99} s"),
        "",
        None,
    );
    report.info("metric_p50_le", json!(m50));
    let v = stats["violations"].as_u64().unwrap_or(0);
    let r429 = count(&stats, "refresh", Some("429"));
    report.row(
        "violations",
        "window violations / 429s",
        json!(v),
        format!("{v} / {r429}"),
        "0 / 0",
        Some(v == 0 && r429 == 0),
    );
    report.info("daemon_vmhwm_mib", json!(hwm as f64 / 1024.0));
    report.info("daemon_cpu_cores", json!(cpu));
    sim.stop(Duration::from_secs(5));
    if let Some(events) = &events {
        report.info("events_delivered", json!(events.count()));
    }
    Ok(report)
}
