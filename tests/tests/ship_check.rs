//! `gridlog ship --check`: a read-only audit of central storage against the manifests.
//! After two rounds (the second's segments supersede the first's tail chunk, which the
//! shipper then deletes) the store is clean; a stray upload, a deleted segment and a
//! changed chunk are each named, and the audit changes nothing; the shipper then removes
//! the stray upload after the grace period.

#[allow(dead_code)]
mod ship_support;

use ship_support::*;

#[test]
fn the_audit_names_missing_extra_and_tampered_objects_and_tolerates_superseded_chunks() {
    let moto = Moto::start();
    let bucket = moto.bucket();
    let prefix = "audit";
    let env = ship_env(&moto.endpoint(), prefix);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gateway");
    grow(&dir, 5, 300);
    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    let lineage = std::fs::read_to_string(dir.join("LINEAGE")).unwrap();
    let root = format!("{prefix}/{SITE}/{}", lineage.trim());
    let first_chunks: Vec<String> = bucket
        .keys(&root)
        .into_iter()
        .filter(|k| k.contains("/chunks/"))
        .collect();
    assert!(!first_chunks.is_empty());
    grow(&dir, 5, 300);
    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    // The first round's tail is now in archived segments: its chunks are gone.
    let keys = bucket.keys(&root);
    for c in &first_chunks {
        assert!(!keys.contains(c), "superseded chunk {c} still there");
    }

    let (code, out) = audit(&env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 missing, 0 extra, 0 tampered"), "{out}");
    assert!(!out.contains("(0 superseded"), "{out}");

    // A stray upload, a deleted segment, a changed chunk.
    let objects = bucket.objects(&root);
    let stray = format!("{root}/segments/00000000000000999999-00000000000001000000.seg.zst");
    bucket.overwrite(&stray, b"left by a crash".to_vec());
    let segment = keys.iter().find(|k| k.contains("/segments/")).unwrap();
    bucket.delete(segment);
    let chunk = keys.iter().find(|k| k.contains("/chunks/")).unwrap();
    let mut changed = objects[chunk].clone();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    bucket.overwrite(chunk, changed);
    let before = bucket.objects(&format!("{prefix}/{SITE}"));
    let (code, out) = audit(&env);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("MISSING  {segment}")), "{out}");
    assert!(out.contains(&format!("EXTRA    {stray}")), "{out}");
    assert!(out.contains(&format!("TAMPERED {chunk}")), "{out}");
    // Read-only.
    assert_eq!(bucket.objects(&format!("{prefix}/{SITE}")), before);

    // The shipper removes the stray upload (no manifest names it) once it is older than
    // the grace period (here 0), and nothing a manifest names.
    let mut now = env.clone();
    now.push(("GRIDLOG_SHIP__ORPHAN_GRACE_S".into(), "0".into()));
    let (code, out, err) = ship_once(&dir, &now);
    assert_eq!(code, 0, "{out}{err}");
    let after = bucket.keys(&root);
    assert!(!after.contains(&stray), "{after:?}");
    let mut expected: Vec<String> = before.keys().filter(|k| **k != stray).cloned().collect();
    expected.sort();
    assert_eq!(after, expected);
}
