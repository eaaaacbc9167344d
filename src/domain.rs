//! Domain newtypes shared by every layer: link ids, products, product sets and
//! link states. Each has a `parse` that returns a typed error, so an invalid
//! value is stopped at the edge (config, CLI, HTTP) and never travels further.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A MoneyKit link id such as `mk_eqkWN34UEoa2NxyALG8pcV`.
///
/// It is used verbatim as one URL path segment, so it must be exactly one:
/// not empty, not `.` or `..` (or only dots: the URL parser would turn
/// `/links/..` into `/links` itself), and without whitespace, control
/// characters, `/`, `\` (a separator in http URLs), `?`, `#` or `%` (which
/// would let an id smuggle an encoded separator). Everything else MoneyKit
/// may hand out is kept. The `mk_` prefix is not required: ids come from
/// MoneyKit, and refusing one it hands out (or one the simulator makes)
/// would stop a link for no safety gain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct LinkId(String);

/// What a link id may be, for every error message.
const LINK_ID_ALLOWED: &str = "allowed: one URL path segment such as MoneyKit's mk_ followed by letters and digits (mk_eqkWN34UEoa2NxyALG8pcV); not '.' or '..', no whitespace, '/', '\\', '?', '#' or '%'";

/// Why a string is not a valid [`LinkId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkIdError {
    /// The id was empty or only whitespace.
    #[error("link id is empty; {LINK_ID_ALLOWED}")]
    Empty,
    /// The id held a character that cannot stand in a URL path segment.
    #[error("link id {id:?} contains {found:?}; {LINK_ID_ALLOWED}")]
    BadChar {
        /// The rejected id.
        id: String,
        /// The first offending character.
        found: char,
    },
    /// The id was only dots: a relative path step, not a segment.
    #[error("link id {id:?} is a relative path step, not an id; {LINK_ID_ALLOWED}")]
    Dots {
        /// The rejected id.
        id: String,
    },
    /// The id was longer than any real link id.
    #[error("link id is {len} characters long; at most 256 are allowed")]
    TooLong {
        /// Its length in characters.
        len: usize,
    },
}

impl LinkId {
    /// No link: the id of a freed slot in the daemon's link table, never
    /// stored, sent or shown. Allocates nothing.
    pub(crate) const fn vacant() -> Self {
        Self(String::new())
    }

    /// Whether this is [`Self::vacant`] (a parsed id is never empty).
    pub(crate) fn is_vacant(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks and wraps a link id.
    pub fn parse(raw: &str) -> Result<Self, LinkIdError> {
        if raw.trim().is_empty() {
            return Err(LinkIdError::Empty);
        }
        if let Some(found) = raw.chars().find(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '/' | '\\' | '?' | '#' | '%')
        }) {
            return Err(LinkIdError::BadChar {
                id: raw.to_owned(),
                found,
            });
        }
        if raw.chars().all(|c| c == '.') {
            return Err(LinkIdError::Dots { id: raw.to_owned() });
        }
        let len = raw.chars().count();
        if len > 256 {
            return Err(LinkIdError::TooLong { len });
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for LinkId {
    type Err = LinkIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for LinkId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A MoneyKit product that can be refreshed with `POST /links/{id}/products`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Product {
    /// Balances and account list; MoneyKit allows one refresh an hour.
    Accounts,
    /// Transactions; one refresh an hour.
    Transactions,
    /// Account and routing numbers; one refresh a day.
    AccountNumbers,
    /// Owner identity; one refresh a day.
    Identity,
    /// Holdings; limit undocumented, treated as daily.
    Investments,
    /// Transaction enrichment; limit undocumented, treated as daily.
    Enrichment,
}

/// A product name that is not one of MoneyKit's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown product {0:?}; allowed: accounts, transactions, account_numbers, identity, investments, enrichment"
)]
pub struct UnknownProduct(pub String);

impl Product {
    /// Every product, in wire order.
    pub const ALL: [Product; 6] = [
        Product::Accounts,
        Product::Transactions,
        Product::AccountNumbers,
        Product::Identity,
        Product::Investments,
        Product::Enrichment,
    ];

    /// The wire name (`account_numbers`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Product::Accounts => "accounts",
            Product::Transactions => "transactions",
            Product::AccountNumbers => "account_numbers",
            Product::Identity => "identity",
            Product::Investments => "investments",
            Product::Enrichment => "enrichment",
        }
    }

    /// Parses a wire name; surrounding whitespace is ignored.
    pub fn parse(raw: &str) -> Result<Self, UnknownProduct> {
        let name = raw.trim();
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| UnknownProduct(name.to_owned()))
    }

    /// Position in [`Product::ALL`]; used as a bit index by [`ProductSet`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Product {
    type Err = UnknownProduct;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A small set of products, stored as a bitmask so that a fleet of a million
/// links costs one byte per link, and iterated in wire order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ProductSet(u8);

