//! Restore from central storage: after wiping the data directory, `gridlog restore` rebuilds
//! one whose image digest and events equal the original's up to the end of the shipped
//! history (from the newest snapshot, and with `--full` from offset 1); the restored gateway
//! continues the same offsets and ships under a new lineage without touching the old one,
//! and its first manifest continues the chain. A tampered or missing object is a clear
//! error and leaves no data directory behind.

#[allow(dead_code)]
mod ship_support;

use std::path::Path;

use gridlog_firmware::engine::Engine;
use ship_support::*;

fn lineage(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("LINEAGE"))
        .unwrap()
        .trim()
        .to_string()
}

fn shipped_end(dir: &Path) -> u64 {
    let (archives, _) = gridlog_firmware::archive::list(dir).unwrap();
    archives.iter().map(|a| a.header.next_offset).max().unwrap()
}

fn open_digest(dir: &Path) -> (u64, u64) {
    let engine = Engine::open(dir, engine_options()).expect("the restored directory opens");
    let result = (engine.digest(), engine.committed_offset());
    engine.shutdown();
    result
}

#[test]
fn restore_after_wipe_matches_and_the_restored_gateway_continues_under_a_new_lineage() {
    let moto = Moto::start();
    let bucket = moto.bucket();
    let prefix = "restore";
    let env = ship_env(&moto.endpoint(), prefix);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("original");

    // Two rounds of growth and shipping: the store gets two snapshots, and segments on both
    // sides of the first one.
    grow(&dir, 5, 300);
    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    grow(&dir, 5, 300);
    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    check_store(&bucket, prefix, &dir);
    // Archived segments to `archived_end`, then chunks of the log's tail: the store holds
    // the whole log as it was when the second round ended.
    let archived_end = shipped_end(&dir);
    let original_events: Vec<_> = events(&dir, 1);
    let end = original_events.last().unwrap().0 + 1;
    assert!(end > archived_end);
    let original_digest = digest_until(&dir, end);
    // The newest snapshot (shipped by the second round) is newer than every archived
    // segment: the default restore goes to it, the newest verified point.
    let newest_snapshot = gridlog_firmware::snapshot::list(&dir)
        .unwrap()
        .last()
        .unwrap()
        .next_offset;
    assert!(newest_snapshot > archived_end);
    let old_lineage = lineage(&dir);
    let old_objects = bucket.objects(&format!("{prefix}/{SITE}/{old_lineage}"));

    // Wipe, then restore from the newest snapshot and the segments after it.
    std::fs::remove_dir_all(&dir).unwrap();
    let from_snapshot = tmp.path().join("from-snapshot");
    let (code, out, err) = restore(prefix, &from_snapshot, &moto.endpoint(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("after the snapshot at offset {newest_snapshot}")),
        "{out}"
    );
    assert_eq!(
        first_hot_offset(&from_snapshot),
        newest_snapshot,
        "a snapshot newer than every segment: the log starts at it, and chunks fill it"
    );
    let restored_events: Vec<_> = events(&from_snapshot, first_hot_offset(&from_snapshot));
    let tail: Vec<_> = original_events
        .iter()
        .filter(|(o, _)| *o >= first_hot_offset(&from_snapshot))
        .cloned()
        .collect();
    assert_eq!(restored_events, tail);
    assert_eq!(open_digest(&from_snapshot), (original_digest, end));

    // --full: every event from offset 1, the same digest.
    let full = tmp.path().join("full");
    let (code, out, err) = restore(prefix, &full, &moto.endpoint(), &["--full"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(first_hot_offset(&full), 1);
    assert_eq!(events(&full, 1), original_events);
    assert_eq!(open_digest(&full), (original_digest, end));
    let new_lineage = lineage(&full);
    assert_ne!(new_lineage, old_lineage);
    assert_ne!(lineage(&from_snapshot), new_lineage);

    // The restored gateway continues the same offsets …
    grow(&full, 5, 300);
    let new_events = events(&full, end);
    assert_eq!(new_events.first().map(|(o, _)| *o), Some(end));
    // … and ships under its new lineage: the old lineage is untouched, the chain runs on.
    let (code, out, err) = ship_once(&full, &env);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        bucket.objects(&format!("{prefix}/{SITE}/{old_lineage}")),
        old_objects
    );
    let new_objects = bucket.objects(&format!("{prefix}/{SITE}/{new_lineage}"));
    let old_head = old_objects
        .keys()
        .rfind(|k| k.contains("/manifests/"))
        .unwrap();
    let first_new: serde_json::Value = serde_json::from_slice(
        new_objects
            .iter()
            .find(|(k, _)| k.contains("/manifests/"))
            .expect("a manifest in the new lineage")
            .1,
    )
    .unwrap();
    assert_eq!(first_new["previous"]["key"], old_head.as_str());
    assert_eq!(
        first_new["previous"]["sha256"],
        sha(&old_objects[old_head]).as_str()
    );
    // The new history went up (as chunks: the restored log's active segment has the default
    // size, so nothing sealed yet), and nothing of the restored history went up again.
    let new_data: Vec<_> = new_objects
        .keys()
        .filter(|k| k.contains("/segments/") || k.contains("/chunks/"))
        .collect();
    assert!(!new_data.is_empty(), "{new_objects:?}");
    for k in &new_data {
        let first: u64 = k
            .rsplit('/')
            .next()
            .and_then(|name| name.split('-').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(first >= end, "{k} ships the restored history again");
    }

    // A second restore follows the chain across both lineages.
    let again = tmp.path().join("again");
    let (code, out, err) = restore(prefix, &again, &moto.endpoint(), &["--full"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(events(&again, 1), events(&full, 1));
}

#[test]
fn tampered_oversized_and_missing_objects_are_detected_by_restore() {
    let moto = Moto::start();
    let bucket = moto.bucket();
    let prefix = "tamper";
    let env = ship_env(&moto.endpoint(), prefix);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("original");
    grow(&dir, 5, 300);
    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    grow(&dir, 5, 100);
    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    let root = format!("{prefix}/{SITE}/{}", lineage(&dir));
    let objects = bucket.objects(&root);
    let segment = objects
        .keys()
        .find(|k| k.contains("/segments/"))
        .unwrap()
        .clone();

    // One flipped byte in a segment's compressed body.
    let mut bad = objects[&segment].clone();
    let at = bad.len() - 10;
    bad[at] ^= 0x40;
    bucket.overwrite(&segment, bad);
    let target = tmp.path().join("restored");
    let (code, out, err) = restore(prefix, &target, &moto.endpoint(), &["--full"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("tampered") && err.contains(&segment), "{err}");
    assert!(
        !target.exists(),
        "a failed restore leaves no data directory"
    );
    let building = tmp.path().join(".restored.restoring");
    assert!(
        !building.exists(),
        "a failed restore leaves no half-built directory"
    );

    // A consistent forgery (a valid archive of other bytes) is caught by the manifest hash.
    let other = objects
        .keys()
        .filter(|k| k.contains("/segments/"))
        .nth(1)
        .unwrap();
    bucket.overwrite(&segment, objects[other].clone());
    let (code, _, err) = restore(prefix, &target, &moto.endpoint(), &["--full"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("tampered") && err.contains(&segment), "{err}");

    // An object far larger than its manifest says is refused on its size, before its body
    // fills memory (what comes from the store is untrusted).
    bucket.overwrite(&segment, vec![0x5a; 24 * 1024 * 1024]);
    let (code, _, err) = restore(prefix, &target, &moto.endpoint(), &["--full"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("tampered") && err.contains(&segment) && err.contains("expected"),
        "{err}"
    );
    let expected_at_most = format!("at most {} expected", objects[&segment].len());
    assert!(err.contains(&expected_at_most), "{err}");

    // A missing segment.
    bucket.overwrite(&segment, objects[&segment].clone());
    bucket.delete(&segment);
    let (code, _, err) = restore(prefix, &target, &moto.endpoint(), &["--full"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("missing object") && err.contains(&segment),
        "{err}"
    );
    assert!(!building.exists(), "nor after a missing object");
    bucket.overwrite(&segment, objects[&segment].clone());

    // A changed older manifest breaks the chain.
    let manifest = objects
        .keys()
        .find(|k| k.contains("/manifests/"))
        .unwrap()
        .clone();
    let mut text = String::from_utf8(objects[&manifest].clone()).unwrap();
    text = text.replacen("\"created_unix_ms\": ", "\"created_unix_ms\": 1", 1);
    bucket.overwrite(&manifest, text.into_bytes());
    let (code, _, err) = restore(prefix, &target, &moto.endpoint(), &["--full"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("tampered") && err.contains(&manifest), "{err}");

    // Put right, the same store restores.
    bucket.overwrite(&manifest, objects[&manifest].clone());
    let (code, out, err) = restore(prefix, &target, &moto.endpoint(), &["--full"]);
    assert_eq!(code, 0, "{out}{err}");
}
