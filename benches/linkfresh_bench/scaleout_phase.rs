//! One phase of `scaleout`: a fresh simulator and store (a fresh database
//! on PostgreSQL), N daemons on it, and a measured window in which CPU time
//! of every process involved is sampled from /proc.

use sqlx::postgres::PgPoolOptions;

use super::*;

/// What every phase shares.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) c: reqwest::Client,
    pub(crate) links: usize,
    pub(crate) in_flight: u32,
    pub(crate) log: String,
    pub(crate) pg: Option<PgServer>,
    pub(crate) dir: PathBuf,
    /// The hourly window in seconds (`--window`, default 1 s).
    pub(crate) hour: f64,
}

/// A daemon of a phase; `replica` is its claim owner name, learned from the
/// store (PostgreSQL) once it has written an attempt.
pub(crate) struct Replica {
    pub(crate) name: String,
    pub(crate) proc: Proc,
    pub(crate) pid: u32,
    pub(crate) peak_rss_kib: u64,
}

/// A phase's processes and store.
pub(crate) struct Running {
    pub(crate) dir: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) sim: Proc,
    pub(crate) sim_url: String,
    pub(crate) replicas: Vec<Replica>,
    /// Database name and URL (PostgreSQL phases).
    pub(crate) db: Option<(String, String)>,
    /// Further `LINKFRESH__...` overrides for every replica of the phase.
    pub(crate) env: Vec<(&'static str, String)>,
}

/// What a measured window saw.
pub(crate) struct Window {
    pub(crate) t0_ms: i64,
    pub(crate) t1_ms: i64,
    pub(crate) secs: f64,
    /// 202s and all POSTs the simulator answered in the window.
    pub(crate) accepted: u64,
    pub(crate) posts: u64,
    pub(crate) cpu_daemons: f64,
    pub(crate) cpu_db: f64,
    pub(crate) cpu_sim: f64,
    pub(crate) db_backends: usize,
    pub(crate) tls_backends: usize,
    pub(crate) xacts: Option<i64>,
    pub(crate) statements: Option<Vec<StatementRow>>,
}

impl Window {
    pub(crate) fn posts_per_s(&self) -> f64 {
        self.accepted as f64 / self.secs
    }

    /// Machine CPU-seconds (daemons + database backends + simulator) per
    /// 1,000 accepted POSTs.
    pub(crate) fn cpu_per_1000(&self) -> f64 {
        (self.cpu_daemons + self.cpu_db + self.cpu_sim) * 1000.0 / self.accepted.max(1) as f64
    }
}

/// CPU sampling state of a window in progress.
pub(crate) struct Sampler {
    t0_ms: i64,
    t0: Instant,
    s0: Value,
    daemons: CpuWindow,
    db: CpuWindow,
    sim: CpuWindow,
    xacts0: Option<i64>,
    statements: Option<Statements>,
    skip_pid: Option<u32>,
    tls: (usize, usize),
}

impl Running {
    /// A fresh simulator and store for `replicas` daemons, none started yet.
    pub(crate) async fn prepare(ctx: &Ctx, name: &str, pg: bool) -> Result<Self> {
        let dir = ctx.dir.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let sim_addr = free_addr()?;
        let sim_url = format!("http://{sim_addr}");
        let setup = Setup {
            hour: ctx.hour,
            links: ctx.links,
            products: "accounts,transactions",
            prefix: "mk_so",
            max_rps: 1_000_000,
            in_flight: ctx.in_flight,
            margin_ms: 0,
            coalesce_ms: 0,
            first_spread_ms: 1000,
            list_sim_links: false,
        };
        let config = write_config(&dir, &setup, &sim_url, free_addr()?)?;
        let sim = start_sim(&ctx.c, &dir, &config, sim_addr).await?;
        let db = match (pg, &ctx.pg) {
            (false, _) => None,
            (true, None) => bail!("scaleout needs --pg-url"),
            (true, Some(server)) => {
                let name = format!("lfbench_{}_{name}", std::process::id());
                Some((name.clone(), server.fresh_db(&name).await?))
            }
        };
        Ok(Self {
            dir,
            config,
            sim,
            sim_url,
            replicas: Vec::new(),
            db,
            env: Vec::new(),
        })
    }

