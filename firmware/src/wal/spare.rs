//! Recycling: a segment the archive no longer needs, and no reader maps, is kept as
//! `wal/spare.tmp` ([`recycle`]) and becomes a later segment ([`prepare_segment_file`]), with
//! a new header carrying [`FLAG_RECYCLED`](gridlog_common::segment::FLAG_RECYCLED). Its blocks
//! are written already, so a round's `fdatasync` writes the round and nothing else (no
//! block-allocation journal commit), and nothing is written twice. How readers tell the
//! earlier use's bytes from the log's is `segment::classify_tail`'s job.

use std::fs::File;
use std::io;
use std::path::Path;

use super::io::Io;
use super::segment::{preallocate, Preallocation};

/// Name of a removed segment kept for reuse as a later segment (at most one).
pub(crate) const SPARE_FILE_NAME: &str = "spare.tmp";

/// A file ready to become the next segment.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) file: File,
    /// A recycled segment file: bytes of its earlier use follow whatever is written.
    pub(crate) recycled: bool,
}

/// Keeps the removed segment at `path` (mapped by no one any more) as the spare, if there is
/// none yet and it has the size new segments get: renames it and syncs the directory.
/// Returns whether it did; if not, the caller removes the file.
///
/// A crash before the directory sync leaves the segment under its old name (an archived
/// segment still in the hot log, as after an unlink that did not reach the disk) or the
/// spare; both are fine.
pub(crate) fn recycle(io: &Io, path: &Path, segment_bytes: u64) -> io::Result<bool> {
    let Some(dir) = path.parent() else {
        return Ok(false);
    };
    let spare = dir.join(SPARE_FILE_NAME);
    if spare.exists() || std::fs::metadata(path)?.len() != segment_bytes {
        return Ok(false);
    }
    io.rename(path, &spare)?;
    io.sync_dir(dir)?;
    Ok(true)
}

/// Lets the page cache drop the file's cached pages from `from` on (clean pages of a recycled
/// file's earlier use, read ahead in large folios by the archiver or a scan). A round that
/// then dirties part of one would have the whole folio written back — tens of KiB of flash
/// for a few hundred bytes; without them, a round dirties 4 KiB pages only. Advice only:
/// an error changes nothing but that.
pub(crate) fn forget_cached_pages(file: &File, from: u64) {
    let _ = rustix::fs::fadvise(file, from, None, rustix::fs::Advice::DontNeed);
}

/// Takes the spare beside `path` as `path` if there is one of `segment_bytes`; a spare of
/// another size (the setting changed) is removed.
fn take_spare(io: &Io, path: &Path, segment_bytes: u64) -> io::Result<Option<File>> {
    let spare = path.with_file_name(SPARE_FILE_NAME);
    let Ok(meta) = std::fs::metadata(&spare) else {
        return Ok(None);
    };
    if meta.len() != segment_bytes || !meta.is_file() {
        io.remove(&spare)?;
        return Ok(None);
    }
    io.rename(&spare, path)?;
    // Durable before anything is written into it: were the spare's own rename (from its
    // segment's name, see [`recycle`]) not on disk yet, a crash after the new header's
    // sync would leave that header under the old segment's name.
    if let Some(dir) = path.parent() {
        io.sync_dir(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    forget_cached_pages(&file, 0);
    Ok(Some(file))
}

/// [`preallocate`](super::segment::preallocate), but taking the spare (a recycled segment, see [`recycle`]) if there is
/// one: its blocks are written already, so it needs neither allocation nor zeros.
pub(crate) fn prepare_segment_file(
    io: &Io,
    path: &Path,
    segment_bytes: u64,
    how: Preallocation,
) -> io::Result<Prepared> {
    if let Some(file) = take_spare(io, path, segment_bytes)? {
        return Ok(Prepared {
            file,
            recycled: true,
        });
    }
    Ok(Prepared {
        file: preallocate(io, path, segment_bytes, how)?,
        recycled: false,
    })
}
