//! A segment's records, frame by frame, for readers outside the engine (the fleet tables):
//! from its bytes in memory ([`for_each_record`]) or from an archive file decompressed as it
//! is read ([`for_each_record_in_file`]). One walk serves both: it holds about one frame
//! (the bytes behind its position are dropped past [`STREAM_COMPACT_BYTES`]), so a streamed
//! archive costs the decoder's window and a frame, whatever the segment's size.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use gridlog_common::archive::{ArchiveHeader, ARCHIVE_HEADER_BYTES};
use gridlog_common::frame::{FrameError, FRAME_HEADER_BYTES};
use gridlog_common::segment::SEGMENT_HEADER_BYTES;
use gridlog_common::Offset;
use sha2::{Digest, Sha256};

use super::{damaged, ArchiveError, ArchiveInvalid, ARCHIVE_ORIGINAL_BYTES_MAX};
use crate::wal::segment::{frame_at, FrameAt};

/// Bytes the walk keeps behind its position before it drops them.
const STREAM_COMPACT_BYTES: usize = 1 << 20;
/// Bytes read from the source at a time.
const STREAM_READ_BYTES: usize = 64 * 1024;

/// What is wrong inside a segment (its checksums held, so only a writer's bug or a forged
/// archive can cause this).
#[derive(Debug, thiserror::Error)]
#[error("segment byte {position}: {reason}")]
pub struct SegmentRecordsInvalid {
    /// Byte position in the segment.
    pub position: u64,
    /// What is wrong there.
    pub reason: String,
}

/// Why a walk over a segment's frames stopped.
#[derive(Debug)]
enum WalkError {
    Io(io::Error),
    Invalid(SegmentRecordsInvalid),
}

/// Calls `f` with every record of `original` (a segment's bytes, as `verify_bytes`
/// returns them, or an open segment's) in offset order, from `first_offset`; returns one
/// past the last offset. Frame offsets must run on without a gap from `first_offset`.
pub fn for_each_record(
    original: &[u8],
    first_offset: Offset,
    mut f: impl FnMut(Offset, &[u8]),
) -> Result<Offset, SegmentRecordsInvalid> {
    let mut bytes = original;
    walk(&mut bytes, first_offset, false, &mut f).map_err(|e| match e {
        WalkError::Invalid(invalid) => invalid,
        // Reading from a slice cannot fail.
        WalkError::Io(e) => SegmentRecordsInvalid {
            position: 0,
            reason: e.to_string(),
        },
    })
}

/// [`for_each_record`] over an archive file, decompressed as it is read. Checks the header
/// first and, at the end, the decompressed length, CRC-32 and SHA-256 against it, so damage
/// anywhere is an error; `f` may have seen records before damage was found (act on them only
/// on success). An archived segment is sealed: one without its footer is damaged. Returns
/// the header and one past the last offset.
pub fn for_each_record_in_file(
    path: &Path,
    mut f: impl FnMut(Offset, &[u8]),
) -> Result<(ArchiveHeader, Offset), ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let header = read_header(&mut file, path)?;
    if header.original_bytes > ARCHIVE_ORIGINAL_BYTES_MAX {
        let too_large = ArchiveInvalid::TooLarge {
            claimed: header.original_bytes,
        };
        return Err(damaged(path, 0, too_large.to_string()));
    }
    let decoder = zstd::stream::read::Decoder::new(file).map_err(io_err)?;
    let mut stream = Hashed {
        inner: decoder.take(header.original_bytes + 1),
        crc: crc32fast::Hasher::new(),
        sha: Sha256::new(),
        bytes: 0,
    };
    let next = walk(&mut stream, header.first_offset, true, &mut f).map_err(|e| match e {
        WalkError::Io(e) => io_err(e),
        WalkError::Invalid(i) => damaged(path, i.position, i.to_string()),
    })?;
    io::copy(&mut stream, &mut io::sink()).map_err(io_err)?;
    let checksums_hold = stream.bytes == header.original_bytes
        && stream.crc.finalize() == header.original_crc32
        && <[u8; 32]>::from(stream.sha.finalize()) == header.sha256;
    if !checksums_hold {
        let position = ARCHIVE_HEADER_BYTES as u64;
        return Err(damaged(
            path,
            position,
            ArchiveInvalid::Checksum.to_string(),
        ));
    }
    Ok((header, next))
}

