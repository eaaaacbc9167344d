//! How the run loop goes through the [`BudgetGate`]: a link the policy
//! wants to send now is offered to the gate instead of being queued; after
//! every event the loop runs a round, and queues what the gate admits,
//! deciding for each again at that moment (its products may have grown
//! while it waited).
//!
//! A link's priority is its profile's; "on demand" is a refresh asked for
//! one of the products about to be sent (`linkfresh refresh`, the admin
//! API's refresh, the app's refresh with `max_age`).

use chrono::{DateTime, Utc};

use super::budget::BudgetGate;
use super::dispatch::Job;
use super::outcome::narrow_for_isolation;
use super::scheduler::Scheduler;
use super::table::{Entry, ProductSlot};
use super::writer::Write;
use crate::config::BudgetConfig;
use crate::domain::ProductSet;
use crate::policy::budget::Candidate;
use crate::policy::{Decision, evaluate};

/// What the allocator sees of a link about to send `products`.
pub(crate) fn candidate_of(e: &Entry, products: ProductSet) -> Candidate {
    let slots = || e.products.iter().filter(|s| products.contains(s.product));
    Candidate {
        on_demand: e.on_demand_of(products),
        priority: e.profile().priority,
        stale_since: slots()
            .map(ProductSlot::last)
            .try_fold(None::<DateTime<Utc>>, |oldest, t| {
                t.map(|t| Some(oldest.map_or(t, |o| o.min(t))))
            })
            .flatten(),
    }
}

impl Scheduler {
    /// Link `i` is due at `now` with `products`: with a budget it waits for
    /// the next round; true when the gate took it.
    pub(super) fn offer_to_budget(
        &mut self,
        i: usize,
        products: ProductSet,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(gate) = self.budget.as_mut() else {
            return false;
        };
        let candidate = candidate_of(self.table.get(i), products);
        gate.offer(i, candidate, now);
        self.timer.cancel(&mut self.table, i);
        true
    }

    /// Link `i` is not due now: it stops waiting for budget.
    pub(super) fn withdraw_from_budget(&mut self, i: usize) {
        if let Some(gate) = self.budget.as_mut() {
            gate.withdraw(i);
        }
    }

    /// Runs a budget round and queues what it admits.
    pub(super) fn settle_budget(&mut self) {
        let Some(gate) = self.budget.as_mut() else {
            return;
        };
        let now = self.clock.now();
        let table = &self.table;
        let live = |i: usize| {
            let e = table.get(i);
            !e.in_flight && !e.removed
        };
        let admitted = gate.admit(now, self.jobs.capacity(), live);
        if let Some(episode) = gate.take_exhaustion() {
            let _ = self.writes.send(Write::BudgetExhausted(episode));
        }
        for i in admitted {
            self.send_admitted(i, now);
        }
    }

    /// When the gate can next admit a waiting link.
    pub(super) fn budget_wake(&self) -> Option<DateTime<Utc>> {
        self.budget.as_ref().and_then(BudgetGate::wake_at)
    }

    /// Decides for an admitted link again and queues its POST; a link no
    /// longer due goes back to the timer.
    fn send_admitted(&mut self, i: usize, now: DateTime<Utc>) {
        let e = self.table.get(i);
        if e.in_flight || e.removed {
            return;
        }
        match evaluate(&e.schedule(), &self.rules, now).decision {
            Decision::Send { products, due_at } => {
                let products = narrow_for_isolation(e, products);
                let known = products
                    .iter()
                    .map(|p| (p, e.product(p).and_then(ProductSlot::last_requested_at)))
                    .collect();
                let job = Job::Refresh {
                    idx: i,
                    link: e.id.clone(),
                    products,
                    due_at,
                    known,
                };
                self.queue(i, job);
            }
            Decision::Wait { until } => self.timer.schedule(&mut self.table, i, until),
            Decision::Idle => self.timer.cancel(&mut self.table, i),
        }
    }

    /// Publishes `linkfresh_budget_remaining`.
    pub(super) fn publish_budget(&self) {
        if let Some(gate) = &self.budget {
            let s = gate.standing(self.clock.now());
            metrics::gauge!(crate::metrics::BUDGET_REMAINING).set(s.remaining as f64);
        }
    }

    /// Applies a reloaded `[budget]`: new limits keep the spent history; a
    /// budget set for the first time reads it from the store; a budget
    /// removed lets every waiting link go (each is decided again now).
    pub(super) async fn reload_budget(&mut self, config: Option<BudgetConfig>) {
        match (self.budget.as_mut(), config) {
            (Some(gate), Some(config)) => gate.set_config(config),
            (None, Some(config)) => {
                self.budget = Some(BudgetGate::new(config, Vec::new()));
                self.refresh_budget().await;
            }
            (Some(gate), None) => {
                let waiting = gate.waiting();
                self.budget = None;
                let now = self.clock.now();
                for i in waiting {
                    self.timer.schedule(&mut self.table, i, now);
                }
            }
            (None, None) => {}
        }
    }

    /// Replicas: takes the other replicas' count from the store (about each
    /// second); this one's own POSTs are counted in memory.
    pub(super) async fn refresh_budget(&mut self) {
        let Some(gate) = self.budget.as_ref() else {
            return;
        };
        let budget = *gate.budget();
        let read_at = self.clock.now();
        match self
            .store
            .posts_since(
                read_at - budget.span(),
                budget.bucket(),
                Some(&self.replica),
            )
            .await
        {
            Ok(usage) => {
                if let Some(gate) = self.budget.as_mut() {
                    gate.refresh(usage, read_at);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the budget's count from the store")
            }
        }
    }
}
