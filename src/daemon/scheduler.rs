//! The run loop: owns the link table and the timer, asks the policy what to
//! do when a link's time comes, hands work to the dispatcher, and applies
//! answers as they return. One task owns all scheduling state, so there are
//! no locks on the hot path.
//!
//! Replicas sharing a database (see "Several replicas" in [`crate::store::ownership`])
//! each run this loop over the whole table. A POST whose claim the store
//! refused comes back unsent; the loop reloads that link from the store,
//! merges it (now with the other replica's send time) and decides again a
//! moment later. Each second it also merges the links other replicas have
//! claimed or finished since the last poll, so that it rarely contends for a
//! link it could already know is not due.
//!
//! This file holds the loop and the decisions; [`merge`] brings the store's
//! view into the table (pages, polls, reloads) and [`answers`] applies what
//! comes back from the dispatcher.

mod answers;
mod merge;
mod owned;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::merge::{Reloading, next_page, next_reload_page};
pub use self::owned::Owned;
use self::owned::Wake;
use super::Activity;
use super::dispatch::{Done, Job, ReadPurpose};
use super::limiter::Limiter;
use super::outcome::narrow_for_isolation;
use super::table::{LinkTable, ProductSlot};
use super::timer::Timer;
use super::writer::Write;
use crate::clock::Clock;
use crate::domain::LinkState;
use crate::health::Heartbeat;
use crate::policy::{Decision, Rules, evaluate};
use crate::store::health::StoreHealth;
use crate::store::{LinkRecord, Store};

/// Everything the loop owns or talks to.
pub struct Scheduler {
    pub(super) table: LinkTable,
    pub(super) timer: Timer,
    pub(super) rules: Rules,
    /// Where [`Self::rules`] is published after a reload, for the server.
    pub(super) published_rules: watch::Sender<Arc<Rules>>,
    /// Where the gauge pass leaves the data age per profile.
    pub(super) profile_ages: crate::profile_ages::ProfileAges,
    /// Where the `[budget]` in force is published after a reload.
    pub(super) published_budget: watch::Sender<Option<crate::config::BudgetConfig>>,
    pub(super) clock: Clock,
    pub(super) store: Arc<dyn Store>,
    pub(super) jobs: mpsc::Sender<Job>,
    pub(super) done: mpsc::UnboundedReceiver<Done>,
    pub(super) writes: mpsc::UnboundedSender<Write>,
    pub(super) limiter: Limiter,
    pub(super) activity: Option<mpsc::UnboundedSender<Activity>>,
    pub(super) heartbeat: Heartbeat,
    pub(super) reload: mpsc::Receiver<()>,
    pub(super) config_path: std::path::PathBuf,
    pub(super) change_seq: i64,
    pub(super) in_flight: usize,
    pub(super) history_retention: TimeDelta,
    /// Other replicas may share the store: poll their claims.
    pub(super) shared: bool,
    /// High-water mark of [`Store::claims_since`].
    pub(super) claim_seq: i64,
    /// Links whose claim was refused, to reload before deciding again.
    pub(super) refused: Vec<usize>,
    /// Background store work (pruning), waited for at shutdown.
    pub(super) tasks: TaskTracker,
    /// Pages of stored links still arriving from the [`loader`](super::loader).
    pub(super) loading: Option<mpsc::Receiver<Vec<LinkRecord>>>,
    /// This replica's partitions (PostgreSQL): it schedules only their
    /// links (see [`owned`]). `None`: every link (SQLite).
    pub(super) owned: Option<Owned>,
    /// A reload whose links are still arriving.
    pub(super) reloading: Option<Reloading>,
    /// Told when a page of links cannot be read (`/readyz`).
    pub(super) store_health: StoreHealth,
    /// Links due now wait here for `[budget]` (None: no budget).
    pub(super) budget: Option<super::budget::BudgetGate>,
    /// This process's claim owner name (its intents' `replica`).
    pub(super) replica: String,
}

/// Replicas sharing a store wake for a link up to this much after it is due,
/// at random, afresh each time. They all compute the same due time from the
/// same state, so without it the same replica (the one whose loop happens to
/// run first) won most links (measured: 65 of 90 POSTs with three replicas);
/// with it each due link goes to whichever drew the smallest delay, a fair
/// share, and the others' claims arrive after the winner's commit and are
/// refused without contending for row locks. Small against any real window.
const CLAIM_JITTER_MS: i64 = 250;

