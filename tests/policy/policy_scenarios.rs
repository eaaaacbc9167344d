//! Concrete scenarios of the scheduling policy, at the scale of days, run
//! through the same simulation `linkfresh plan` prints.

use chrono::{DateTime, TimeDelta, Utc};
use linkfresh::domain::{LinkId, Product, ProductSet};
use linkfresh::policy::phase::link_hash;
use linkfresh::policy::plan::simulate;
use linkfresh::policy::{Decision, LinkSchedule, ProductState, Rules, Why, decide, evaluate};

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn link(products: &[Product]) -> LinkSchedule {
    LinkSchedule {
        hash: link_hash(&LinkId::parse("mk_eqkWN34UEoa2NxyALG8pcV").unwrap()),
        first_seen_at: t0(),
        runnable: true,
        backoff_until: None,
        last_activity_at: None,
        products: products.iter().copied().map(ProductState::new).collect(),
    }
}

const FOUR: [Product; 4] = [
    Product::Accounts,
    Product::Transactions,
    Product::AccountNumbers,
    Product::Identity,
];

#[test]
fn four_products_cost_one_post_an_hour_and_daily_ones_never_go_alone() {
    let mut links = vec![link(&FOUR)];
    let posts = simulate(&mut links, &Rules::default(), t0(), TimeDelta::hours(48));
    assert!(
        (47..=49).contains(&posts.len()),
        "{} POSTs in 48 h",
        posts.len()
    );
    let daily = ProductSet::of(Product::AccountNumbers).union(ProductSet::of(Product::Identity));
    let with_daily = posts
        .iter()
        .filter(|p| p.products.contains(Product::Identity))
        .count();
    assert_eq!(with_daily, 2, "identity should ride along twice in 48 h");
    for post in &posts {
        assert!(
            post.products.contains(Product::Accounts),
            "a POST without the hourly products: {:?}",
            post.products
        );
        if post.products.contains(Product::Identity) {
            assert!(post.products.contains(Product::AccountNumbers));
        }
        assert_ne!(post.products, daily);
    }
}

#[test]
fn products_on_different_phases_converge_onto_one_grid() {
    let mut l = link(&[Product::Accounts, Product::Transactions]);
    // Accounts last went 20 minutes before transactions did.
    l.products[0].last_requested_at = Some(t0() - TimeDelta::minutes(50));
    l.products[1].last_requested_at = Some(t0() - TimeDelta::minutes(30));
    let mut links = vec![l];
    let posts = simulate(&mut links, &Rules::default(), t0(), TimeDelta::hours(24));
    let both = ProductSet::of(Product::Accounts).union(ProductSet::of(Product::Transactions));
    // After a few hours every POST carries both products.
    assert!(
        posts.iter().rev().take(15).all(|p| p.products == both),
        "{posts:#?}"
    );
    assert!(posts.len() <= 24 + 4, "{} POSTs", posts.len());
    // And no product was ever held more than `coalesce` past its due time.
    for p in &posts {
        assert!(p.at - p.due_at <= Rules::default().coalesce);
    }
}

#[test]
fn a_new_fleet_is_spread_over_the_first_minute() {
    let mut links: Vec<_> = (0..600)
        .map(|i| {
            let mut l = link(&[Product::Accounts]);
            l.hash = link_hash(&LinkId::parse(&format!("mk_{i}")).unwrap());
            l
        })
        .collect();
    let posts = simulate(&mut links, &Rules::default(), t0(), TimeDelta::seconds(60));
    assert_eq!(posts.len(), 600);
    let mut per_second = [0; 60];
    for p in &posts {
        per_second[(p.at - t0()).num_seconds() as usize] += 1;
    }
    assert!(per_second.iter().all(|&n| n <= 25), "{per_second:?}");
}

#[test]
fn a_link_in_backoff_waits_for_the_backoff_to_end() {
    let mut l = link(&[Product::Accounts]);
    let until = t0() + TimeDelta::minutes(7);
    l.backoff_until = Some(until);
    assert_eq!(
        decide(&l, &Rules::default(), t0() + TimeDelta::minutes(5)),
        Decision::Wait { until }
    );
    let eval = evaluate(&l, &Rules::default(), t0());
    assert_eq!(eval.products[0].why, Why::LinkBackoff { until });
}

#[test]
fn an_operator_refresh_goes_at_the_window_end_without_waiting_for_others() {
    let mut l = link(&[Product::Accounts, Product::Identity]);
    let last = t0() - TimeDelta::minutes(30);
    l.products[0].last_requested_at = Some(last);
    l.products[1].last_requested_at = Some(t0() - TimeDelta::hours(25));
    l.products[1].refresh_requested = true;
    // identity's window is over; accounts' is not: identity goes now, alone.
    assert_eq!(
        decide(&l, &Rules::default(), t0()),
        Decision::Send {
            products: ProductSet::of(Product::Identity),
            due_at: t0() - TimeDelta::hours(1) + TimeDelta::seconds(30),
        }
    );
}

#[test]
fn a_daily_product_due_alone_rides_on_the_next_hourly_post() {
    let mut l = link(&[Product::Accounts, Product::Identity]);
    l.products[0].last_requested_at = Some(t0() - TimeDelta::minutes(20));
    l.products[1].last_requested_at = Some(t0() - TimeDelta::hours(24) - TimeDelta::seconds(30));
    let eval = evaluate(&l, &Rules::default(), t0());
    let next = t0() + TimeDelta::minutes(40) + TimeDelta::seconds(30);
    assert_eq!(eval.decision, Decision::Wait { until: next });
    assert_eq!(eval.products[1].why, Why::RidingAlong { until: next });
}

#[test]
fn parked_and_inactive_links_are_idle() {
    let mut l = link(&[Product::Accounts]);
    l.products[0].parked = true;
    assert_eq!(decide(&l, &Rules::default(), t0()), Decision::Idle);
    let mut l = link(&[Product::Accounts]);
    l.runnable = false;
    assert_eq!(decide(&l, &Rules::default(), t0()), Decision::Idle);
}