/// The header at the start of the archive file `file` (at `path`).
pub fn read_header(file: &mut File, path: &Path) -> Result<ArchiveHeader, ArchiveError> {
    let mut head = [0u8; ARCHIVE_HEADER_BYTES];
    file.read_exact(&mut head)
        .map_err(|source| ArchiveError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    ArchiveHeader::decode(&head).map_err(|e| damaged(path, 0, e.to_string()))
}

/// The frames of a segment read from `stream`, each batch's records passed to `f`; one past
/// the last offset. Stops at the footer, or where the written data ends unless
/// `footer_required`.
fn walk(
    stream: &mut impl Read,
    first_offset: Offset,
    footer_required: bool,
    f: &mut impl FnMut(Offset, &[u8]),
) -> Result<Offset, WalkError> {
    let (mut buf, mut pos, mut dropped) = (Vec::new(), SEGMENT_HEADER_BYTES, 0u64);
    let invalid = |at: u64, reason: String| {
        WalkError::Invalid(SegmentRecordsInvalid {
            position: at,
            reason,
        })
    };
    fill(stream, &mut buf, SEGMENT_HEADER_BYTES).map_err(WalkError::Io)?;
    let mut expected = first_offset;
    loop {
        if pos >= STREAM_COMPACT_BYTES {
            buf.drain(..pos);
            dropped += pos as u64;
            pos = 0;
        }
        whole_frame(stream, &mut buf, pos).map_err(WalkError::Io)?;
        match frame_at(&buf, pos) {
            FrameAt::Batch { view, len } => {
                if view.first_offset != expected {
                    let reason = "frame offsets are not continuous".to_string();
                    return Err(invalid(dropped + pos as u64, reason));
                }
                expected = view.next_offset();
                view.records()
                    .for_each(|(offset, record)| f(offset, record));
                pos += len;
            }
            FrameAt::Commit { len, .. } => pos += len,
            FrameAt::Footer { .. } => return Ok(expected),
            FrameAt::End if !footer_required => return Ok(expected),
            FrameAt::End => {
                let reason = "the segment ends without its footer".to_string();
                return Err(invalid(dropped + pos as u64, reason));
            }
            FrameAt::Invalid(reason) => return Err(invalid(dropped + pos as u64, reason)),
        }
    }
}

/// Reads until `buf` holds the whole frame at `pos` (or the source ends): its header first
/// (a partial header of zero bytes would read as the end of the data), then its body.
fn whole_frame(stream: &mut impl Read, buf: &mut Vec<u8>, pos: usize) -> io::Result<()> {
    fill(stream, buf, pos + FRAME_HEADER_BYTES)?;
    while let Err(FrameError::Truncated { needed, .. }) = gridlog_common::frame::decode(&buf[pos..])
    {
        if !fill(stream, buf, pos + needed)? {
            break;
        }
    }
    Ok(())
}

/// Reads until `buf` holds `len` bytes; false if the stream ended first.
fn fill(stream: &mut impl Read, buf: &mut Vec<u8>, len: usize) -> io::Result<bool> {
    while buf.len() < len {
        let have = buf.len();
        buf.resize(have + STREAM_READ_BYTES.max(len - have), 0);
        let n = stream.read(&mut buf[have..])?;
        buf.truncate(have + n);
        if n == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A reader that hashes what passes through it.
struct Hashed<R> {
    inner: R,
    crc: crc32fast::Hasher,
    sha: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        self.crc.update(&out[..n]);
        self.sha.update(&out[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{Wal, WalOptions};

    /// Hands out at most 1, 2, … 7 bytes per read, in turn: frame headers land across reads
    /// at every position.
    struct Trickle<'a> {
        bytes: &'a [u8],
        turn: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.turn += 1;
            let n = (self.turn % 7 + 1).min(out.len()).min(self.bytes.len());
            out[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_segment_read_a_few_bytes_at_a_time_gives_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), WalOptions::default().segment_bytes(16 * 1024)).unwrap();
        // Records of many sizes, so frame lengths with a zero low byte occur too.
        let pending: Vec<_> = (0..40usize)
            .map(|i| {
                let batch: Vec<Vec<u8>> = (0..10 + i % 23)
                    .map(|j| vec![(i + j) as u8; 1 + (i * 37 + j * 11) % 300])
                    .collect();
                wal.append_nowait(&batch).unwrap()
            })
            .collect();
        for p in pending {
            p.wait().unwrap();
        }
        let sealed = wal.sealed_segments();
        assert!(sealed.len() >= 3, "{sealed:?}");
        for (first, next) in sealed {
            let bytes = wal.sealed_segment(first).unwrap().to_vec();
            let mut whole = Vec::new();
            let end = for_each_record(&bytes, first, |o, r| whole.push((o, r.to_vec()))).unwrap();
            assert_eq!(end, next);
            let mut streamed = Vec::new();
            let mut trickle = Trickle {
                bytes: &bytes,
                turn: 0,
            };
            let end = walk(&mut trickle, first, true, &mut |o, r| {
                streamed.push((o, r.to_vec()))
            })
            .unwrap();
            assert_eq!((end, &streamed), (next, &whole));
            // Without its footer, the segment is refused.
            let footer_at = bytes.len() - 1;
            let cut = &bytes[..footer_at.min(bytes.len())];
            let mut trickle = Trickle {
                bytes: cut,
                turn: 0,
            };
            assert!(walk(&mut trickle, first, true, &mut |_, _| {}).is_err());
        }
        wal.close().unwrap();
    }
}
