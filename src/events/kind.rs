//! Which events a change causes: a pure function from the link's stored
//! state before a change and the change itself to the events to record.
//! Only transitions make events (a repeated 422 on a link already parked
//! as needs_user_action makes none), so the outbox holds one event per
//! episode, not one per request.

use crate::domain::{LinkState, Product};
use crate::store::LinkPatch;

/// The event types of DESIGN.md (stable names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// MoneyKit answered 422: the user must reconnect the link.
    NeedsUserAction,
    /// A parked link is active again (reconnected, or un-parked by an operator).
    Resumed,
    /// MoneyKit answered 410 (or a webhook said so): the link was deleted.
    Deleted,
    /// MoneyKit answered 404: it has no such link.
    NotFound,
    /// MoneyKit answered 403 for a product: the permission was not granted.
    Forbidden,
    /// A product's last refresh became older than `[events] stale_after`.
    Stale,
    /// A stale product was refreshed again.
    Fresh,
    /// The POST budget ran out: once per exhaustion episode, fleet-wide
    /// (see [`Outbox::record_budget_exhausted`](crate::store::Outbox::record_budget_exhausted)).
    BudgetExhausted,
}

impl EventType {
    /// Every type, for metrics exported at 0.
    pub const ALL: [EventType; 8] = [
        EventType::NeedsUserAction,
        EventType::Resumed,
        EventType::Deleted,
        EventType::NotFound,
        EventType::Forbidden,
        EventType::Stale,
        EventType::Fresh,
        EventType::BudgetExhausted,
    ];

    /// The wire name (the payload's `type`, the metric label).
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::NeedsUserAction => "link.needs_user_action",
            EventType::Resumed => "link.resumed",
            EventType::Deleted => "link.deleted",
            EventType::NotFound => "link.not_found",
            EventType::Forbidden => "product.forbidden",
            EventType::Stale => "data.stale",
            EventType::Fresh => "data.fresh",
            EventType::BudgetExhausted => "budget.exhausted",
        }
    }
}

/// One event a change causes, before it has an id and a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caused {
    /// What happened.
    pub kind: EventType,
    /// The product concerned (`product.forbidden`, `data.*`).
    pub product: Option<Product>,
    /// Why, in linkfresh's words (the stored park reason).
    pub reason: Option<String>,
    /// MoneyKit's `link_error_code` of a 422, when it gave one.
    pub link_error_code: Option<String>,
}

/// The events `patch` causes on a link whose stored state is `before` and
/// whose already-parked products are `parked`.
pub fn caused_by(before: LinkState, parked: &[Product], patch: &LinkPatch) -> Vec<Caused> {
    let mut out = Vec::new();
    if let Some((after, reason)) = &patch.state
        && *after != before
    {
        let kind = match after {
            LinkState::NeedsUserAction => Some(EventType::NeedsUserAction),
            LinkState::Deleted => Some(EventType::Deleted),
            LinkState::NotFound => Some(EventType::NotFound),
            LinkState::Active if before.is_parked() => Some(EventType::Resumed),
            LinkState::Active | LinkState::Paused => None,
        };
        if let Some(kind) = kind {
            out.push(Caused {
                kind,
                product: None,
                reason: reason.clone(),
                link_error_code: reason.as_deref().and_then(link_error_code),
            });
        }
    }
    for (product, p) in &patch.products {
        if let Some(Some(reason)) = &p.parked_reason
            && !parked.contains(product)
            && !out.iter().any(|c| c.product == Some(*product))
        {
            out.push(Caused {
                kind: EventType::Forbidden,
                product: Some(*product),
                reason: Some(reason.clone()),
                link_error_code: None,
            });
        }
    }
    out
}

/// MoneyKit's `link_error_code` from a stored needs_user_action reason
/// (`needs_user_action: CODE`, as the daemon writes it).
fn link_error_code(reason: &str) -> Option<String> {
    reason
        .strip_prefix("needs_user_action: ")
        .filter(|code| !code.is_empty() && *code != "unknown")
        .map(str::to_owned)
}

