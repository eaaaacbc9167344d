//! The link table's unit tests (kept apart: `table.rs` stays one concept
//! under ~400 lines).

use std::collections::BTreeMap;

use chrono::TimeDelta;

use super::*;
use crate::policy::Cadence;
use crate::policy::cadences::cadence_to_json;

fn record(id: &str, cadence: Option<String>) -> LinkRecord {
    LinkRecord {
        cadence,
        ..fresh_record(id, "accounts,identity")
    }
}

#[test]
fn links_configured_alike_share_their_cadences_and_the_policy_sees_them() {
    let every = cadence_to_json(&BTreeMap::from([(
        Product::Identity,
        Cadence::Every(TimeDelta::days(7)),
    )]));
    let mut table = LinkTable::default();
    let a = table.merge(&record("mk_a", every.clone()));
    let b = table.merge(&record("mk_b", every));
    let c = table.merge(&record("mk_c", None));
    let (a, b, c) = (table.get(a), table.get(b), table.get(c));
    assert!(Arc::ptr_eq(&a.rules, &b.rules));
    assert!(!Arc::ptr_eq(&a.rules, &c.rules));
    let cadence_of = |e: &Entry, p: Product| {
        e.schedule()
            .products
            .into_iter()
            .find(|s| s.product == p)
            .map(|s| s.cadence)
    };
    assert_eq!(
        cadence_of(a, Product::Identity),
        Some(Cadence::Every(TimeDelta::days(7)))
    );
    assert_eq!(
        cadence_of(a, Product::Accounts),
        Some(Cadence::AsOftenAsAllowed)
    );
    assert_eq!(
        cadence_of(c, Product::Identity),
        Some(Cadence::AsOftenAsAllowed)
    );
}

#[test]
fn product_times_keep_the_stores_millisecond_and_server_times_never_go_back() {
    let t = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
    let mut slot = ProductSlot::new(Product::Accounts);
    assert_eq!((slot.last_requested_at(), slot.last()), (None, None));
    slot.set_last_requested_at(Some(t(1_800_000_000_123) + TimeDelta::microseconds(999)));
    assert_eq!(slot.last_requested_at(), Some(t(1_800_000_000_123)));
    slot.saw_server_time(Some(t(1_800_000_005_000)));
    slot.saw_server_time(Some(t(1_800_000_001_000)));
    slot.saw_server_time(None);
    assert_eq!(slot.server_seen_at(), Some(t(1_800_000_005_000)));
    assert_eq!(slot.last(), Some(t(1_800_000_005_000)));
    slot.set_backoff_until(Some(t(7)));
    slot.set_backoff_until(None);
    assert_eq!(slot.backoff_until(), None);
}

/// `explain` builds the policy's input from the record itself (it must
/// not depend on the daemon); this keeps it the same as the table's.
#[test]
fn explain_sees_a_stored_link_exactly_as_the_table_schedules_it() {
    let t = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
    let cadence = cadence_to_json(&BTreeMap::from([(
        Product::Identity,
        Cadence::Every(TimeDelta::days(7)),
    )]));
    let mut rec = record("mk_same", cadence);
    rec.backoff_until = Some(t(1_800_000_090_000));
    rec.schedules = vec![crate::store::ProductRecord {
        product: Product::Accounts,
        last_requested_at: Some(t(1_800_000_000_123) + TimeDelta::microseconds(456)),
        server_refreshed_at: Some(t(1_800_000_001_000)),
        server_attempted_at: Some(t(1_800_000_002_000)),
        next_due_at: None,
        failures: 1,
        backoff_until: Some(t(1_800_000_050_000)),
        parked_reason: None,
        refresh_requested: true,
    }];
    let mut parked = rec.clone();
    parked.schedules[0].parked_reason = Some("forbidden".into());
    parked.state = LinkState::Paused;
    for rec in [rec, parked] {
        let mut table = LinkTable::default();
        let i = table.merge(&rec);
        assert_eq!(
            table.get(i).schedule(),
            crate::explain::schedule_of(&rec, &Profiles::default())
        );
    }
}

/// Issue 17 (seen failing on PostgreSQL: two POSTs more than asked):
/// the claim poll echoes the daemon's own claim, read after the intent
/// and before the outcome that clears the refresh request is committed.
/// Merging it must not ask again for the refresh just sent; a new
/// request (a newer change) must.
#[test]
fn an_echo_of_a_served_refresh_request_does_not_ask_again_but_a_new_one_does() {
    let mut rec = fresh_record("mk_echo", "accounts");
    rec.change_seq = 7;
    rec.schedules = vec![crate::store::ProductRecord {
        product: Product::Accounts,
        last_requested_at: None,
        server_refreshed_at: None,
        server_attempted_at: None,
        next_due_at: None,
        failures: 0,
        backoff_until: None,
        parked_reason: None,
        refresh_requested: true,
    }];
    let mut table = LinkTable::default();
    let i = table.merge(&rec);
    assert!(
        table
            .get(i)
            .on_demand_of(ProductSet::from_iter(Product::ALL))
    );
    // Sent and accepted: the daemon clears the request in memory.
    table
        .get_mut(i)
        .product_mut(Product::Accounts)
        .unwrap()
        .refresh_requested = false;
    table.merge(&rec);
    assert!(
        !table
            .get(i)
            .on_demand_of(ProductSet::from_iter(Product::ALL)),
        "the echo asked again"
    );
    rec.change_seq = 9;
    table.merge(&rec);
    assert!(
        table
            .get(i)
            .on_demand_of(ProductSet::from_iter(Product::ALL)),
        "a new request is honoured"
    );
}

/// Issue 16: a replica that drops the links of lost partitions and
/// loads others must reuse the dropped links' memory: the table grows
/// with the links held at once, not with every link ever held.
#[test]
fn released_links_slots_are_reused_so_the_table_grows_with_the_links_held_at_once() {
    let mut table = LinkTable::default();
    for round in 0..10 {
        let held: Vec<usize> = (0..100)
            .map(|k| table.merge(&fresh_record(&format!("mk_r{round}_{k}"), "accounts")))
            .collect();
        assert_eq!(table.held(), 100);
        for i in held {
            table.get_mut(i).removed = true;
            table.release(i);
        }
    }
    assert_eq!(table.len(), 100, "slots for every link ever held");
    assert_eq!((table.held(), table.iter().count()), (0, 0));
    let gone = LinkId::parse("mk_r3_7").unwrap();
    assert_eq!(table.find(&gone), None, "a released link is not found");
    // The link comes back (its partition regained): a fresh entry from
    // its record, found again, in a reused slot.
    let i = table.merge(&fresh_record("mk_r3_7", "accounts,identity"));
    assert!(i < 100);
    assert_eq!(table.find(&gone), Some(i));
    let e = table.get(i);
    assert!(!e.removed && !e.in_flight && e.products.len() == 2);
    assert_eq!(table.len(), 100);
}

/// The fleet-1m benchmark's memory target rests on these sizes: a link
/// costs its entry, its products' slots and its id. Growing either is a
/// decision to make knowingly (see the README's Performance section).
/// Issue 17 took 8 B (112 to 120, 8 MB per million links): the last
/// activity time, which the policy needs at every evaluation of a
/// demand-ruled link; the profile shares the cadences' pointer.
#[test]
fn a_link_stays_small_in_memory() {
    assert!(
        size_of::<Entry>() <= 120,
        "Entry is {} B",
        size_of::<Entry>()
    );
    assert!(
        size_of::<ProductSlot>() <= 32,
        "ProductSlot is {} B",
        size_of::<ProductSlot>()
    );
}
