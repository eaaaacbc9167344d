//! `throughput`: durable POSTs per second with the fleet always due, beside
//! a bare HTTP loop with the same client and concurrency.

use super::*;

/// The bare loop: the same client library (linkfresh's MoneyKit client on
/// reqwest), the same concurrency, no store and no scheduler: `conc` tasks
/// POST round-robin over `n` links for `secs` seconds. Returns 202s per second.
pub(crate) async fn bare_loop(
    base_url: &str,
    n: usize,
    conc: u32,
    secs: u64,
) -> Result<(f64, u64, u64)> {
    let mk = client(base_url)?;
    mk.ensure_token().await?;
    let ids: Arc<Vec<LinkId>> = Arc::new(
        (0..n)
            .map(|i| LinkId::parse(&link_id("mk_bare", i)).expect("id"))
            .collect(),
    );
    let products = ProductSet::of(Product::Accounts).union(ProductSet::of(Product::Transactions));
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (mk, ids, next, ok, other, stop, counting) = (
            mk.clone(),
            ids.clone(),
            next.clone(),
            ok.clone(),
            other.clone(),
            stop.clone(),
            counting.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize % ids.len();
                let r = mk.refresh(&ids[i], products).await;
                if counting.load(Ordering::Relaxed) {
                    if matches!(r, RefreshOutcome::Accepted { .. }) {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        other.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Two seconds of warm-up (connections, token), then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    counting.store(true, Ordering::Relaxed);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let elapsed = t.elapsed().as_secs_f64();
    let (ok, other) = (ok.load(Ordering::Relaxed), other.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    Ok((ok as f64 / elapsed, ok, other))
}

pub(crate) async fn throughput(args: &Args, dir: &Path) -> Result<Report> {
    let n = args.links.unwrap_or(20_000);
    let secs = args.duration.unwrap_or(60);
    let hour = args.window.unwrap_or(1.0);
    let c = http();
    let mut report = Report::new("throughput");
    report.info("links", json!(n));
    report.info("window_s", json!(hour));
    report.info("in_flight", json!(args.in_flight));
    report.info("daemon_log", json!(args.daemon_log));

    let sim_addr = free_addr()?;
    let base_url = format!("http://{sim_addr}");
    let setup = Setup {
        hour,
        links: n,
        products: "accounts,transactions",
        prefix: "mk_tp",
        max_rps: 1_000_000,
        in_flight: args.in_flight,
        margin_ms: 10,
        coalesce_ms: 0,
        first_spread_ms: (hour * 1000.0) as u64,
        list_sim_links: false,
    };
    let config = write_config(dir, &setup, &base_url, free_addr()?)?;
    let events = enable_events(&config, args.events_rate).await?;
    report.info("events_rate", json!(args.events_rate));
    let mut sim = start_sim(&c, dir, &config, sim_addr).await?;

    // 1. The bare loop against the same simulator.
    let sim_cpu0 = cpu_seconds(sim.pid());
    let (bare, bare_ok, bare_other) =
        bare_loop(&base_url, n, args.in_flight, args.bare_seconds).await?;
    let sim_cpu_bare = (cpu_seconds(sim.pid()) - sim_cpu0) / (args.bare_seconds as f64 + 2.0);
    eprintln!("throughput: bare loop {bare:.0} POSTs/s ({bare_ok} ok, {bare_other} other)");

    // 2. The daemon, warmed up until every link had its first POST. The bare
    // loop ignores windows, so its violations are counted apart.
    let bare_violations = get_json(&c, &format!("{base_url}/_sim/stats")).await?["violations"]
        .as_u64()
        .unwrap_or(0);
    let mut daemon = start_daemon(dir, &config, &args.daemon_log, "daemon")?;
    let pid = daemon.pid();
    let warm_limit = Instant::now() + Duration::from_secs(120);
    loop {
        if !daemon.alive() {
            bail!("daemon exited:\n{}", daemon.tail());
        }
        let s = get_json(&c, &format!("{base_url}/_sim/stats")).await?;
        let daemon_posts = count(&s, "refresh", None).saturating_sub(bare_ok + bare_other);
        if daemon_posts as usize >= 2 * n || Instant::now() > warm_limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s0 = get_json(&c, &format!("{base_url}/_sim/stats")).await?;
    let (t0_ms, t0) = (now_ms(), Instant::now());
    let (cpu_d0, cpu_s0) = (cpu_seconds(pid), cpu_seconds(sim.pid()));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let s1 = get_json(&c, &format!("{base_url}/_sim/stats")).await?;
    let elapsed = t0.elapsed().as_secs_f64();
    let t1_ms = now_ms();
    let (cpu_d, cpu_s) = (
        (cpu_seconds(pid) - cpu_d0) / elapsed,
        (cpu_seconds(sim.pid()) - cpu_s0) / elapsed,
    );
    let (hwm, _) = memory_kib(pid);
    let clean = daemon.stop(Duration::from_secs(30));
    let accepted = count(&s1, "refresh", Some("202")) - count(&s0, "refresh", Some("202"));
    let all_posts = count(&s1, "refresh", None) - count(&s0, "refresh", None);
    let sim_rate = accepted as f64 / elapsed;

    // 3. Durability: attempts whose intent *and* outcome are in the store.
    let pool = open_store(&dir.join("linkfresh.db")).await?;
    let (durable,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM attempts WHERE intent_at >= $1 AND intent_at < $2 AND outcome = 'accepted'",
    )
    .bind(t0_ms)
    .bind(t1_ms)
    .fetch_one(&pool)
    .await?;
    let (pending,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM attempts WHERE intent_at >= $1 AND intent_at < $2 AND outcome IS NULL",
    )
    .bind(t0_ms)
    .bind(t1_ms)
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    let durable_rate = durable as f64 / ((t1_ms - t0_ms) as f64 / 1000.0);
    let ratio = durable_rate / bare;

    report.row(
        "bare_posts_per_s",
        "bare HTTP loop (no store)",
        json!(bare),
        format!("{bare:.0} /s"),
        "reference",
        None,
    );
    report.row(
        "sim_accepted_per_s",
        "daemon, 202s seen by the sim",
        json!(sim_rate),
        format!("{sim_rate:.0} /s"),
        "",
        None,
    );
    report.row(
        "durable_posts_per_s",
        &format!("daemon, durable POSTs over {secs} s"),
        json!(durable_rate),
        format!("{durable_rate:.0} /s"),
        ">= 5000 /s",
        Some(durable_rate >= 5000.0),
    );
    report.row(
        "ratio",
        "daemon / bare loop",
        json!(ratio),
        format!("{ratio:.2}"),
        ">= 0.50",
        Some(ratio >= 0.5),
    );
    report.info("non_202_posts", json!(all_posts - accepted));
    report.info("intents_without_outcome", json!(pending));
    report.info("clean_stop", json!(clean));
    report.info("daemon_cpu_cores", json!(cpu_d));
    report.info("sim_cpu_cores", json!(cpu_s));
    report.info("sim_cpu_cores_bare", json!(sim_cpu_bare));
    report.info("daemon_vmhwm_mib", json!(hwm as f64 / 1024.0));
    report.row(
        "cpu",
        "CPU cores: daemon / sim",
        json!([cpu_d, cpu_s]),
        format!("{cpu_d:.2} / {cpu_s:.2}"),
        "",
        None,
    );
    let v = s1["violations"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(bare_violations);
    report.info("bare_loop_violations", json!(bare_violations));
    report.row(
        "violations",
        "window violations (daemon)",
        json!(v),
        v.to_string(),
        "0",
        Some(v == 0),
    );
    sim.stop(Duration::from_secs(5));
    if let Some(events) = &events {
        report.info("events_delivered", json!(events.count()));
    }
    Ok(report)
}
