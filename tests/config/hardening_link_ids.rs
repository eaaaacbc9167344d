//! Issue 14, item 11: link ids that are not one safe URL path segment (`.`,
//! `..`, a backslash, a percent sign) are refused wherever ids enter, with a
//! message saying what is allowed; ids of every existing shape still pass.

use std::collections::HashMap;

use linkfresh::config;
use linkfresh::domain::LinkId;

#[test]
fn dot_and_dot_dot_and_other_unsafe_segments_are_rejected_saying_what_is_allowed() {
    for bad in [".", "..", "...", "mk_a\\b", "%2e%2e", "mk_%2F"] {
        let err = LinkId::parse(bad).expect_err(bad).to_string();
        assert!(err.contains("mk_"), "{bad}: {err}");
        assert!(err.contains("allowed"), "{bad}: {err}");
    }
    // Every shape existing tests, the simulator and MoneyKit use.
    for good in [
        "mk_eqkWN34UEoa2NxyALG8pcV",
        "mk_disc_00100",
        "mk_cfg_000",
        "mk_a.b",
        "mk_<b>x<i>&'y'",
    ] {
        assert_eq!(LinkId::parse(good).unwrap().as_str(), good);
    }
}

#[test]
fn a_config_link_id_of_dot_dot_is_rejected_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("linkfresh.toml");
    std::fs::write(
        &path,
        "[moneykit]\nclient_id = \"a\"\nclient_secret = \"b\"\n[[links]]\nid = \"..\"\n",
    )
    .unwrap();
    let err = config::load_with_env(&path, HashMap::new())
        .expect_err("'..' accepted")
        .to_string();
    assert!(err.contains("[[links]] #1 id"), "{err}");
    assert!(err.contains("\"..\""), "{err}");
}

#[test]
fn a_links_file_line_of_a_single_dot_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("linkfresh.toml");
    std::fs::write(dir.path().join("links.txt"), "mk_ok\n.\n").unwrap();
    std::fs::write(
        &path,
        "links_file = \"links.txt\"\n[moneykit]\nclient_id = \"a\"\nclient_secret = \"b\"\n",
    )
    .unwrap();
    let err = config::load_with_env(&path, HashMap::new())
        .expect_err("'.' accepted")
        .to_string();
    assert!(err.contains("links.txt:2"), "{err}");
}
