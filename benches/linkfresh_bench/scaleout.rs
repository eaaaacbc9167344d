//! `scaleout`: the same fleet (20,000 links, 1 s windows, margin 0, always
//! due, no rate cap) on 1 SQLite daemon, 1 PostgreSQL replica and 3
//! PostgreSQL replicas, then a failover: kill -9 one of three replicas, later
//! start a fourth. Each phase has its own simulator and a fresh store (a
//! fresh database on the `--pg-url` server).
//!
//! CPU is machine CPU-seconds per 1,000 accepted POSTs: the daemons, the
//! PostgreSQL backends serving the phase's database (listed from
//! `pg_stat_activity` twice a second, read from /proc) and the simulator.
//! The server's shared background processes (WAL writer, checkpointer) are
//! not counted: other databases on the same server use them too.

use sqlx::postgres::PgPoolOptions;

use super::*;

/// The figures of one steady phase.
struct Steady {
    w: Window,
    durable_per_s: f64,
    rss_mib: Vec<f64>,
    /// From starting the replicas to the simulator's first POST.
    first_post_s: Option<f64>,
    shares: Vec<f64>,
    violations: u64,
}

pub(crate) async fn scaleout(args: &Args, dir: &Path) -> Result<Report> {
    let secs = args.duration.unwrap_or(25) as f64;
    let pg = match &args.pg_url {
        Some(url) => Some(PgServer::connect(url).await?),
        None => None,
    };
    let ctx = Ctx {
        c: http(),
        links: args.links.unwrap_or(20_000),
        in_flight: args.in_flight,
        log: args.daemon_log.clone(),
        pg,
        dir: dir.to_owned(),
        hour: args.window.unwrap_or(1.0),
    };
    let mut report = Report::new("scaleout");
    report.info("links", json!(ctx.links));
    report.info("window_s", json!(ctx.hour));
    report.info("duration_s", json!(secs));
    report.info("in_flight", json!(ctx.in_flight));
    report.info(
        "linkfresh_bin",
        json!(linkfresh_bin()?.display().to_string()),
    );
    if let (Some(url), Some(server)) = (&args.pg_url, &ctx.pg) {
        report.info("pg_url", json!(shown_url(url)));
        report.info("pg_settings", server.settings().await?);
    }
    let mut steady: BTreeMap<&str, Steady> = BTreeMap::new();
    for phase in args.phases.split(',').map(str::trim) {
        eprintln!("scaleout: phase {phase}");
        match phase {
            "sqlite" => {
                steady.insert("sqlite", run_steady(&ctx, "sqlite", false, 1, secs).await?);
            }
            "pg1" => {
                steady.insert("pg1", run_steady(&ctx, "pg1", true, 1, secs).await?);
            }
            "pg3" => {
                steady.insert("pg3", run_steady(&ctx, "pg3", true, 3, secs).await?);
            }
            "failover" => {
                let ctx = Ctx {
                    links: args.failover_links,
                    ..ctx.clone()
                };
                report.info("failover_links", json!(ctx.links));
                failover(&ctx, secs, &mut report).await?;
            }
            "rate" => fleet_rate(&ctx, secs, &mut report).await?,
            other => bail!("unknown phase {other:?}: sqlite, pg1, pg3, failover, rate"),
        }
    }
    for (name, s) in &steady {
        steady_rows(&mut report, name, s);
    }
    ratios(&mut report, &steady);
    Ok(report)
}

async fn run_steady(ctx: &Ctx, name: &str, pg: bool, n: usize, secs: f64) -> Result<Steady> {
    let mut run = Running::prepare(ctx, name, pg).await?;
    let started = Instant::now();
    for _ in 0..n {
        run.start_replica(ctx)?;
    }
    let first_post_s = run
        .first_post(ctx, started, Duration::from_secs(300))
        .await?
        .map(|d| d.as_secs_f64());
    run.warm_up(ctx, ctx.links as u64, Duration::from_secs(90))
        .await?;
    let mut sampler = run.sampler(ctx).await?;
    run.run_for(ctx, &mut sampler, secs).await?;
    let w = run.finish_window(ctx, sampler).await?;
    run.stop_daemons();
    let owners = run.durable_by_owner(w.t0_ms, w.t1_ms).await?;
    let durable: i64 = owners.iter().map(|o| o.1).sum();
    let shares = run
        .replicas
        .iter()
        .map(|r| {
            let mine: i64 = owners
                .iter()
                .filter(|(o, _)| n == 1 || run.replica_of(o).is_some_and(|x| x.pid == r.pid))
                .map(|o| o.1)
                .sum();
            mine as f64 / durable.max(1) as f64
        })
        .collect();
    let durable_per_s = durable as f64 / ((w.t1_ms - w.t0_ms) as f64 / 1000.0);
    let rss_mib = run
        .replicas
        .iter()
        .map(|r| r.peak_rss_kib as f64 / 1024.0)
        .collect();
    if let Some(rows) = &w.statements {
        print_statements(name, rows, w.accepted);
    }
    let violations = run.finish(ctx).await?;
    Ok(Steady {
        w,
        durable_per_s,
        rss_mib,
        first_post_s,
        shares,
        violations,
    })
}

