//! Sealed segments ship when sealed, not when archived: with the local archive switched off
//! (`storage.archive = false`), a gateway that fills several small segments has each
//! sealed one in central storage, as the object its archive file would be (the archive's
//! format, whose header names the SHA-256 of the segment's bytes), while its `archive/`
//! stays empty. A restore from the store then holds every reading of those segments.

#[allow(dead_code)]
mod ship_support;

use std::collections::BTreeMap;
use std::time::Instant;

use gridlog_common::archive::ArchiveHeader;
use gridlog_common::domain::Event;
use ship_support::*;

const METER: &str = "meter-sealed";
/// Requests of [`BATCH`] readings; about 100 bytes each against 16 KiB segments, so a few
/// dozen segments fill up.
const REQUESTS: usize = 60;
const BATCH: usize = 20;

#[test]
fn sealed_segments_reach_the_store_without_being_archived() {
    let moto = Moto::start();
    let prefix = "sealed";
    let mut env = ship_env(&moto.endpoint(), prefix);
    env.push(("GRIDLOG_STORAGE__ARCHIVE".into(), "false".into()));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gateway");
    let mut gateway = Gateway::serve(&dir, &env);
    gateway.post(
        "/api/v1/meters",
        serde_json::json!({"id": METER, "kind": "load"}),
    );
    let t0_ms = 1_767_225_600_000i64; // 2026-01-01T00:00:00Z
    let mut acked = BTreeMap::new();
    for r in 0..REQUESTS {
        let readings: Vec<_> = (0..BATCH)
            .map(|i| {
                let k = (r * BATCH + i + 1) as i64;
                serde_json::json!({
                    "meter": METER,
                    "time": gridlog_tests::server::rfc3339_ms(t0_ms + k * 1000),
                    "import_wh": k as f64 * 2.0,
                    "export_wh": 0.0,
                    "power_w": 500.0,
                })
            })
            .collect();
        let response = gateway.post(
            "/api/v1/readings",
            serde_json::json!({ "readings": readings }),
        );
        for result in response["results"].as_array().unwrap() {
            assert_eq!(result["status"], "accepted", "{response}");
            let offset = result["offset"].as_u64().unwrap();
            acked.insert(offset, ());
        }
    }
    let sealed = sealed_segments_in_hot_log(&dir);
    assert!(
        sealed.len() >= 3,
        "the run must seal several segments: {:?}",
        std::fs::read_dir(dir.join("wal"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect::<Vec<_>>()
    );

    // Every sealed segment appears in the store as an archive-format object of its bytes.
    let bucket = moto.bucket();
    let deadline = Instant::now() + SETTLE;
    let objects = loop {
        let objects: BTreeMap<u64, Vec<u8>> = bucket
            .objects(prefix)
            .into_iter()
            .filter(|(key, _)| key.contains("/segments/"))
            .map(|(_, bytes)| {
                let header = ArchiveHeader::decode(&bytes).expect("archive header");
                (header.first_offset, bytes)
            })
            .collect();
        if sealed.keys().all(|first| objects.contains_key(first)) {
            break objects;
        }
        assert!(
            Instant::now() < deadline,
            "sealed segments {:?} never all reached the store (it holds {:?}): {}",
            sealed.keys().collect::<Vec<_>>(),
            objects.keys().collect::<Vec<_>>(),
            gateway.shipping()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    for (first, segment) in &sealed {
        let object = &objects[first];
        let file = tmp.path().join(format!("object-{first}"));
        std::fs::write(&file, object).unwrap();
        let (header, original) =
            gridlog_firmware::archive::read_original(&file).expect("the object verifies");
        assert_eq!(
            original[..],
            segment[..original.len()],
            "segment {first}: the object holds other bytes than the sealed segment"
        );
        assert!(
            segment[original.len()..].iter().all(|&b| b == 0),
            "segment {first}: the object stops before the segment's end"
        );
        assert_eq!(header.sha256, gridlog_firmware::archive::sha256(&original));
    }
    let archived = std::fs::read_dir(dir.join("archive")).map_or(0, |d| d.count());
    assert_eq!(archived, 0, "archiving is off: nothing may be archived");

    // The card dies; a restore brings back every reading of the sealed segments.
    let sealed_end = objects
        .values()
        .map(|o| ArchiveHeader::decode(o).unwrap().next_offset)
        .max()
        .unwrap();
    gateway.kill();
    std::fs::remove_dir_all(&dir).unwrap();
    let restored = tmp.path().join("restored");
    let (code, out, err) = restore(prefix, &restored, &moto.endpoint(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    let present: BTreeMap<u64, ()> = events(&restored, first_hot_offset(&restored))
        .into_iter()
        .filter(|(_, e)| e.entity.as_str() == METER && matches!(e.event, Event::ReadingRecorded(_)))
        .map(|(offset, _)| (offset, ()))
        .collect();
    for offset in acked.keys().filter(|o| **o < sealed_end) {
        assert!(
            present.contains_key(offset),
            "reading at offset {offset} (in a sealed, shipped segment) is not restored"
        );
    }
}
