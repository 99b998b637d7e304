//! Unit tests of the configuration: layering, unknown keys, tokens, checks.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_file_env_in_that_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gridlog.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9000\"\n[wal]\nsegment_bytes = 1048576\n",
    )
    .unwrap();
    let c = Config::load(
        Some(&file),
        env(&[
            ("GRIDLOG_WAL__SEGMENT_BYTES", "2097152"),
            ("GRIDLOG_LOG", "debug"),
            ("GRIDLOG_SITE_ID", "plant-7"),
        ]),
    )
    .unwrap();
    assert_eq!(c.listen.port(), 9000);
    assert_eq!(c.wal.segment_bytes, 2 * 1024 * 1024);
    assert_eq!(c.site_id, "plant-7");
    assert_eq!(c.data_dir, PathBuf::from("./gridlog-data"));
}

#[test]
fn unknown_keys_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gridlog.toml");
    std::fs::write(&file, "[wal]\nsegment_byte = 1\n").unwrap();
    let e = Config::load(Some(&file), env(&[])).unwrap_err().to_string();
    assert!(e.contains("segment_byte"), "{e}");
    let e = Config::load(None, env(&[("GRIDLOG_WAL__NOPE", "1")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("wal.nope"), "{e}");
}

#[test]
fn wal_recovery_is_parsed_once_into_its_mode_and_a_bad_one_is_refused() {
    use gridlog_firmware::wal::RecoveryMode;
    assert_eq!(Config::default().wal.recovery, RecoveryMode::Strict);
    let c = Config::load(
        None,
        env(&[("GRIDLOG_WAL__RECOVERY", "quarantine-corrupt")]),
    )
    .unwrap();
    assert_eq!(c.wal.recovery, RecoveryMode::QuarantineCorrupt);
    let e = Config::load(None, env(&[("GRIDLOG_WAL__RECOVERY", "lenient")]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("lenient") && e.contains("quarantine-corrupt"),
        "{e}"
    );
}

#[test]
fn http_limits_that_would_refuse_everything_are_errors_naming_them() {
    for (key, value) in [
        ("GRIDLOG_HTTP__CONCURRENCY_MAX", "0"),
        ("GRIDLOG_HTTP__STREAMS_MAX", "0"),
        ("GRIDLOG_HTTP__CONCURRENCY_MAX", "100000000"),
        ("GRIDLOG_HTTP__REQUEST_TIMEOUT_S", "0"),
        ("GRIDLOG_HTTP__READINGS_PER_REQUEST_MAX", "0"),
        ("GRIDLOG_HTTP__READINGS_PER_REQUEST_MAX", "10001"),
    ] {
        let e = Config::load(None, env(&[(key, value)]))
            .unwrap_err()
            .to_string();
        let name = key
            .trim_start_matches("GRIDLOG_HTTP__")
            .to_ascii_lowercase();
        assert!(e.contains(&format!("http.{name}")), "{key}={value}: {e}");
    }
    assert!(Config::load(None, env(&[("GRIDLOG_HTTP__STREAMS_MAX", "1")])).is_ok());
}

#[test]
fn ingest_mappings_load_from_the_file_and_a_bad_one_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gridlog.toml");
    let mapping = |unit: &str| {
        format!(
            "[ingest]\nlines_max = 100\n[[ingest.mapping]]\nmeasurement = \"sml\"\ntarget = \"meter\"\nid = \"{{host}}\"\nfields.import_wh = {{ source = \"in\", unit = \"{unit}\" }}\nfields.export_wh = {{ source = \"out\" }}\nfields.power_w = {{ source = \"p\" }}\n"
        )
    };
    std::fs::write(&file, mapping("kWh")).unwrap();
    let config = Config::load(Some(&file), env(&[])).unwrap();
    assert_eq!(config.ingest.lines_max, 100);
    assert_eq!(config.ingest.mapping.len(), 1);
    assert_eq!(config.ingest.mapping[0].id, "{host}");
    std::fs::write(&file, mapping("kW")).unwrap();
    let e = Config::load(Some(&file), env(&[])).unwrap_err().to_string();
    assert!(
        e.contains("ingest.mapping") && e.contains("import_wh"),
        "{e}"
    );
    let e = Config::load(None, env(&[("GRIDLOG_INGEST__LINES_MAX", "10001")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ingest.lines_max"), "{e}");
}

#[test]
fn a_write_token_that_could_never_match_is_refused_naming_the_key() {
    for token in [
        " secret",
        "secret ",
        "sec ret",
        "secr\u{e9}t",
        "secret\t",
        "a\nb",
    ] {
        let c = Config {
            write_token: token.into(),
            ..Config::default()
        };
        let e = c.check().unwrap_err().to_string();
        assert!(
            e.contains("write_token") && e.contains("visible ASCII"),
            "{token:?}: {e}"
        );
    }
    let c = Config {
        write_token: "s3cret-token_~!".into(),
        ..Config::default()
    };
    assert!(c.check().is_ok());
}

#[test]
fn the_write_token_file_loses_one_trailing_newline_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let read = |content: &str| {
        std::fs::write(&file, content).unwrap();
        let mut c = Config {
            write_token_file: file.clone(),
            ..Config::default()
        };
        c.read_token_files().map(|()| c.write_token)
    };
    assert_eq!(read("s3cret\n").unwrap(), "s3cret");
    assert_eq!(read("s3cret\r\n").unwrap(), "s3cret");
    assert_eq!(read("s3cret").unwrap(), "s3cret");
    for bad in ["s3cret\n\n", " s3cret\n", "", "\n"] {
        let e = read(bad).unwrap_err().to_string();
        assert!(e.contains("write_token_file"), "{bad:?}: {e}");
    }
    let mut both = Config {
        write_token: "a".into(),
        write_token_file: file.clone(),
        ..Config::default()
    };
    assert!(both.read_token_files().is_err());
}

#[test]
fn allowed_hosts_come_from_the_environment_as_an_array_and_must_be_names() {
    let c = Config::load(
        None,
        env(&[(
            "GRIDLOG_HTTP__ALLOWED_HOSTS",
            r#"["gw.site.example", "gw"]"#,
        )]),
    )
    .unwrap();
    assert_eq!(c.http.allowed_hosts, ["gw.site.example", "gw"]);
    for bad in [r#"["gw:8080"]"#, r#"[""]"#, r#"["evil example"]"#] {
        let e = Config::load(None, env(&[("GRIDLOG_HTTP__ALLOWED_HOSTS", bad)]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("http.allowed_hosts"), "{bad}: {e}");
    }
}

#[test]
fn exposure_needs_a_token_or_insecure() {
    let mut c = Config {
        listen: "0.0.0.0:8080".parse().unwrap(),
        ..Config::default()
    };
    assert!(c.check_exposure().is_err());
    c.write_token = "secret".into();
    assert!(c.check_exposure().is_ok());
    c.write_token.clear();
    c.insecure = true;
    assert!(c.check_exposure().is_ok());
}

#[test]
fn rollup_horizons_outside_1_to_3660_days_are_refused_naming_them() {
    for (quarter, day, named) in [
        (0, 400, "engine.rollup_quarter_hour_days"),
        (7, 0, "engine.rollup_day_days"),
        (7, 3661, "engine.rollup_day_days"),
    ] {
        let mut c = Config::default();
        c.engine.rollup_quarter_hour_days = quarter;
        c.engine.rollup_day_days = day;
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains(named) && e.contains("1..=3660"), "{e}");
    }
    let mut c = Config::default();
    c.engine.rollup_quarter_hour_days = 3660;
    assert!(c.check().is_ok());
}