/// The fleet-wide rate the `rate` phase sets (issue 16's target).
const FLEET_RATE: u64 = 100;

/// `rate`: 3 PostgreSQL replicas with `max_requests_per_second = 100`, the
/// fleet wanting far more: the simulator's busiest rolling second over the
/// whole phase, start-up and rebalancing included, must stay within the
/// setting (5 % allowed for clock granularity), not three times it.
async fn fleet_rate(ctx: &Ctx, secs: f64, report: &mut Report) -> Result<()> {
    let mut run = Running::prepare(ctx, "rate", true).await?;
    run.env.push((
        "LINKFRESH__MONEYKIT__MAX_REQUESTS_PER_SECOND",
        FLEET_RATE.to_string(),
    ));
    let started = Instant::now();
    for _ in 0..3 {
        run.start_replica(ctx)?;
    }
    run.first_post(ctx, started, Duration::from_secs(120))
        .await?;
    let t0 = Instant::now();
    let posts0 = count(&run.sim_stats(ctx).await?, "refresh", None);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let posts1 = count(&run.sim_stats(ctx).await?, "refresh", None);
    let average = posts1.saturating_sub(posts0) as f64 / t0.elapsed().as_secs_f64();
    let busiest = get_json(
        &ctx.c,
        &format!("{}/_sim/busiest?window_ms=1000", run.sim_url),
    )
    .await?["busiest"]
        .as_u64()
        .unwrap_or(0);
    let violations = run.finish(ctx).await?;
    let allowed = FLEET_RATE + FLEET_RATE / 20;
    report.row(
        "rate_busiest_second",
        "rate 100/s, 3 replicas: most POSTs in any rolling second",
        json!(busiest),
        busiest.to_string(),
        "<= 105",
        Some(busiest <= allowed),
    );
    report.row(
        "rate_average",
        "rate 100/s, 3 replicas: average POST/s",
        json!(average),
        format!("{average:.1} /s"),
        "",
        None,
    );
    report.row(
        "rate_violations",
        "rate: window violations",
        json!(violations),
        violations.to_string(),
        "0",
        Some(violations == 0),
    );
    Ok(())
}

fn print_statements(phase: &str, rows: &[StatementRow], posts: u64) {
    let calls: i64 = rows.iter().map(|r| r.calls).sum();
    eprintln!(
        "scaleout {phase}: pg_stat_statements, {calls} calls for {posts} POSTs; top by time:"
    );
    for r in rows.iter().take(10) {
        let q: String = r.query.split_whitespace().collect::<Vec<_>>().join(" ");
        let q: String = q.chars().take(110).collect();
        eprintln!(
            "  {:>7} calls {:>9.0} ms {:>8} rows  {q}",
            r.calls, r.ms, r.rows
        );
    }
}

