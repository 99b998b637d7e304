//! The lineage: a random id naming one line of history of a data directory in central
//! storage (`DATA_DIR/LINEAGE`).
//!
//! It is created with the data directory and anew by every restore, so a restored gateway
//! ships under a new prefix and can never overwrite objects of the history it was rebuilt
//! from — even where it continues the same offsets. A restore also leaves
//! `DATA_DIR/ship/parent.json`: the newest manifest of the history it came from (the next
//! manifest names it, so the manifest chain runs on across lineages) and the objects of that
//! history the restored log does not yet know are in central storage.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::manifest::{ManifestLink, SegmentEntry, SnapshotEntry};

/// The lineage file inside a data directory.
pub const LINEAGE_FILE_NAME: &str = "LINEAGE";
/// The shipper's folder inside a data directory.
pub const SHIP_DIR_NAME: &str = "ship";
/// The parent link a restore leaves, inside [`SHIP_DIR_NAME`].
pub const PARENT_FILE_NAME: &str = "parent.json";
/// Random bytes in a lineage id (printed as hex).
pub const LINEAGE_ID_BYTES: usize = 16;

/// Random bytes from the kernel; time and pid if it has none.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut out))
        .is_err()
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            ^ u128::from(std::process::id()) << 64;
        for (i, b) in out.iter_mut().enumerate() {
            *b = (nanos >> ((i % 16) * 8)) as u8;
        }
    }
    out
}

/// A new lineage id: 32 lowercase hex digits.
pub fn new_lineage_id() -> String {
    super::hex(&random_bytes::<LINEAGE_ID_BYTES>())
}

fn valid(id: &str) -> bool {
    id.len() == 2 * LINEAGE_ID_BYTES && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The data directory's lineage; creates one if it has none.
pub fn ensure(data_dir: &Path) -> io::Result<String> {
    match read(data_dir)? {
        Some(id) => Ok(id),
        None => {
            let id = new_lineage_id();
            write_durably(
                &data_dir.join(LINEAGE_FILE_NAME),
                format!("{id}\n").as_bytes(),
            )?;
            tracing::info!(lineage = %id, "created the data directory's lineage");
            Ok(id)
        }
    }
}

/// The data directory's lineage, if it has one.
pub fn read(data_dir: &Path) -> io::Result<Option<String>> {
    let path = data_dir.join(LINEAGE_FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if valid(id) {
                Ok(Some(id.to_string()))
            } else {
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} does not hold a lineage id ({} hex digits)",
                        path.display(),
                        2 * LINEAGE_ID_BYTES
                    ),
                ))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sets a new lineage (restore).
pub fn write_new(data_dir: &Path) -> io::Result<String> {
    let id = new_lineage_id();
    write_durably(
        &data_dir.join(LINEAGE_FILE_NAME),
        format!("{id}\n").as_bytes(),
    )?;
    Ok(id)
}

/// The history a restored data directory came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// The parent lineage.
    pub lineage: String,
    /// Its newest manifest, which the next manifest names as its previous one.
    pub manifest: ManifestLink,
    /// That manifest's sequence number.
    pub sequence: u64,
    /// Segments of the parent's chain the restored log has no `ShipConfirmed` for (their
    /// confirmations were in the unshipped tail): the shipper records them at start.
    pub unconfirmed_segments: Vec<SegmentEntry>,
    /// The same for the chain's newest snapshot.
    pub unconfirmed_snapshot: Option<SnapshotEntry>,
}

/// `DATA_DIR/ship/parent.json`.
pub fn parent_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SHIP_DIR_NAME).join(PARENT_FILE_NAME)
}

/// The parent link, if a restore left one.
pub fn read_parent(data_dir: &Path) -> io::Result<Option<ParentLink>> {
    let path = parent_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes the parent link durably.
pub fn write_parent(data_dir: &Path, link: &ParentLink) -> io::Result<()> {
    let dir = data_dir.join(SHIP_DIR_NAME);
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir)?;
        sync_dir(data_dir)?;
    }
    let bytes = serde_json::to_vec_pretty(link).map_err(io::Error::other)?;
    write_durably(&parent_path(data_dir), &bytes)
}

/// Temp file, fsync, rename, fsync the directory.
pub fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_data()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// fsyncs a directory, so a rename or create in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lineage_is_created_once_and_replaced_by_restore() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let a = ensure(dir.path()).unwrap();
        assert_eq!(ensure(dir.path()).unwrap(), a);
        let b = write_new(dir.path()).unwrap();
        assert_ne!(a, b);
        assert_eq!(read(dir.path()).unwrap(), Some(b));
        std::fs::write(dir.path().join(LINEAGE_FILE_NAME), "nonsense").unwrap();
        assert!(ensure(dir.path()).is_err());
    }
}
