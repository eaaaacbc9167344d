//! One product of a link as the daemon's table keeps it (see
//! [`super::table`]): compact times, no cadence.

use chrono::{DateTime, Utc};

use crate::domain::Product;

/// One product of a link as the table stores it: the policy's
/// [`ProductState`] without the cadence, which the link shares, and with its
/// times to the millisecond (the store's precision; 8 bytes each instead of
/// an `Option<DateTime>`'s 12). A time read back from the store after a
/// restart is the same truncated value, so claims compare equal.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductSlot {
    /// Which product.
    pub product: Product,
    /// Forbidden (403) for this link: never requested.
    pub parked: bool,
    /// An operator asked for it as soon as the window allows.
    pub refresh_requested: bool,
    /// The change sequence (low 32 bits) of the stored record that asked
    /// for the refresh: an echo of the same record (a claim poll, the change
    /// poll's overlap) read before the daemon's outcome was committed must
    /// not ask again for what was already sent. In the padding: no cost.
    pub(super) refresh_seq: u32,
    last_requested_ms: i64,
    server_seen_ms: i64,
    backoff_until_ms: i64,
}

/// The stored form of "no time".
const NO_TIME: i64 = i64::MIN;

fn to_ms(t: Option<DateTime<Utc>>) -> i64 {
    t.map_or(NO_TIME, |t| t.timestamp_millis())
}

fn from_ms(ms: i64) -> Option<DateTime<Utc>> {
    (ms != NO_TIME)
        .then(|| DateTime::from_timestamp_millis(ms))
        .flatten()
}

impl ProductSlot {
    /// A product with no history.
    pub fn new(product: Product) -> Self {
        Self {
            product,
            parked: false,
            refresh_requested: false,
            refresh_seq: 0,
            last_requested_ms: NO_TIME,
            server_seen_ms: NO_TIME,
            backoff_until_ms: NO_TIME,
        }
    }

    /// Send time of our last request that may have reached MoneyKit.
    pub fn last_requested_at(&self) -> Option<DateTime<Utc>> {
        from_ms(self.last_requested_ms)
    }

    /// Sets [`last_requested_at`](Self::last_requested_at).
    pub fn set_last_requested_at(&mut self, t: Option<DateTime<Utc>>) {
        self.last_requested_ms = to_ms(t);
    }

    /// The later of `refreshed_at`/`last_attempted_at` the server reported.
    pub fn server_seen_at(&self) -> Option<DateTime<Utc>> {
        from_ms(self.server_seen_ms)
    }

    /// Moves [`server_seen_at`](Self::server_seen_at) forward to `t`, never back.
    pub fn saw_server_time(&mut self, t: Option<DateTime<Utc>>) {
        self.server_seen_ms = self.server_seen_ms.max(to_ms(t));
    }

    /// No request before this (a per-product `rate_limit` answer).
    pub fn backoff_until(&self) -> Option<DateTime<Utc>> {
        from_ms(self.backoff_until_ms)
    }

    /// Sets [`backoff_until`](Self::backoff_until).
    pub fn set_backoff_until(&mut self, t: Option<DateTime<Utc>>) {
        self.backoff_until_ms = to_ms(t);
    }

    /// [`Self::last`] in Unix milliseconds, without building a date: the
    /// gauges read it for every product of every link every two seconds.
    pub fn last_ms(&self) -> Option<i64> {
        let ms = self.last_requested_ms.max(self.server_seen_ms);
        (ms != NO_TIME).then_some(ms)
    }

    /// The last time the product is known to have been requested.
    pub fn last(&self) -> Option<DateTime<Utc>> {
        from_ms(self.last_requested_ms.max(self.server_seen_ms))
    }

    /// Takes the later of each time from `other` (the same product, as
    /// memory held it while the store's copy was read).
    pub(super) fn keep_later(&mut self, other: &ProductSlot) {
        self.last_requested_ms = self.last_requested_ms.max(other.last_requested_ms);
        self.server_seen_ms = self.server_seen_ms.max(other.server_seen_ms);
        self.backoff_until_ms = self.backoff_until_ms.max(other.backoff_until_ms);
    }
}