/// Whether a patch can cause an event at all: the store reads the link's
/// previous state only for these (a park or a resume is rare; most
/// outcomes are accepted refreshes).
pub fn may_cause(patch: &LinkPatch) -> bool {
    patch.state.is_some()
        || patch
            .products
            .iter()
            .any(|(_, p)| matches!(p.parked_reason, Some(Some(_))))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::ProductPatch;

    fn state() -> impl Strategy<Value = LinkState> {
        prop::sample::select(LinkState::ALL.to_vec())
    }

    fn product() -> impl Strategy<Value = Product> {
        prop::sample::select(Product::ALL.to_vec())
    }

    fn patch() -> impl Strategy<Value = LinkPatch> {
        (
            prop::option::of(state()),
            prop::collection::vec((product(), any::<bool>()), 0..4),
        )
            .prop_map(|(s, products)| LinkPatch {
                state: s.map(|s| (s, Some(format!("{}: code_x", s.as_str())))),
                products: products
                    .into_iter()
                    .map(|(p, park)| {
                        (
                            p,
                            ProductPatch {
                                parked_reason: park.then(|| Some("forbidden: no".to_owned())),
                                ..ProductPatch::default()
                            },
                        )
                    })
                    .collect(),
                ..LinkPatch::default()
            })
    }

    proptest! {
        /// Applying the same change twice never makes an event the second
        /// time: a repeated 422 (or 403, 404, 410) is not a new episode.
        #[test]
        fn a_repeated_change_causes_nothing(before in state(), parked in prop::collection::vec(product(), 0..3), patch in patch()) {
            let first = caused_by(before, &parked, &patch);
            let after = patch.state.as_ref().map_or(before, |(s, _)| *s);
            let mut parked_after = parked.clone();
            parked_after.extend(first.iter().filter_map(|c| c.product));
            prop_assert!(caused_by(after, &parked_after, &patch).is_empty());
        }

        /// Every link event names a real transition into its state, and a
        /// resume only follows a park.
        #[test]
        fn link_events_are_transitions(before in state(), patch in patch()) {
            for c in caused_by(before, &[], &patch).into_iter().filter(|c| c.product.is_none()) {
                let after = patch.state.as_ref().unwrap().0;
                prop_assert_ne!(after, before);
                match c.kind {
                    EventType::Resumed => prop_assert!(before.is_parked() && after == LinkState::Active),
                    EventType::NeedsUserAction => prop_assert_eq!(after, LinkState::NeedsUserAction),
                    EventType::Deleted => prop_assert_eq!(after, LinkState::Deleted),
                    EventType::NotFound => prop_assert_eq!(after, LinkState::NotFound),
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
            }
        }

        /// Events are caused only by patches `may_cause` lets through, so
        /// skipping the read for the others loses nothing.
        #[test]
        fn may_cause_is_never_wrong(before in state(), patch in patch()) {
            if !may_cause(&patch) {
                prop_assert!(caused_by(before, &[], &patch).is_empty());
            }
        }
    }

    #[test]
    fn a_422_carries_the_link_error_code_and_a_resume_follows_it() {
        let park = LinkPatch {
            state: Some((
                LinkState::NeedsUserAction,
                Some("needs_user_action: auth_expired".into()),
            )),
            ..LinkPatch::default()
        };
        let c = caused_by(LinkState::Active, &[], &park);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].kind, EventType::NeedsUserAction);
        assert_eq!(c[0].link_error_code.as_deref(), Some("auth_expired"));
        let resume = LinkPatch {
            state: Some((LinkState::Active, None)),
            ..LinkPatch::default()
        };
        assert_eq!(
            caused_by(LinkState::NeedsUserAction, &[], &resume)[0].kind,
            EventType::Resumed
        );
        assert!(caused_by(LinkState::Paused, &[], &resume).is_empty());
    }
}