fn list(v: &[f64], digits: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.digits$}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn steady_rows(report: &mut Report, name: &str, s: &Steady) {
    let w = &s.w;
    let rate = w.posts_per_s();
    report.row(
        &format!("{name}_posts_per_s"),
        &format!("{name}: POST/s (202s at the sim)"),
        json!(rate),
        format!("{rate:.0} /s"),
        "",
        None,
    );
    report.row(
        &format!("{name}_durable_per_s"),
        &format!("{name}: durable POST/s (store)"),
        json!(s.durable_per_s),
        format!("{:.0} /s", s.durable_per_s),
        "",
        None,
    );
    let k = 1000.0 / w.accepted.max(1) as f64;
    let parts = [w.cpu_daemons * k, w.cpu_db * k, w.cpu_sim * k].map(|x: f64| x.max(0.0));
    report.row(
        &format!("{name}_cpu_per_1000"),
        &format!("{name}: CPU-s per 1,000 POSTs (daemons+db+sim)"),
        json!(w.cpu_per_1000()),
        format!("{:.3} ({})", w.cpu_per_1000(), list(&parts, 3)),
        "",
        None,
    );
    report.info(&format!("{name}_cpu_parts_per_1000"), json!(parts));
    report.info(
        &format!("{name}_cpu_cores"),
        json!((w.cpu_daemons + w.cpu_db + w.cpu_sim) / w.secs),
    );
    report.row(
        &format!("{name}_peak_rss_mib"),
        &format!("{name}: peak RSS per replica"),
        json!(s.rss_mib),
        format!("{} MiB", list(&s.rss_mib, 0)),
        "",
        None,
    );
    report.row(
        &format!("{name}_first_post_s"),
        &format!("{name}: first POST after start"),
        json!(s.first_post_s),
        s.first_post_s
            .map_or("none in 300 s".into(), |t| format!("{t:.1} s")),
        "",
        None,
    );
    report.row(
        &format!("{name}_shares"),
        &format!("{name}: share of POSTs per replica"),
        json!(s.shares),
        list(&s.shares, 2),
        "",
        None,
    );
    if let Some(x) = w.xacts {
        let per = x as f64 / w.accepted.max(1) as f64;
        let stmts = w.statements.as_ref().map(|rows| {
            rows.iter().map(|r| r.calls).sum::<i64>() as f64 / w.accepted.max(1) as f64
        });
        report.row(
            &format!("{name}_per_post"),
            &format!("{name}: transactions / statements per POST"),
            json!([per, stmts]),
            format!(
                "{per:.3} / {}",
                stmts.map_or("n/a".into(), |s| format!("{s:.2}"))
            ),
            "",
            None,
        );
        report.info(
            &format!("{name}_tls_backends"),
            json!([w.tls_backends, w.db_backends]),
        );
    }
    report.info(&format!("{name}_non_202"), json!(w.posts - w.accepted));
    report.row(
        &format!("{name}_violations"),
        &format!("{name}: window violations (sim)"),
        json!(s.violations),
        s.violations.to_string(),
        "0",
        Some(s.violations == 0),
    );
}

fn ratios(report: &mut Report, steady: &BTreeMap<&str, Steady>) {
    let (Some(pg1), Some(pg3)) = (steady.get("pg1"), steady.get("pg3")) else {
        return;
    };
    if let Some(sqlite) = steady.get("sqlite") {
        let r = pg1.w.posts_per_s() / sqlite.w.posts_per_s();
        report.row(
            "pg1_over_sqlite",
            "PG-1 / SQLite-1 POST/s",
            json!(r),
            format!("{r:.2}"),
            ">= 0.50",
            Some(r >= 0.5),
        );
    }
    let r = pg3.w.posts_per_s() / pg1.w.posts_per_s();
    let c = pg3.w.cpu_per_1000() / pg1.w.cpu_per_1000();
    report.row(
        "pg3_over_pg1",
        "PG-3 / PG-1: POST/s, CPU per 1,000 POSTs",
        json!([r, c]),
        format!("{r:.2}, {c:.2}"),
        ">= 1.5 or CPU <= 1.2",
        Some(r >= 1.5 || c <= 1.2),
    );
}