/// What woke the loop.
enum Event {
    Cancel,
    Done(Box<Done>),
    Fire,
    Room,
    Control,
    Reload,
    Housekeeping,
    Loaded(Option<Vec<LinkRecord>>),
    Owned(Wake),
    Reloaded(Option<Vec<LinkRecord>>),
    Budget,
}

/// How the loop ended.
pub enum Ended {
    /// Shutdown was asked for.
    Shutdown,
    /// A fatal error (bad credentials): the daemon must stop.
    Fatal(String),
}

impl Scheduler {
    /// Runs until `cancel` fires or a fatal answer arrives, then waits (at
    /// most `drain`) for requests in flight so their outcomes are recorded.
    pub async fn run(mut self, cancel: CancellationToken, drain: Duration) -> Ended {
        let mut control = tokio::time::interval(Duration::from_secs(1));
        control.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Housekeeping also pings the systemd watchdog, so it runs at least
        // as often as the watchdog asks (half of WATCHDOG_USEC).
        let every = crate::notify::watchdog_interval()
            .map_or(Duration::from_secs(2), |w| w.min(Duration::from_secs(2)));
        let mut housekeeping = tokio::time::interval(every);
        housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_prune = Instant::now() - Duration::from_secs(3600);
        let mut ended = Ended::Shutdown;
        loop {
            let next = self.timer.next_at(&self.table);
            let wake = next.map(|at| self.clock.instant_at(at));
            let room = self.jobs.capacity() > 0;
            let budget_wake = self.budget_wake().map(|at| self.clock.instant_at(at));
            let event = {
                let jobs = self.jobs.clone();
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => Event::Cancel,
                    Some(done) = self.done.recv() => Event::Done(Box::new(done)),
                    // Before firing: a fleet that is always due must not
                    // starve the rest of its links still loading.
                    page = next_page(&mut self.loading), if self.loading.is_some() => Event::Loaded(page),
                    wake = owned::next(&mut self.owned) => Event::Owned(wake),
                    page = next_reload_page(&mut self.reloading), if self.reloading.is_some() => Event::Reloaded(page),
                    () = tokio::time::sleep_until(wake.unwrap_or_else(far_future)), if wake.is_some() && room => Event::Fire,
                    Ok(permit) = jobs.reserve(), if !room => { drop(permit); Event::Room }
                    () = tokio::time::sleep_until(budget_wake.unwrap_or_else(far_future)), if budget_wake.is_some() && room => Event::Budget,
                    _ = control.tick() => Event::Control,
                    // The admin API wrote a change to act on now (issue 17).
                    () = self.heartbeat.changed.notified() => Event::Control,
                    Some(()) = self.reload.recv() => Event::Reload,
                    _ = housekeeping.tick() => Event::Housekeeping,
                }
            };
            match event {
                Event::Cancel => break,
                Event::Done(done) => {
                    self.on_done(*done);
                    if !self.refused.is_empty() {
                        self.reload_refused().await;
                    }
                }
                Event::Fire => self.fire(),
                Event::Room | Event::Budget => {}
                Event::Control => self.poll_changes().await,
                Event::Reload => self.reload().await,
                Event::Loaded(Some(page)) => self.load(&page),
                Event::Loaded(None) => self.loading = None,
                Event::Owned(Wake::Holdings) => self.on_holdings(),
                Event::Owned(Wake::Gained(page)) => self.gained(&page),
                Event::Reloaded(Some(page)) => self.reload_page(&page),
                Event::Reloaded(None) => self.reload_done(),
                Event::Housekeeping => {
                    self.housekeeping();
                    if last_prune.elapsed() >= Duration::from_secs(3600) {
                        last_prune = Instant::now();
                        self.prune();
                    }
                }
            }
            self.settle_budget();
            if let Some(msg) = self.fatal_message() {
                ended = Ended::Fatal(msg);
                break;
            }
        }
        // Drain: no new work, but answers to requests already sent are
        // recorded so the store knows what MoneyKit saw.
        let deadline = Instant::now() + drain;
        while self.in_flight > 0 {
            tokio::select! {
                Some(done) = self.done.recv() => self.on_done(done),
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(in_flight = self.in_flight, "abandoning requests in flight at shutdown; their intents count them as sent");
                    break;
                }
            }
        }
        ended
    }

    fn fatal_message(&mut self) -> Option<String> {
        self.heartbeat.fatal.lock().ok().and_then(|f| f.clone())
    }

    /// Pops every link whose time has come and decides for it.
    fn fire(&mut self) {
        let now = self.clock.now();
        while self.jobs.capacity() > 0 {
            let Some(i) = self.timer.pop_due(&self.table, now) else {
                break;
            };
            self.consider(i, now);
        }
    }

    /// Decides for link `i` at `now`: queue a job, or set its next wake-up.
    fn consider(&mut self, i: usize, now: DateTime<Utc>) {
        let e = self.table.get(i);
        if e.in_flight || e.removed {
            return;
        }
        if e.state == LinkState::NeedsUserAction {
            match e.recheck_at {
                Some(at) if at <= now => self.queue(
                    i,
                    Job::Read {
                        idx: i,
                        link: e.id.clone(),
                        purpose: ReadPurpose::Recheck,
                    },
                ),
                Some(at) => self.timer.schedule(&mut self.table, i, at),
                None => {
                    let at = now + self.rules.backoff_max;
                    self.table.get_mut(i).recheck_at = Some(at);
                    self.timer.schedule(&mut self.table, i, at);
                }
            }
            return;
        }
        let evaluation = evaluate(&e.schedule(), &self.rules, now);
        if !matches!(evaluation.decision, Decision::Send { .. }) {
            let dues = evaluation
                .products
                .iter()
                .map(|p| (e.id.clone(), p.product, p.due_at))
                .collect();
            let _ = self.writes.send(Write::Due(dues));
        }
        match evaluation.decision {
            Decision::Send { .. } if e.needs_reconcile => self.queue(
                i,
                Job::Read {
                    idx: i,
                    link: e.id.clone(),
                    purpose: ReadPurpose::Reconcile,
                },
            ),
            Decision::Send { products, .. } if self.budget.is_some() => {
                self.offer_to_budget(i, products, now);
            }
            Decision::Send { products, due_at } => {
                let products = narrow_for_isolation(e, products);
                let known = products
                    .iter()
                    .map(|p| (p, e.product(p).and_then(ProductSlot::last_requested_at)))
                    .collect();
                self.queue(
                    i,
                    Job::Refresh {
                        idx: i,
                        link: e.id.clone(),
                        products,
                        due_at,
                        known,
                    },
                )
            }
            Decision::Wait { until } => {
                self.withdraw_from_budget(i);
                // Only replicas racing for the same links need the jitter;
                // with partitions each link has one.
                let until = if self.shared && self.owned.is_none() {
                    until + TimeDelta::milliseconds(rand::random_range(0..CLAIM_JITTER_MS))
                } else {
                    until
                };
                self.wake_at(i, until);
            }
            Decision::Idle => {
                self.withdraw_from_budget(i);
                self.timer.cancel(&mut self.table, i)
            }
        }
    }

    pub(super) fn queue(&mut self, i: usize, job: Job) {
        match self.jobs.try_send(job) {
            Ok(()) => {
                self.table.get_mut(i).in_flight = true;
                self.in_flight += 1;
            }
            // Full: try again shortly (the loop waits for room first).
            Err(_) => self.wake_at(i, self.clock.now()),
        }
    }

    /// Schedules link `i` at `at`; ahead of the scheduled work when one of
    /// its products was asked for on demand (see [`super::timer`]).
    fn wake_at(&mut self, i: usize, at: DateTime<Utc>) {
        if self.table.get(i).on_demand() {
            self.timer.schedule_urgent(&mut self.table, i, at);
        } else {
            self.timer.schedule(&mut self.table, i, at);
        }
    }

    fn housekeeping(&mut self) {
        self.heartbeat.beat();
        crate::notify::watchdog_ping();
        self.limiter.tick();
        super::gauges::publish(
            &self.table,
            &self.rules,
            self.clock.now(),
            &self.profile_ages,
        );
        self.publish_budget();
    }

    fn prune(&self) {
        let store = self.store.clone();
        let before = self.clock.now() - self.history_retention;
        self.tasks.spawn(async move {
            match store.prune_attempts(before).await {
                Ok(n) if n > 0 => tracing::info!(removed = n, "pruned old attempt history"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not prune attempt history"),
            }
        });
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}
