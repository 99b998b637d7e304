//! Normal shipping of many small segments to a real S3-compatible server: every archived
//! (and every sealed) segment arrives once with the local segment's SHA-256 and its SHA-256 in its metadata, the
//! snapshot arrives, manifests list everything and chain by hash, and shipping again finds
//! nothing to do.

#[allow(dead_code)]
mod ship_support;

use ship_support::*;

#[test]
fn many_small_segments_arrive_with_manifests_and_checksums() {
    let moto = Moto::start();
    let bucket = moto.bucket();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let fixture = grow(&dir, 10, 600);
    assert!(
        fixture.archived.len() >= 20,
        "only {} archived segments",
        fixture.archived.len()
    );
    let env = ship_env(&moto.endpoint(), "fleet/eu");

    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    let (segments, manifests) = check_store(&bucket, "fleet/eu", &dir);
    assert_eq!(segments, fixture.archived.len() + sealed_in_hot_log(&dir));
    assert!(manifests >= 1);

    let lineage = std::fs::read_to_string(dir.join("LINEAGE")).unwrap();
    let root = format!("fleet/eu/{SITE}/{}", lineage.trim());
    let keys = bucket.keys(&root);
    let snapshots: Vec<_> = keys.iter().filter(|k| k.contains("/snapshots/")).collect();
    assert_eq!(snapshots.len(), 1, "{keys:?}");
    // The SHA-256 travels as metadata too.
    let first = keys.iter().find(|k| k.contains("/segments/")).unwrap();
    let stored = bucket.objects(&root);
    assert_eq!(bucket.metadata_sha256(first), Some(sha(&stored[first])));

    // Requests: one listing, then a PUT and a GET per object (segment, snapshot, chunk) and
    // per manifest.
    let requests: u64 = out
        .split("; ")
        .find_map(|p| p.strip_suffix(" requests"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in {out:?}"));
    // The log's tail after the archived segments goes up as chunks (one round, one more
    // manifest).
    // A chunk that a segment sealed later (by the shipper's own events) supersedes is
    // deleted: one more request.
    let chunks_named: std::collections::BTreeSet<String> = stored
        .iter()
        .filter(|(k, _)| k.contains("/manifests/"))
        .flat_map(|(_, m)| {
            let m: serde_json::Value = serde_json::from_slice(m).unwrap();
            m["chunks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["key"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!chunks_named.is_empty(), "{keys:?}");
    let chunks_left = keys.iter().filter(|k| k.contains("/chunks/")).count();
    let deleted = (chunks_named.len() - chunks_left) as u64;
    let objects = (segments + 1 + chunks_named.len() + manifests) as u64;
    assert!(
        requests <= 2 * objects + deleted + 1,
        "{requests} requests for {objects} objects and {deleted} deleted chunks"
    );

    // Nothing left: a second run uploads nothing and changes nothing.
    let (code, out, err) = ship_once(&dir, &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("shipped 0 objects"), "{out}");
    assert_eq!(bucket.keys(&root), keys);
}
