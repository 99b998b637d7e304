//! A snapshot's rollup spills (manifest version 3) restored into `rollups/`: each spill's
//! parts downloaded one at a time (memory holds one part), each checked against its
//! manifest entry, appended to `<spill>.tmp`, the whole file checked against its SHA-256,
//! made durable and renamed; then its header must be the spill the manifest names, of the
//! manifests' log, covering no event past the restored log's end. The engine then starts
//! with them as it would after its own spills (`RollupStore::open`); a snapshot shipped
//! without a set restores with an empty rollup store, and the days that had left memory
//! before it are then not restored (central storage's segments and tables still hold the
//! readings).

use std::io::Write;
use std::path::Path;

use gridlog_common::Offset;
use gridlog_firmware::engine::rollup_store::{spill_file_name, store_dir, SpillFile, StoreError};
use sha2::Digest;

use super::fetch::download_checked;
use super::{io_err, RestoreError};
use crate::ship::hex;
use crate::ship::lineage;
use crate::ship::manifest::{RollupEntry, SnapshotEntry};
use crate::ship::Sha256;

/// Restores `snapshot`'s rollup spills into `building`'s rollup store (the restored log
/// ends before `log_end`); the bytes downloaded.
pub(super) async fn restore_rollups(
    store: &crate::ship::store::Store,
    snapshot: &SnapshotEntry,
    building: &Path,
    log_id: [u8; 16],
    log_end: Offset,
) -> Result<u64, RestoreError> {
    if snapshot.rollups.is_empty() {
        tracing::info!(
            snapshot = %snapshot.key,
            "the snapshot names no rollup spills (shipped before manifest version 3, or the store was empty): rollup days that left memory before it are not restored"
        );
        return Ok(0);
    }
    check_set(&snapshot.rollups, log_end)?;
    let dir = store_dir(building);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let mut downloaded = 0;
    for spill in &snapshot.rollups {
        downloaded += restore_spill(store, spill, &dir, log_id).await?;
    }
    lineage::sync_dir(&dir).map_err(io_err(&dir))?;
    Ok(downloaded)
}

/// A set names each spill once, oldest first, none past the restored log's end.
fn check_set(set: &[RollupEntry], log_end: Offset) -> Result<(), RestoreError> {
    if set.windows(2).any(|w| w[0].spill_seq >= w[1].spill_seq) {
        return Err(RestoreError::Inconsistent(
            "a snapshot's rollup spills are not in order, or one is named twice".into(),
        ));
    }
    if let Some(s) = set.iter().find(|s| s.through_offset > log_end) {
        return Err(RestoreError::Inconsistent(format!(
            "rollup spill {} covers events up to offset {}, past the restored log's end {log_end}",
            s.spill_seq, s.through_offset
        )));
    }
    Ok(())
}

async fn restore_spill(
    store: &crate::ship::store::Store,
    spill: &RollupEntry,
    dir: &Path,
    log_id: [u8; 16],
) -> Result<u64, RestoreError> {
    let path = dir.join(spill_file_name(spill.spill_seq));
    let tmp = dir.join(format!("{}.tmp", spill_file_name(spill.spill_seq)));
    let mut file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    let mut hasher = sha2::Sha256::new();
    let mut downloaded = 0u64;
    for (i, part) in spill.parts.iter().enumerate() {
        let what = || format!("part {i} of rollup spill {}", spill.spill_seq);
        let bytes = download_checked(
            store,
            &part.key,
            (part.object_bytes, part.object_sha256),
            what,
        )
        .await?;
        hasher.update(&bytes);
        file.write_all(&bytes).map_err(io_err(&tmp))?;
        downloaded += bytes.len() as u64;
    }
    let sha = Sha256(hasher.finalize().into());
    let tampered = |reason: String| RestoreError::Tampered {
        key: spill.parts.first().map_or_else(
            || format!("rollup spill {}", spill.spill_seq),
            |p| p.key.clone(),
        ),
        reason,
    };
    if sha != spill.file_sha256 || downloaded != spill.file_bytes {
        return Err(tampered(format!(
            "rollup spill {}'s parts make {downloaded} bytes with sha256 {sha}; the manifest says {} bytes with sha256 {}",
            spill.spill_seq, spill.file_bytes, spill.file_sha256
        )));
    }
    file.sync_data().map_err(io_err(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    let opened = SpillFile::open(&path).map_err(|e| match e {
        StoreError::Io { path, source } => RestoreError::Io { path, source },
        other => tampered(other.to_string()),
    })?;
    let header = opened.header();
    if header.spill_seq != spill.spill_seq || header.through_offset != spill.through_offset {
        return Err(tampered(format!(
            "the file is spill {} through offset {}; the manifest says spill {} through {}",
            header.spill_seq, header.through_offset, spill.spill_seq, spill.through_offset
        )));
    }
    if header.log_id != log_id {
        return Err(RestoreError::Inconsistent(format!(
            "rollup spill {}'s log id {} is not the manifests' {}",
            spill.spill_seq,
            hex(&header.log_id),
            hex(&log_id)
        )));
    }
    Ok(downloaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spill(spill_seq: u64, through_offset: u64) -> RollupEntry {
        RollupEntry {
            spill_seq,
            through_offset,
            file_bytes: 0,
            file_sha256: Sha256::default(),
            parts: vec![],
        }
    }

    #[test]
    fn a_set_is_ordered_named_once_and_within_the_restored_log() {
        assert!(check_set(&[], 1).is_ok());
        assert!(check_set(&[spill(1, 5), spill(4, 9)], 9).is_ok());
        for bad in [
            vec![spill(4, 5), spill(1, 9)],
            vec![spill(4, 5), spill(4, 5)],
            vec![spill(1, 5), spill(4, 10)],
        ] {
            assert!(
                matches!(check_set(&bad, 9), Err(RestoreError::Inconsistent(_))),
                "{bad:?}"
            );
        }
    }
}