/// Three replicas; one is killed with SIGKILL after `secs`, a fourth is
/// started after the dead one's leases expired, and the store's attempt
/// rows say how long each link waited across the kill.
async fn failover(ctx: &Ctx, secs: f64, report: &mut Report) -> Result<()> {
    let mut run = Running::prepare(ctx, "failover", true).await?;
    for _ in 0..3 {
        run.start_replica(ctx)?;
    }
    run.warm_up(ctx, ctx.links as u64, Duration::from_secs(90))
        .await?;
    let mut sampler = run.sampler(ctx).await?;
    run.run_for(ctx, &mut sampler, secs).await?;
    run.note_rss();
    let t_kill = now_ms();
    let killed = run.replicas[0].pid;
    run.replicas[0].proc.kill9();
    eprintln!("scaleout failover: killed replica1 (pid {killed})");
    // The default lease is 15 s: wait past it and one window.
    run.run_for(ctx, &mut sampler, secs.max(20.0)).await?;
    let t_join = now_ms();
    run.start_replica(ctx)?;
    run.run_for(ctx, &mut sampler, secs.max(30.0)).await?;
    let w = run.finish_window(ctx, sampler).await?;
    run.stop_daemons();
    let t_end = w.t1_ms;
    let url = run.db.as_ref().map(|d| d.1.clone()).unwrap_or_default();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await?;
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT link_id, intent_at, COALESCE(replica, '') FROM attempts ORDER BY link_id, intent_at",
    )
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    let killed_tag = format!("-{killed}-");
    let across_kill = gaps_across(&rows, t_kill, t_end, Some(&killed_tag));
    let across_ref = gaps_across(&rows, w.t0_ms + (t_kill - w.t0_ms) / 2, t_end, None);
    // The fourth replica's share over the last `secs` of the window.
    let tail = run
        .durable_by_owner(t_end - (secs * 1000.0) as i64, t_end)
        .await?;
    let total: i64 = tail.iter().map(|t| t.1).sum();
    let fourth = run.replicas[3].pid;
    let fourth_n: i64 = tail
        .iter()
        .filter(|(o, _)| o.contains(&format!("-{fourth}-")))
        .map(|t| t.1)
        .sum();
    let violations = run.finish(ctx).await?;
    let show = |g: &Gaps| {
        format!(
            "max {:.1} s, p99 {:.1} s, p50 {:.1} s, {} links, {} not sent again",
            g.max, g.p99, g.p50, g.links, g.open
        )
    };
    report.row(
        "failover_gap_killed",
        "failover: gap across the kill, the killed replica's links",
        json!(across_kill.1.as_json()),
        show(&across_kill.1),
        "<= lease + 1 window (16 s)",
        Some(across_kill.1.max <= 16.0 && across_kill.1.open == 0),
    );
    report.row(
        "failover_gap_all",
        "failover: gap across the kill, every link",
        json!(across_kill.0.as_json()),
        show(&across_kill.0),
        "",
        None,
    );
    report.row(
        "failover_gap_reference",
        "failover: gap across an instant before the kill",
        json!(across_ref.0.as_json()),
        show(&across_ref.0),
        "reference",
        None,
    );
    let share = fourth_n as f64 / total.max(1) as f64;
    report.row(
        "failover_fourth_share",
        &format!("failover: 4th replica's share, last {secs:.0} s"),
        json!(share),
        format!("{share:.2}"),
        "about 0.33 (of 3 live)",
        None,
    );
    report.info(
        "failover_join_after_kill_s",
        json!((t_join - t_kill) / 1000),
    );
    report.info("failover_posts_per_s", json!(w.posts_per_s()));
    report.info("failover_cpu_per_1000", json!(w.cpu_per_1000()));
    report.row(
        "failover_violations",
        "failover: window violations (sim)",
        json!(violations),
        violations.to_string(),
        "0",
        Some(violations == 0),
    );
    Ok(())
}

/// How long links waited across an instant: per link, from its last POST
/// at or before it to its first after (or to the end, counted as `open`).
struct Gaps {
    max: f64,
    p99: f64,
    p50: f64,
    links: usize,
    open: usize,
}

impl Gaps {
    fn of(mut gaps: Vec<(f64, bool)>) -> Self {
        gaps.sort_by(|a, b| a.0.total_cmp(&b.0));
        let values: Vec<f64> = gaps.iter().map(|g| g.0).collect();
        Self {
            max: values.last().copied().unwrap_or(0.0),
            p99: pct(&values, 0.99),
            p50: pct(&values, 0.5),
            links: gaps.len(),
            open: gaps.iter().filter(|g| g.1).count(),
        }
    }

    fn as_json(&self) -> Value {
        json!({"max_s": self.max, "p99_s": self.p99, "p50_s": self.p50,
               "links": self.links, "not_sent_again": self.open})
    }
}

/// Gaps across `at` of every link, and of the links whose last POST before
/// it was sent by the replica whose owner name contains `owner`. `rows`
/// are `(link, intent_at, owner)` ordered by link and time.
fn gaps_across(
    rows: &[(String, i64, String)],
    at: i64,
    end: i64,
    owner: Option<&str>,
) -> (Gaps, Gaps) {
    let mut all = Vec::new();
    let mut theirs = Vec::new();
    for link in rows.chunk_by(|a, b| a.0 == b.0) {
        let Some(before) = link.iter().rev().find(|r| r.1 <= at) else {
            continue;
        };
        let after = link.iter().find(|r| r.1 > at);
        let gap = (
            (after.map_or(end, |r| r.1) - before.1) as f64 / 1000.0,
            after.is_none(),
        );
        if owner.is_some_and(|o| before.2.contains(o)) {
            theirs.push(gap);
        }
        all.push(gap);
    }
    (Gaps::of(all), Gaps::of(theirs))
}
