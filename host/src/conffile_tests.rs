//! The package's commented configuration file (`host/package/gridlog.toml`, installed as
//! `/etc/gridlog/gridlog.toml`) tells the truth: as shipped it loads, and every value it shows
//! in a comment is the default, so uncommenting any line changes nothing until it is edited.

use std::path::PathBuf;

use crate::config::Config;

const CONFFILE: &str = include_str!("../package/gridlog.toml");

/// `# key = value` and `# [section]` lines made live; prose and indented examples stay
/// comments.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_setting(rest) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_setting(line: &str) -> bool {
    let key = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
    };
    match line.split_once(" = ") {
        Some((name, _)) => key(name),
        None => line
            .strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
            .is_some_and(key),
    }
}

fn load(text: &str) -> Config {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("gridlog.toml");
    std::fs::write(&file, text).expect("write");
    Config::load(Some(&file), std::iter::empty()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn the_shipped_conffile_loads_with_the_packages_data_directory() {
    let config = load(CONFFILE);
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/gridlog"));
    let defaults = Config {
        data_dir: config.data_dir.clone(),
        ..Config::default()
    };
    assert_eq!(config, defaults);
}

#[test]
fn every_commented_value_is_the_default() {
    let live = uncommented(CONFFILE);
    let shown = CONFFILE
        .lines()
        .filter(|l| l.strip_prefix("# ").is_some_and(is_setting))
        .count();
    assert!(shown >= 60, "only {shown} settings shown in the conffile");
    assert_eq!(load(&live), load(CONFFILE));
}

#[test]
fn uncommenting_finds_settings_and_leaves_prose() {
    assert!(is_setting("segment_bytes = 67108864"));
    assert!(is_setting("[wal]"));
    assert!(!is_setting("Segment size (64 MiB)."));
    assert!(!is_setting("  [[modbus.device]]"));
    assert!(!is_setting("Recommended on flash-backed gateways: 1000."));
}