impl ProductSet {
    /// The empty set.
    pub const EMPTY: ProductSet = ProductSet(0);

    /// A set holding one product.
    pub const fn of(p: Product) -> Self {
        ProductSet(1 << p.index())
    }

    /// Adds a product.
    pub fn insert(&mut self, p: Product) {
        self.0 |= 1 << p.index();
    }

    /// Removes a product.
    pub fn remove(&mut self, p: Product) {
        self.0 &= !(1 << p.index());
    }

    /// Whether the product is in the set.
    pub const fn contains(self, p: Product) -> bool {
        self.0 & (1 << p.index()) != 0
    }

    /// Whether no product is in the set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many products the set holds.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The products in wire order.
    pub fn iter(self) -> impl Iterator<Item = Product> {
        Product::ALL.into_iter().filter(move |p| self.contains(*p))
    }

    /// The union of two sets.
    pub const fn union(self, other: ProductSet) -> ProductSet {
        ProductSet(self.0 | other.0)
    }

    /// Parses a comma separated list (`accounts,transactions`).
    pub fn parse_list(raw: &str) -> Result<Self, UnknownProduct> {
        raw.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Product::parse)
            .collect()
    }

    /// The comma separated form used in the store and in links files.
    pub fn to_list(self) -> String {
        self.iter()
            .map(Product::as_str)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl FromIterator<Product> for ProductSet {
    fn from_iter<I: IntoIterator<Item = Product>>(iter: I) -> Self {
        let mut set = ProductSet::EMPTY;
        for p in iter {
            set.insert(p);
        }
        set
    }
}

impl fmt::Debug for ProductSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for ProductSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_list())
    }
}

impl Serialize for ProductSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for ProductSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Product>::deserialize(d)?.into_iter().collect())
    }
}

/// The lifecycle state of a link in linkfresh.
///
/// Only `Active` links are refreshed. The parked states come from MoneyKit's
/// answers and last until the configuration changes or an operator resumes
/// the link; `Paused` comes from an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Refreshed on schedule.
    Active,
    /// Held by an operator (`linkfresh pause`).
    Paused,
    /// MoneyKit answered 404: no such link.
    NotFound,
    /// MoneyKit answered 410: the link was deleted.
    Deleted,
    /// MoneyKit answered 422: the user must reconnect the link.
    NeedsUserAction,
}

/// A link state name that linkfresh does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown link state {0:?}; allowed: active, paused, not_found, deleted, needs_user_action")]
pub struct UnknownLinkState(pub String);

impl LinkState {
    /// Every state, for metrics that publish a zero for each.
    pub const ALL: [LinkState; 5] = [
        LinkState::Active,
        LinkState::Paused,
        LinkState::NotFound,
        LinkState::Deleted,
        LinkState::NeedsUserAction,
    ];

    /// The name used in the store, in JSON and as a metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            LinkState::Active => "active",
            LinkState::Paused => "paused",
            LinkState::NotFound => "not_found",
            LinkState::Deleted => "deleted",
            LinkState::NeedsUserAction => "needs_user_action",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Result<Self, UnknownLinkState> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| UnknownLinkState(raw.to_owned()))
    }

    /// Whether MoneyKit's answer (not an operator) stopped the link.
    pub const fn is_parked(self) -> bool {
        matches!(
            self,
            LinkState::NotFound | LinkState::Deleted | LinkState::NeedsUserAction
        )
    }
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_ids_reject_what_cannot_stand_in_a_url_path() {
        assert_eq!(LinkId::parse(""), Err(LinkIdError::Empty));
        assert_eq!(LinkId::parse("  "), Err(LinkIdError::Empty));
        assert!(matches!(
            LinkId::parse("mk_a/b"),
            Err(LinkIdError::BadChar { found: '/', .. })
        ));
        assert!(matches!(
            LinkId::parse("mk a"),
            Err(LinkIdError::BadChar { found: ' ', .. })
        ));
        assert_eq!(
            LinkId::parse("mk_eqkWN34UEoa2NxyALG8pcV").unwrap().as_str(),
            "mk_eqkWN34UEoa2NxyALG8pcV"
        );
    }

    #[test]
    fn products_round_trip_through_their_wire_names() {
        for p in Product::ALL {
            assert_eq!(Product::parse(p.as_str()), Ok(p));
        }
        let err = Product::parse("balances").unwrap_err();
        assert!(err.to_string().contains("allowed: accounts"));
    }

    #[test]
    fn product_sets_keep_wire_order_and_round_trip() {
        let set = ProductSet::parse_list("identity, accounts,transactions").unwrap();
        assert_eq!(set.to_list(), "accounts,transactions,identity");
        assert_eq!(ProductSet::parse_list(&set.to_list()), Ok(set));
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn link_states_round_trip() {
        for s in LinkState::ALL {
            assert_eq!(LinkState::parse(s.as_str()), Ok(s));
        }
    }
}
