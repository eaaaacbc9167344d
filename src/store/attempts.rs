//! What the daemon writes around each POST: the intent committed before it
//! leaves (with its claim, on shared databases), the outcome written when
//! the answer arrives, the patches that change a link's schedule, and the
//! history row they leave (see "Why a crash never causes a refresh too
//! early" in the [store docs](super)).

use super::{AttemptId, Timestamp};
use crate::domain::{LinkId, LinkState, Product, ProductSet};

/// A POST about to be sent: committed before sending (see module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Intent {
    /// The link the POST is for.
    pub link: LinkId,
    /// The products it carries.
    pub products: ProductSet,
    /// The send time, which becomes the products' `last_requested_at`.
    pub at: Timestamp,
    /// The daemon's guard (see "Several replicas" in [`super::ownership`]);
    /// `None` writes the intent unconditionally, as single-writer tools and
    /// tests do.
    pub claim: Option<Claim>,
}

/// The budget's last line of defence across replicas: a batch commits an
/// intent only while fewer than `limit` intents were committed after
/// `since`, counting the batch's own, by any process. Each replica's budget
/// gate counts the others' POSTs from the store about once a second, so
/// two replicas could otherwise both spend the last of the budget inside
/// that second; the count and the inserts are serialized across processes
/// (an advisory lock on PostgreSQL, the write lock on SQLite), so the sum
/// holds exactly. Intents past the cap come first-come in batch order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostCap {
    /// Intents committed after this count.
    pub since: Timestamp,
    /// At most this many of them.
    pub limit: u32,
}

/// What a replica believed when it decided to send, and the lease it takes:
/// the intent is only written if nobody has requested the link's products
/// since (so two replicas can never both send inside one window) and no other
/// replica holds an unexpired lease on the link.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The replica's in-memory `last_requested_at` of each product it sends.
    /// A product missing here is taken as "never requested" (stored `NULL`).
    pub known: Vec<(Product, Option<Timestamp>)>,
    /// Who claims (unique per process: a restarted replica does not inherit
    /// its predecessor's leases, which simply expire).
    pub owner: String,
    /// The lease lasts until then, unless the outcome releases it first.
    pub lease_until: Timestamp,
    /// The partition and epoch this replica holds the link's partition at
    /// (PostgreSQL with partitioned ownership): the claim is refused unless
    /// it still holds it so, under an unexpired lease.
    pub fence: Option<super::ownership::Fence>,
}

/// MoneyKit's answer to one attempt and the state change it causes, written
/// in one transaction so history and schedule never disagree.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The attempt returned for the intent by `record_batch`.
    pub attempt: AttemptId,
    /// The link the attempt was for.
    pub link: LinkId,
    /// Short outcome label: "accepted", "rate_limited", "server_error:503", ...
    pub label: String,
    /// HTTP status, if an answer arrived.
    pub status: Option<u16>,
    /// Free text for operators (error body, cause chain).
    pub detail: Option<String>,
    /// When the answer arrived.
    pub at: Timestamp,
    /// The state change to apply with it.
    pub patch: LinkPatch,
}

/// A change the daemon made to a link outside a request (what a
/// reconciliation or re-check read), written in the writer's round with the
/// outcomes. Unlike [`Store::apply_patch`](super::Store::apply_patch) it does not bump the change
/// sequence: the daemon already holds the change, and the bump made it read
/// back every one of the 100,000 patches of a fresh fleet's first minute.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnPatch {
    /// The link changed.
    pub link: LinkId,
    /// The change.
    pub patch: LinkPatch,
    /// When it was learned.
    pub at: Timestamp,
}

/// A partial update of a link and its products; `None` leaves a field alone,
/// so the daemon, webhooks and reconciliation can each change only what they know.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkPatch {
    /// New state and reason.
    pub state: Option<(LinkState, Option<String>)>,
    /// New link-wide backoff (`Some(None)` clears it).
    pub backoff_until: Option<Option<Timestamp>>,
    /// New link-wide failure count.
    pub failures: Option<u32>,
    /// 429: put `last_requested_at` back to the values saved with the intent
    /// (only where no later intent has moved it since).
    pub restore_requested: bool,
    /// Per-product changes.
    pub products: Vec<(Product, ProductPatch)>,
}

/// A partial update of one product's schedule.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProductPatch {
    /// Overwrite `last_requested_at`.
    pub last_requested_at: Option<Option<Timestamp>>,
    /// Max-merged: a server time never moves backwards.
    pub server_refreshed_at: Option<Timestamp>,
    /// Max-merged: a server time never moves backwards.
    pub server_attempted_at: Option<Timestamp>,
    /// Overwrite `next_due_at`.
    pub next_due_at: Option<Option<Timestamp>>,
    /// Overwrite the failure count.
    pub failures: Option<u32>,
    /// Overwrite the product backoff.
    pub backoff_until: Option<Option<Timestamp>>,
    /// Park (403) or un-park the product.
    pub parked_reason: Option<Option<String>>,
    /// Set or clear the operator's refresh request.
    pub refresh_requested: Option<bool>,
}

/// One request in a link's history, for `explain`, status pages and audits.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// Attempt id.
    pub id: AttemptId,
    /// The link.
    pub link: LinkId,
    /// Products carried by the POST.
    pub products: ProductSet,
    /// When the intent was committed (the send time).
    pub intent_at: Timestamp,
    /// Each product's `last_requested_at` before this intent, for 429 restores.
    pub prev_requested: Vec<(Product, Option<Timestamp>)>,
    /// Outcome label; `None` while in flight or if the process died.
    pub outcome: Option<String>,
    /// HTTP status, if any.
    pub status: Option<u16>,
    /// Operator detail.
    pub detail: Option<String>,
    /// When the outcome was recorded.
    pub finished_at: Option<Timestamp>,
}
