//! Forward simulation of the policy: the POSTs the daemon would send over a
//! horizon if every request were accepted. `linkfresh plan` prints it, and it
//! is how the batching rules are checked at the scale of days.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, TimeDelta, Utc};

use super::{Decision, LinkSchedule, Rules, decide};
use crate::domain::ProductSet;

/// One POST the daemon would send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedPost {
    /// Send time.
    pub at: DateTime<Utc>,
    /// Index of the link in the slice given to [`simulate`].
    pub link: usize,
    /// Products in the POST.
    pub products: ProductSet,
    /// Earliest due time among them.
    pub due_at: DateTime<Utc>,
}

/// Runs the policy from `from` to `from + horizon`, applying each POST to the
/// links as if it had been accepted; returns the POSTs in time order.
///
/// The global request rate is not modelled: the plan is what the policy
/// wants, and `max_requests_per_second` can only delay it.
pub fn simulate(
    links: &mut [LinkSchedule],
    rules: &Rules,
    from: DateTime<Utc>,
    horizon: TimeDelta,
) -> Vec<PlannedPost> {
    let end = super::saturating::add(from, horizon);
    let mut queue: BinaryHeap<Reverse<(DateTime<Utc>, usize)>> =
        (0..links.len()).map(|i| Reverse((from, i))).collect();
    let mut posts = Vec::new();
    while let Some(Reverse((now, i))) = queue.pop() {
        if now > end {
            break;
        }
        match decide(&links[i], rules, now) {
            Decision::Send { products, due_at } => {
                posts.push(PlannedPost {
                    at: now,
                    link: i,
                    products,
                    due_at,
                });
                for p in links[i].products.iter_mut() {
                    if products.contains(p.product) {
                        p.last_requested_at = Some(now);
                        p.refresh_requested = false;
                    }
                }
                // At chrono's last instant no window can end later, so the
                // link would be sent again at once, for ever.
                if now < DateTime::<Utc>::MAX_UTC {
                    queue.push(Reverse((now, i)));
                }
            }
            // A wake-up that does not move forward would loop for ever; the
            // policy never answers that, but a plan must terminate regardless
            // (at chrono's last instant, nothing can move forward).
            Decision::Wait { until } => {
                let next = until.max(super::saturating::add(now, TimeDelta::milliseconds(1)));
                if next > now {
                    queue.push(Reverse((next, i)));
                }
            }
            Decision::Idle => {}
        }
    }
    posts
}
