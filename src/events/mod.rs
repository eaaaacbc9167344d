//! Outbound events to the owning app (issue 18): `link.needs_user_action`,
//! `link.resumed`, `link.deleted`, `link.not_found`, `product.forbidden`,
//! `data.stale`, `data.fresh` (and `budget.exhausted` once budgets exist),
//! signed per Standard Webhooks and sent from a durable outbox.
//!
//! - Where events are born: in the store, inside the transaction of the
//!   change that causes them (`store/sql/outbox.rs` calls [`kind`]'s pure
//!   [`kind::caused_by`] with the link's stored state before the change),
//!   so a crash can neither lose an event nor emit one for a change that
//!   did not commit, and only transitions count: a repeated 422 on a link
//!   already parked makes no event.
//! - `data.stale` / `data.fresh`: a periodic sweep of the delivery task
//!   (every tenth of the shortest `stale_after`, 200 ms to 1 min) finds
//!   products whose last MoneyKit `refreshed_at` (or, never refreshed, the
//!   link's first sight) is older than `[events] stale_after`, and writes
//!   the event and an episode row in one transaction; the episode row makes
//!   it once per episode (also across replicas), and its deletion with a
//!   `data.fresh` ends it once the product is refreshed again.
//! - [`deliver`]: the task that sends them (order per link, at least once,
//!   backoff, 410 Gone, leases across replicas); [`retry`]: its pure
//!   backoff; [`payload`]: the body.

pub mod deliver;
pub(crate) mod kind;
pub(crate) mod payload;
pub(crate) mod retry;
