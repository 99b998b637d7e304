//! A snapshot body that passes its CRC but is not what gridlog wrote (a bug in a writer, a
//! file put in place by hand) is refused with an error naming the file, never a panic: the
//! body of the format-4 fixture with bytes
//! replaced, cut or added, its header's length and CRC made to match, is loaded by
//! `snapshot::load`.

use std::path::{Path, PathBuf};

use gridlog_firmware::snapshot::{self, SnapshotHeader, SNAPSHOT_HEADER_BYTES};
use proptest::prelude::*;

const FIXTURE: &str = "fixtures/snapshot-v4/snapshots/00000000000000000195.snap";

fn fixture() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Writes `body` under the fixture's header, its length and CRC fixed, where `load` wants
/// it (the file name is the offset).
fn write_with_body(dir: &Path, header: &SnapshotHeader, body: &[u8]) -> PathBuf {
    let header = SnapshotHeader {
        body_bytes: body.len() as u64,
        body_crc32: crc32fast::hash(body),
        ..*header
    };
    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(body);
    let path = dir.join(format!("{:020}.snap", header.next_offset));
    std::fs::write(&path, bytes).expect("write snapshot");
    path
}

/// A change to a body: bytes replaced at positions (taken modulo the length), then the body
/// cut to a length or grown by bytes.
#[derive(Debug, Clone)]
struct Mutation {
    replace: Vec<(usize, u8)>,
    cut_to: Option<usize>,
    append: Vec<u8>,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        prop::option::of(any::<usize>()),
        prop::collection::vec(any::<u8>(), 0..4),
    )
        .prop_map(|(replace, cut_to, append)| Mutation {
            replace,
            cut_to,
            append,
        })
}

fn mutate(body: &[u8], m: &Mutation) -> Vec<u8> {
    let mut out = body.to_vec();
    for &(at, byte) in &m.replace {
        let i = at % out.len();
        out[i] = byte;
    }
    if let Some(cut) = m.cut_to {
        out.truncate(cut % (out.len() + 1));
    }
    out.extend_from_slice(&m.append);
    out
}

#[test]
fn the_unchanged_fixture_loads() {
    let bytes = fixture();
    let header = SnapshotHeader::decode(&bytes).expect("fixture header");
    let tmp = tempfile::tempdir().unwrap();
    let path = write_with_body(tmp.path(), &header, &bytes[SNAPSHOT_HEADER_BYTES..]);
    snapshot::load(&path, None).expect("the fixture loads");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_changed_body_under_a_matching_crc_is_an_error_or_an_image_never_a_panic(
        m in mutation()
    ) {
        let bytes = fixture();
        let header = SnapshotHeader::decode(&bytes).expect("fixture header");
        let body = mutate(&bytes[SNAPSHOT_HEADER_BYTES..], &m);
        let tmp = tempfile::tempdir().unwrap();
        let path = write_with_body(tmp.path(), &header, &body);
        match snapshot::load(&path, None) {
            // A change the digest cannot see (a byte postcard reads the same way) loads.
            Ok(_) => {}
            Err(e) => {
                let message = e.to_string();
                prop_assert!(message.contains(&path.display().to_string()), "{message}");
            }
        }
    }
}