    /// Starts one more daemon, with its own listen address (and the phase's
    /// database URL) through `LINKFRESH__...` overrides.
    pub(crate) fn start_replica(&mut self, ctx: &Ctx) -> Result<()> {
        let name = format!("replica{}", self.replicas.len() + 1);
        let mut cmd = Command::new(linkfresh_bin()?);
        cmd.args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", &ctx.log)
            .env("LINKFRESH__SERVER__LISTEN", free_addr()?.to_string())
            // As the shipped unit and image run it (README, "Memory").
            .env("MIMALLOC_PURGE_DELAY", "0");
        if let Some((_, url)) = &self.db {
            cmd.env("LINKFRESH__DATABASE__URL", url);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let proc = Proc::spawn(&name, cmd, &self.dir)?;
        let pid = proc.pid();
        self.replicas.push(Replica {
            name,
            proc,
            pid,
            peak_rss_kib: 0,
        });
        Ok(())
    }

    pub(crate) async fn sim_stats(&self, ctx: &Ctx) -> Result<Value> {
        get_json(&ctx.c, &format!("{}/_sim/stats", self.sim_url)).await
    }

    /// Waits until the simulator has seen a first POST (or `limit`
    /// passed); how long that took from `started`. Fails if a daemon died.
    pub(crate) async fn first_post(
        &mut self,
        ctx: &Ctx,
        started: Instant,
        limit: Duration,
    ) -> Result<Option<Duration>> {
        let deadline = started + limit;
        loop {
            for r in &mut self.replicas {
                if !r.proc.alive() {
                    bail!("{} exited:\n{}", r.name, r.proc.tail());
                }
            }
            self.note_rss();
            let s = self.sim_stats(ctx).await?;
            if count(&s, "refresh", None) > 0 {
                return Ok(Some(started.elapsed()));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the simulator has seen `posts` POSTs (every link once
    /// past the first spread) or `limit` passed; fails if a daemon died.
    pub(crate) async fn warm_up(&mut self, ctx: &Ctx, posts: u64, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            for r in &mut self.replicas {
                if !r.proc.alive() {
                    bail!("{} exited:\n{}", r.name, r.proc.tail());
                }
            }
            self.note_rss();
            let s = self.sim_stats(ctx).await?;
            if count(&s, "refresh", None) >= posts || Instant::now() > deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn live_pids(&mut self) -> Vec<u32> {
        self.replicas
            .iter_mut()
            .filter_map(|r| r.proc.alive().then_some(r.pid))
            .collect()
    }

    /// Records each live replica's peak RSS so far.
    pub(crate) fn note_rss(&mut self) {
        for r in &mut self.replicas {
            if r.proc.alive() {
                r.peak_rss_kib = r.peak_rss_kib.max(memory_kib(r.pid).0);
            }
        }
    }

    /// Opens a measured window now.
    pub(crate) async fn sampler(&mut self, ctx: &Ctx) -> Result<Sampler> {
        let mut statements = None;
        let mut skip_pid = None;
        let mut xacts0 = None;
        if let (Some((db, url)), Some(server)) = (&self.db, &ctx.pg) {
            match Statements::enable(url).await {
                Ok(s) => {
                    skip_pid = Some(s.pid().await?);
                    statements = Some(s);
                }
                Err(e) => eprintln!("scaleout: pg_stat_statements unavailable: {e:#}"),
            }
            xacts0 = Some(server.xacts(db).await?);
        }
        let db_pids = self.db_pids(ctx, skip_pid).await?;
        let daemons = CpuWindow::start(&self.live_pids());
        Ok(Sampler {
            t0_ms: now_ms(),
            t0: Instant::now(),
            s0: self.sim_stats(ctx).await?,
            daemons,
            db: CpuWindow::start(&db_pids.iter().map(|b| b.0).collect::<Vec<_>>()),
            sim: CpuWindow::start(&[self.sim.pid()]),
            xacts0,
            statements,
            skip_pid,
            tls: (0, 0),
        })
    }

    async fn db_pids(&self, ctx: &Ctx, skip: Option<u32>) -> Result<Vec<(u32, bool)>> {
        match (&self.db, &ctx.pg) {
            (Some((db, _)), Some(server)) => Ok(server
                .backends(db)
                .await?
                .into_iter()
                .filter(|b| Some(b.0) != skip)
                .collect()),
            _ => Ok(Vec::new()),
        }
    }

    /// Keeps sampling for `secs` seconds (twice a second).
    pub(crate) async fn run_for(&mut self, ctx: &Ctx, w: &mut Sampler, secs: f64) -> Result<()> {
        let end = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(500).min(end - Instant::now())).await;
            self.sample(ctx, w).await?;
        }
        Ok(())
    }

    async fn sample(&mut self, ctx: &Ctx, w: &mut Sampler) -> Result<()> {
        let pids = self.live_pids();
        w.daemons.sample(&pids);
        w.sim.sample(&[self.sim.pid()]);
        let backends = self.db_pids(ctx, w.skip_pid).await?;
        w.db.sample(&backends.iter().map(|b| b.0).collect::<Vec<_>>());
        w.tls = (backends.len(), backends.iter().filter(|b| b.1).count());
        self.note_rss();
        Ok(())
    }

    /// Closes the window.
    pub(crate) async fn finish_window(&mut self, ctx: &Ctx, mut w: Sampler) -> Result<Window> {
        self.sample(ctx, &mut w).await?;
        let s1 = self.sim_stats(ctx).await?;
        let secs = w.t0.elapsed().as_secs_f64();
        let t1_ms = now_ms();
        let xacts = match (&self.db, &ctx.pg, w.xacts0) {
            (Some((db, _)), Some(server), Some(x0)) => Some(server.xacts(db).await? - x0),
            _ => None,
        };
        let statements = match w.statements.take() {
            Some(s) => {
                let rows = s.read().await.ok();
                s.close().await;
                rows
            }
            None => None,
        };
        Ok(Window {
            t0_ms: w.t0_ms,
            t1_ms,
            secs,
            accepted: count(&s1, "refresh", Some("202")) - count(&w.s0, "refresh", Some("202")),
            posts: count(&s1, "refresh", None) - count(&w.s0, "refresh", None),
            cpu_daemons: w.daemons.seconds(),
            cpu_db: w.db.seconds(),
            cpu_sim: w.sim.seconds(),
            db_backends: w.tls.0,
            tls_backends: w.tls.1,
            xacts,
            statements,
        })
    }

    /// Durable accepted POSTs per replica claim owner in `[t0, t1)` ms
    /// (SQLite: one daemon, no owner: `""`).
    pub(crate) async fn durable_by_owner(&self, t0: i64, t1: i64) -> Result<Vec<(String, i64)>> {
        const Q: &str = "SELECT COALESCE(replica, ''), COUNT(*) FROM attempts \
            WHERE intent_at >= $1 AND intent_at < $2 AND outcome = 'accepted' GROUP BY 1";
        Ok(match &self.db {
            Some((_, url)) => {
                let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
                let rows = sqlx::query_as(Q).bind(t0).bind(t1).fetch_all(&pool).await?;
                pool.close().await;
                rows
            }
            None => {
                let pool = open_store(&self.dir.join("linkfresh.db")).await?;
                let rows = sqlx::query_as(Q).bind(t0).bind(t1).fetch_all(&pool).await?;
                pool.close().await;
                rows
            }
        })
    }

    /// The replica of a claim owner name (`host-PID-suffix`).
    pub(crate) fn replica_of(&self, owner: &str) -> Option<&Replica> {
        self.replicas
            .iter()
            .find(|r| owner.contains(&format!("-{}-", r.pid)))
    }

    /// Stops the daemons (SIGTERM: they write what they hold), so that
    /// the store then holds every outcome of the window.
    pub(crate) fn stop_daemons(&mut self) {
        self.note_rss();
        for r in &mut self.replicas {
            r.proc.stop(Duration::from_secs(20));
        }
    }

    /// Stops the daemons and the simulator and drops the phase's database;
    /// the simulator's count of window violations.
    pub(crate) async fn finish(mut self, ctx: &Ctx) -> Result<u64> {
        self.stop_daemons();
        let violations = self.sim_stats(ctx).await?["violations"]
            .as_u64()
            .unwrap_or(0);
        self.sim.stop(Duration::from_secs(5));
        if let (Some((db, _)), Some(server)) = (&self.db, &ctx.pg) {
            server.drop_db(db).await?;
        }
        Ok(violations)
    }
}
