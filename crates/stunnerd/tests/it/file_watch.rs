//! The file source follows edits as they happen (inotify through `notify`), not on a
//! poll: each case must arrive well within the 60 s fallback period the watcher is
//! given. Covered: an in-place write, an atomic rename over the file, the `..data`
//! symlink swap of a mounted ConfigMap, and an invalid edit that is skipped.

use std::path::Path;
use std::time::{Duration, Instant};

use stunner_config::StunnerConfig;
use stunner_test_support::tempdir;
use tokio::sync::mpsc;

fn text(password: &str) -> String {
    format!(
        "version: v1\nadmin: {{name: ns/gw}}\nauth: {{type: static, credentials: {{username: u, password: {password}}}}}\nlisteners: []\n"
    )
}

/// The next config within 5 s (a poll would take the 60 s fallback).
fn next(rx: &mut mpsc::Receiver<StunnerConfig>, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match rx.try_recv() {
            Ok(c) => return c.auth.password().unwrap_or_default().to_string(),
            Err(mpsc::error::TryRecvError::Empty) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{what}: no config within 5 s ({e})"),
        }
    }
}

fn nothing_within(rx: &mut mpsc::Receiver<StunnerConfig>, d: Duration) {
    std::thread::sleep(d);
    assert!(rx.try_recv().is_err(), "a config was sent");
}

fn atomic_write(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn edits_renames_and_invalid_edits_are_seen_at_once() {
    let dir = tempdir("file-watch");
    let file = dir.join("stunnerd.conf");
    std::fs::write(&file, text("one")).unwrap();
    let (tx, mut rx) = mpsc::channel(8);
    stunnerd::source::watch_file(file.clone(), Duration::from_secs(60), tx);
    assert_eq!(next(&mut rx, "the first config"), "one");
    std::fs::write(&file, text("two")).unwrap();
    assert_eq!(next(&mut rx, "an in-place write"), "two");
    atomic_write(&file, &text("three"));
    assert_eq!(next(&mut rx, "an atomic rename"), "three");
    // Invalid: logged, skipped; the next valid edit goes through.
    atomic_write(&file, "version: v1\nlisteners: [{name: x, port: 99999}]\n");
    nothing_within(&mut rx, Duration::from_millis(500));
    atomic_write(&file, &text("four"));
    assert_eq!(next(&mut rx, "a valid edit after an invalid one"), "four");
    // Touching without a change sends nothing.
    atomic_write(&file, &text("four"));
    nothing_within(&mut rx, Duration::from_millis(500));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_configmap_symlink_swap_is_seen_at_once() {
    // The kubelet's layout: stunnerd.conf -> ..data/stunnerd.conf, ..data -> ..<stamp>,
    // and an update writes a new ..<stamp>, points ..data_tmp at it and renames it over
    // ..data.
    use std::os::unix::fs::symlink;
    let dir = tempdir("configmap-swap");
    let stamp = |n: u32| dir.join(format!("..2026_12_06_{n}"));
    std::fs::create_dir(stamp(1)).unwrap();
    std::fs::write(stamp(1).join("stunnerd.conf"), text("first")).unwrap();
    symlink(stamp(1).file_name().unwrap(), dir.join("..data")).unwrap();
    symlink("..data/stunnerd.conf", dir.join("stunnerd.conf")).unwrap();
    let (tx, mut rx) = mpsc::channel(8);
    stunnerd::source::watch_file(dir.join("stunnerd.conf"), Duration::from_secs(60), tx);
    assert_eq!(next(&mut rx, "the mounted config"), "first");
    for n in 2..4 {
        std::fs::create_dir(stamp(n)).unwrap();
        std::fs::write(stamp(n).join("stunnerd.conf"), text(&format!("swap-{n}"))).unwrap();
        symlink(stamp(n).file_name().unwrap(), dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        std::fs::remove_dir_all(stamp(n - 1)).unwrap();
        assert_eq!(next(&mut rx, "a ConfigMap update"), format!("swap-{n}"));
    }
    let _ = std::fs::remove_dir_all(dir);
}
