//! A `file://` store for simple installs: `ship --once` writes the same layout into a
//! directory (no object metadata there: the manifests carry the hashes), a second run adds
//! nothing, and `restore --full` rebuilds the same events from it.

#[allow(dead_code)]
mod ship_support;

use ship_support::*;

#[test]
fn ship_to_a_directory_and_restore_from_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let store = tmp.path().join("central");
    let fixture = grow(&dir, 5, 300);
    let env = vec![
        ("GRIDLOG_SITE_ID".to_string(), SITE.to_string()),
        (
            "GRIDLOG_WAL__SEGMENT_BYTES".into(),
            SEGMENT_BYTES.to_string(),
        ),
        (
            "GRIDLOG_SHIP__STORE".into(),
            format!("file://{}", store.display()),
        ),
        // Segment shipping alone: the manifests are counted below.
        ("GRIDLOG_SHIP__TABLES".into(), "false".into()),
    ];
    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    let lineage = std::fs::read_to_string(dir.join("LINEAGE")).unwrap();
    let root = store.join(SITE).join(lineage.trim());
    let segments = std::fs::read_dir(root.join("segments")).unwrap().count();
    // Every archived segment, and every sealed one still in the hot log (segments ship when
    // sealed): the shipper's own events fill the small segments too.
    assert_eq!(segments, fixture.archived.len() + sealed_in_hot_log(&dir));
    for a in gridlog_firmware::archive::list(&dir).unwrap().0 {
        let name = format!(
            "{:020}-{:020}.seg.zst",
            a.header.first_offset,
            a.header.next_offset - 1
        );
        assert_eq!(
            std::fs::read(root.join("segments").join(name)).unwrap(),
            std::fs::read(&a.path).unwrap()
        );
    }
    // One manifest for the archived segments and the snapshot, one for the log's tail
    // after them (chunks).
    assert_eq!(
        std::fs::read_dir(root.join("manifests")).unwrap().count(),
        2
    );
    assert!(std::fs::read_dir(root.join("chunks")).unwrap().count() >= 1);

    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("shipped 0 objects"), "{out}");

    let end = fixture.archived.iter().map(|a| a.1).max().unwrap();
    let restored = tmp.path().join("restored");
    let out = std::process::Command::new(gridlog_tests::gridlog_bin())
        .args([
            "restore",
            "--from",
            &format!("file://{}", store.display()),
            "--site",
            SITE,
            "--full",
            "--data-dir",
        ])
        .arg(&restored)
        .env_remove("GRIDLOG_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Segments, then the chunks of the tail: the whole log.
    let expected = events(&dir, 1);
    assert!(expected.last().unwrap().0 >= end);
    assert_eq!(events(&restored, 1), expected);
}
