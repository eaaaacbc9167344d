//! `linkfresh::config_watch` notices a Kubernetes ConfigMap update, which never
//! writes the config file in place: kubelet swaps the `..data` symlink.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use linkfresh::config_watch::{self, ConfigWatch};
use tokio::time::timeout;

/// Lays out `dir` as kubelet does for a ConfigMap volume with two keys:
///
/// ```text
/// ..2026_11_23_10_00_00.000000001/{linkfresh.toml,links.txt}
/// ..data -> ..2026_11_23_10_00_00.000000001
/// linkfresh.toml -> ..data/linkfresh.toml
/// links.txt -> ..data/links.txt
/// ```
fn configmap_volume(dir: &Path) {
    let ts = dir.join("..2026_11_23_10_00_00.000000001");
    fs::create_dir(&ts).unwrap();
    fs::write(ts.join("linkfresh.toml"), "links_file = \"links.txt\"\n").unwrap();
    fs::write(ts.join("links.txt"), "mk_one\n").unwrap();
    symlink("..2026_11_23_10_00_00.000000001", dir.join("..data")).unwrap();
    symlink("..data/linkfresh.toml", dir.join("linkfresh.toml")).unwrap();
    symlink("..data/links.txt", dir.join("links.txt")).unwrap();
}

/// An update, step by step as kubelet's AtomicWriter does it: write the new
/// timestamped folder, point `..data_tmp` at it, rename that over `..data`,
/// then remove the old folder. `gap` between steps stands for a busy node, and
/// makes the steps separate bursts unless the watcher debounces them.
fn configmap_update(dir: &Path, gap: Duration) {
    let old = dir.join("..2026_11_23_10_00_00.000000001");
    let new_name = "..2026_11_23_10_05_00.000000002";
    let new = dir.join(new_name);
    fs::create_dir(&new).unwrap();
    fs::write(new.join("linkfresh.toml"), "links_file = \"links.txt\"\n").unwrap();
    fs::write(new.join("links.txt"), "mk_one\nmk_two\n").unwrap();
    std::thread::sleep(gap);
    symlink(new_name, dir.join("..data_tmp")).unwrap();
    std::thread::sleep(gap);
    fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::thread::sleep(gap);
    fs::remove_dir_all(old).unwrap();
}

/// How long a folder must give no signal to count as quiet: a change is
/// reported one debounce after its burst ends, so twice that is ample.
fn quiet() -> Duration {
    2 * config_watch::DEFAULT_DEBOUNCE
}

/// Consumes and returns every signal that arrives within `window`.
async fn signals_within(watch: &mut ConfigWatch, window: Duration) -> usize {
    let mut n = 0;
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(())) = tokio::time::timeout_at(deadline, watch.changed()).await {
        n += 1;
    }
    n
}

#[tokio::test]
async fn configmap_symlink_swap_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    configmap_volume(dir.path());
    let mut watch = config_watch::watch_config_dir(dir.path()).unwrap();

    // Reading the config (as a reload does) is not a change.
    assert_eq!(
        fs::read_to_string(dir.path().join("links.txt")).unwrap(),
        "mk_one\n"
    );
    assert_eq!(
        signals_within(&mut watch, quiet()).await,
        0,
        "a quiet folder (reads only) produced a change"
    );

    // Runs on its own thread while we wait, so every signal is consumed as it
    // comes: a watcher that did not coalesce would be caught below.
    let path = dir.path().to_path_buf();
    let updater = std::thread::spawn(move || configmap_update(&path, Duration::from_millis(20)));

    timeout(Duration::from_secs(2), watch.changed())
        .await
        .expect("no change signal within 2 s of the ..data swap")
        .expect("watch ended");
    updater.join().unwrap();
    // The file seen through the unchanged path is the new one.
    assert_eq!(
        fs::read_to_string(dir.path().join("links.txt")).unwrap(),
        "mk_one\nmk_two\n"
    );
    // The whole swap (mkdir, writes, symlink, rename, rmdir) was one burst.
    assert_eq!(
        signals_within(&mut watch, quiet()).await,
        0,
        "one ConfigMap update produced more than one signal"
    );
}

#[tokio::test]
async fn plain_edit_and_atomic_replace_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("linkfresh.toml");
    fs::write(&config, "[defaults]\n").unwrap();
    let mut watch = config_watch::watch_config_dir(dir.path()).unwrap();

    // Reading a plain file in the folder (as every reload does) is not a change.
    fs::read_to_string(&config).unwrap();
    assert_eq!(signals_within(&mut watch, quiet()).await, 0);

    // In-place write.
    fs::write(&config, "[defaults]\nproducts = [\"accounts\"]\n").unwrap();
    timeout(Duration::from_secs(2), watch.changed())
        .await
        .expect("no signal for an in-place write")
        .unwrap();

    // Editor style: write a temporary file, rename it over the config.
    let tmp = dir.path().join(".linkfresh.toml.swp");
    fs::write(&tmp, "[defaults]\n").unwrap();
    fs::rename(&tmp, &config).unwrap();
    timeout(Duration::from_secs(2), watch.changed())
        .await
        .expect("no signal for a write-and-rename")
        .unwrap();
}

#[tokio::test]
async fn changes_below_subfolders_are_not_watched() {
    // Non-recursive: a folder's contents changing deep down (not a ConfigMap
    // swap, which renames at the top) is not our business.
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("unrelated");
    fs::create_dir(&sub).unwrap();
    let mut watch = config_watch::watch_config_dir(dir.path()).unwrap();

    fs::write(sub.join("noise.txt"), "x").unwrap();
    assert_eq!(signals_within(&mut watch, quiet()).await, 0);
}

#[test]
fn missing_folder_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = config_watch::watch_config_dir(&missing).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}
