//! The daemon never panics on input: random durations, link ids and config
//! values go through validation (`config::load_with_env` on a real file), the
//! store's cadence read-back (`policy::cadences::cadence_from_json`) and the policy
//! (`evaluate`, `plan::simulate`) at random `now`, near chrono's limits
//! included. Errors are fine; a panic is a failure.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use linkfresh::config;
use linkfresh::domain::{LinkId, Product};
use linkfresh::policy::cadences::cadence_from_json;
use linkfresh::policy::phase::link_hash;
use linkfresh::policy::plan::simulate;
use linkfresh::policy::{Cadence, Limits, LinkSchedule, ProductState, Rules, evaluate};
use proptest::prelude::*;

/// Duration-like strings: plausible ones, huge numbers, odd units, garbage.
fn arb_duration() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..100_000, "(ns|us|ms|s|m|h|d|w|M|y|years|days)").prop_map(|(n, u)| format!("{n}{u}")),
        (
            "[0-9]{4,30}",
            "(ns|ms|s|m|h|d|w|M|y|years|)",
            "( [0-9]{1,20}(s|h|y))?"
        )
            .prop_map(|(n, u, more)| format!("{n}{u}{more}")),
        Just("300000y".to_owned()),
        Just("292000000y".to_owned()),
        Just("18446744073709551615s".to_owned()),
        "\\PC{0,12}",
    ]
}

/// Link-id-like strings, dots and separators included.
fn arb_link_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "mk_[A-Za-z0-9]{1,30}",
        Just(".".to_owned()),
        Just("..".to_owned()),
        "[./\\\\%?#a-z_-]{1,6}",
        "\\PC{0,10}",
    ]
}

/// Instants across chrono's whole range, its ends included.
fn arb_now() -> impl Strategy<Value = DateTime<Utc>> {
    let (min, max) = (
        DateTime::<Utc>::MIN_UTC.timestamp(),
        DateTime::<Utc>::MAX_UTC.timestamp(),
    );
    prop_oneof![
        Just(DateTime::<Utc>::MIN_UTC),
        Just(DateTime::<Utc>::MAX_UTC),
        (min..=max).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap()),
        (max - 10_000_000_000..=max).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap()),
        (0i64..4_000_000_000).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap()),
    ]
}

/// A window: at least a second (the config refuses zero), up to chrono's limit.
fn arb_window() -> impl Strategy<Value = TimeDelta> {
    prop_oneof![
        Just(TimeDelta::MAX),
        (1i64..=i64::MAX / 1_000_000).prop_map(TimeDelta::seconds),
        (1i64..100_000).prop_map(TimeDelta::seconds),
    ]
}

/// Any span chrono can hold, extremes included.
fn arb_delta() -> impl Strategy<Value = TimeDelta> {
    prop_oneof![
        Just(TimeDelta::MAX),
        Just(TimeDelta::zero()),
        (0i64..=i64::MAX / 1_000_000).prop_map(TimeDelta::seconds),
        (1i64..100_000).prop_map(TimeDelta::seconds),
    ]
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Runs the policy over every link at `now`, then plans a minute ahead.
fn exercise(rules: &Rules, links: &mut [LinkSchedule], now: DateTime<Utc>) {
    for l in links.iter() {
        let _ = evaluate(l, rules, now);
    }
    let _ = simulate(links, rules, now, TimeDelta::minutes(1));
}

fn schedule(id: &LinkId, cadences: &[(Product, Cadence)], now: DateTime<Utc>) -> LinkSchedule {
    LinkSchedule {
        hash: link_hash(id),
        first_seen_at: now,
        runnable: true,
        backoff_until: None,
        last_activity_at: None,
        products: cadences
            .iter()
            .map(|(p, c)| ProductState {
                cadence: c.clone(),
                ..ProductState::new(*p)
            })
            .collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Random config values through validation, and what passes through the
    /// policy at a random `now`.
    #[test]
    fn random_config_values_never_panic_in_validation_or_the_policy(
        limit in arb_duration(),
        margin in arb_duration(),
        coalesce in arb_duration(),
        every in arb_duration(),
        backoff in arb_duration(),
        env_margin in proptest::option::of(arb_duration()),
        id in arb_link_id(),
        now in arb_now(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("linkfresh.toml");
        let text = format!(
            "[moneykit]\nclient_id = \"a\"\nclient_secret = \"b\"\n\
             [limits]\naccounts = {}\nmargin = {}\n\
             [schedule]\ncoalesce = {}\nbackoff_max = {}\n\
             [[links]]\nid = {}\nproducts = [\"accounts\", \"transactions\"]\nevery = {{ accounts = {} }}\n",
            toml_string(&limit), toml_string(&margin), toml_string(&coalesce),
            toml_string(&backoff), toml_string(&id), toml_string(&every),
        );
        std::fs::write(&path, text).unwrap();
        let mut env = HashMap::new();
        if let Some(m) = env_margin {
            env.insert("LINKFRESH__LIMITS__MARGIN".to_owned(), m);
        }
        if let Ok(cfg) = config::load_with_env(&path, env) {
            let mut links: Vec<LinkSchedule> = cfg
                .links
                .iter()
                .map(|l| {
                    let c: Vec<_> = l.products.iter().map(|p| (p, l.cadence_of(p))).collect();
                    schedule(&l.id, &c, now)
                })
                .collect();
            exercise(&cfg.rules, &mut links, now);
        }
    }

    /// Whatever the store hands back as a cadence, and whatever rules the
    /// policy is given, evaluating at any `now` never panics.
    #[test]
    fn the_policy_never_panics_on_huge_limits_cadences_or_times(
        windows in prop::array::uniform6(arb_window()),
        margin in arb_delta(),
        coalesce in arb_delta(),
        stored_every in arb_duration(),
        every in arb_delta(),
        last in proptest::option::of(arb_now()),
        backoff in proptest::option::of(arb_now()),
        now in arb_now(),
    ) {
        let rules = Rules {
            limits: Limits::new(windows, margin),
            coalesce,
            ..Rules::default()
        };
        let id = LinkId::parse("mk_eqkWN34UEoa2NxyALG8pcV").unwrap();
        let json = serde_json::json!({ "every": { "transactions": stored_every } }).to_string();
        let stored = cadence_from_json(Some(&json));
        let mut link = schedule(
            &id,
            &[
                (Product::Accounts, Cadence::Every(every)),
                (Product::Transactions, stored.get(&Product::Transactions).cloned().unwrap_or_default()),
                (Product::Identity, Cadence::AsOftenAsAllowed),
            ],
            now,
        );
        for p in &mut link.products {
            p.last_requested_at = last;
            p.backoff_until = backoff;
        }
        link.backoff_until = backoff;
        exercise(&rules, &mut [link], now);
    }

    /// Random strings as link ids never panic, and an accepted one is
    /// exactly one URL path segment, as the client builds its URLs.
    #[test]
    fn random_link_ids_never_panic_and_accepted_ones_are_one_path_segment(id in arb_link_id()) {
        if let Ok(parsed) = LinkId::parse(&id) {
            let mut url = reqwest::Url::parse("http://mk.invalid/").unwrap();
            url.path_segments_mut()
                .unwrap()
                .pop_if_empty()
                .extend(["links", parsed.as_str(), "products"]);
            let segments: Vec<&str> = url.path_segments().unwrap().collect();
            prop_assert_eq!(segments.len(), 3, "{} -> {}", id, url);
            prop_assert_eq!(segments[2], "products");
        }
    }
}
