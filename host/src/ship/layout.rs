//! Where each object goes in central storage: deterministic keys, so a retry, a restart or a
//! second look at the store always names the same object.
//!
//! ```text
//! PREFIX/SITE_ID/LINEAGE/segments/FIRST-LAST.seg.zst   an archived segment (the local archive
//!                                                      file's bytes); FIRST and LAST are its
//!                                                      first and last offsets, 20 digits
//! PREFIX/SITE_ID/LINEAGE/chunks/FIRST-LAST.chunk       records FIRST..=LAST of the log, shipped
//!                                                      before their segment (see `chunk`)
//! PREFIX/SITE_ID/LINEAGE/snapshots/NEXT.snap           a snapshot (the local file's bytes);
//!                                                      NEXT = one past its last event
//! PREFIX/SITE_ID/LINEAGE/rollups/SEQ-SHA-PART.rlp      part PART (6 digits, from 0) of rollup
//!                                                      spill SEQ (20 digits) whose whole file
//!                                                      has SHA-256 SHA (64 hex digits); see
//!                                                      `shipper::rollups_round`
//! PREFIX/SITE_ID/LINEAGE/manifests/SEQUENCE.json       a manifest, written after every object
//!                                                      it lists; SEQUENCE counts on across
//!                                                      lineages (a restore continues it)
//! ```
//!
//! Zero-padded numbers make the store's lexicographic listing the offset order.

use gridlog_common::Offset;
use object_store::path::Path;

use super::Sha256;

/// Digits of every number in a key.
pub const KEY_NUMBER_DIGITS: usize = 20;
/// The folder of segments inside a lineage.
pub const SEGMENTS_DIR: &str = "segments";
/// The folder of chunks inside a lineage.
pub const CHUNKS_DIR: &str = "chunks";
/// The folder of snapshots inside a lineage.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// The folder of manifests inside a lineage.
pub const MANIFESTS_DIR: &str = "manifests";
/// The folder of rollup spill parts inside a lineage.
pub const ROLLUPS_DIR: &str = "rollups";
/// Digits of a rollup part's number in its key.
pub const PART_NUMBER_DIGITS: usize = 6;

/// The keys of one site's lineage under a store prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: Vec<String>,
    site: String,
    lineage: String,
}

/// What a key inside a lineage names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectName {
    /// A segment: first offset, next offset.
    Segment(Offset, Offset),
    /// A snapshot: next offset.
    Snapshot(Offset),
    /// A chunk: first offset, next offset.
    Chunk(Offset, Offset),
    /// A manifest: sequence number.
    Manifest(u64),
    /// A part of a rollup spill file: the spill's sequence number, the whole file's
    /// SHA-256 (so a spill number used again after a set-aside never names other bytes),
    /// the part's number.
    RollupPart(u64, Sha256, u32),
}

impl Layout {
    /// The layout of `site`'s `lineage` under `prefix` (`a/b`, or empty).
    pub fn new(prefix: &str, site: &str, lineage: &str) -> Layout {
        Layout {
            prefix: split(prefix),
            site: site.to_string(),
            lineage: lineage.to_string(),
        }
    }

    /// The site's id.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// The lineage's id.
    pub fn lineage(&self) -> &str {
        &self.lineage
    }

    /// The same site and prefix, another lineage.
    pub fn with_lineage(&self, lineage: &str) -> Layout {
        Layout {
            lineage: lineage.to_string(),
            ..self.clone()
        }
    }

    /// `PREFIX/SITE_ID`: the folder of the site's lineages.
    pub fn site_root(&self) -> Path {
        Path::from_iter(
            self.prefix
                .iter()
                .map(String::as_str)
                .chain([self.site.as_str()]),
        )
    }

    /// `PREFIX/SITE_ID/LINEAGE`.
    pub fn root(&self) -> Path {
        self.join(&[])
    }

    fn join(&self, rest: &[&str]) -> Path {
        Path::from_iter(
            self.prefix
                .iter()
                .map(String::as_str)
                .chain([self.site.as_str(), self.lineage.as_str()])
                .chain(rest.iter().copied()),
        )
    }

    /// The key of an object.
    pub fn key(&self, name: ObjectName) -> Path {
        match name {
            ObjectName::Segment(first, next) => self.join(&[
                SEGMENTS_DIR,
                &format!("{first:020}-{:020}.seg.zst", next.saturating_sub(1)),
            ]),
            ObjectName::Snapshot(next) => self.join(&[SNAPSHOTS_DIR, &format!("{next:020}.snap")]),
            ObjectName::Chunk(first, next) => self.join(&[
                CHUNKS_DIR,
                &format!("{first:020}-{:020}.chunk", next.saturating_sub(1)),
            ]),
            ObjectName::Manifest(seq) => self.join(&[MANIFESTS_DIR, &format!("{seq:020}.json")]),
            ObjectName::RollupPart(seq, sha, part) => {
                self.join(&[ROLLUPS_DIR, &format!("{seq:020}-{sha}-{part:06}.rlp")])
            }
        }
    }

    /// What a key of this lineage names, if it is one of ours.
    pub fn parse(&self, key: &Path) -> Option<ObjectName> {
        let root = self.root();
        let mut rest = key.prefix_match(&root)?;
        let folder = rest.next()?;
        let file = rest.next()?;
        if rest.next().is_some() {
            return None;
        }
        parse_name(folder.as_ref(), file.as_ref())
    }
}

fn parse_name(folder: &str, file: &str) -> Option<ObjectName> {
    let number = |digits: &str| {
        (digits.len() == KEY_NUMBER_DIGITS && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<u64>().ok())
            .flatten()
    };
    match folder {
        SEGMENTS_DIR => {
            let (first, last) = file.strip_suffix(".seg.zst")?.split_once('-')?;
            let (first, last) = (number(first)?, number(last)?);
            (first <= last).then(|| ObjectName::Segment(first, last + 1))
        }
        SNAPSHOTS_DIR => number(file.strip_suffix(".snap")?).map(ObjectName::Snapshot),
        CHUNKS_DIR => {
            let (first, last) = file.strip_suffix(".chunk")?.split_once('-')?;
            let (first, last) = (number(first)?, number(last)?);
            (first <= last).then(|| ObjectName::Chunk(first, last + 1))
        }
        MANIFESTS_DIR => number(file.strip_suffix(".json")?).map(ObjectName::Manifest),
        ROLLUPS_DIR => {
            let mut fields = file.strip_suffix(".rlp")?.split('-');
            let (seq, sha, part) = (fields.next()?, fields.next()?, fields.next()?);
            let part_ok =
                part.len() == PART_NUMBER_DIGITS && part.bytes().all(|b| b.is_ascii_digit());
            // Lower-case hex only: the key is made with it, so another spelling is not ours.
            let sha_ok = !sha.bytes().any(|b| b.is_ascii_uppercase());
            if fields.next().is_some() || !part_ok || !sha_ok {
                return None;
            }
            let sha = Sha256::from_hex(sha).ok()?;
            Some(ObjectName::RollupPart(
                number(seq)?,
                sha,
                part.parse().ok()?,
            ))
        }
        _ => None,
    }
}

/// Whether `key` (of any site and lineage) names a rollup part: its last two parts are
/// `rollups/SEQ-SHA-PART.rlp`.
pub fn is_rollup_part_key(key: &str) -> bool {
    let mut parts = key.rsplit('/');
    match (parts.next(), parts.next()) {
        (Some(file), Some(ROLLUPS_DIR)) => {
            matches!(
                parse_name(ROLLUPS_DIR, file),
                Some(ObjectName::RollupPart(..))
            )
        }
        _ => false,
    }
}

/// `a/b/` → `["a", "b"]`.
pub fn split(prefix: &str) -> Vec<String> {
    prefix
        .split('/')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_zero_padded_and_parse_back() {
        let l = Layout::new("fleet/eu/", "plant-7", "abc");
        let seg = l.key(ObjectName::Segment(1, 101));
        assert_eq!(
            seg.as_ref(),
            "fleet/eu/plant-7/abc/segments/00000000000000000001-00000000000000000100.seg.zst"
        );
        assert_eq!(l.parse(&seg), Some(ObjectName::Segment(1, 101)));
        let snap = l.key(ObjectName::Snapshot(77));
        assert_eq!(
            snap.as_ref(),
            "fleet/eu/plant-7/abc/snapshots/00000000000000000077.snap"
        );
        assert_eq!(l.parse(&snap), Some(ObjectName::Snapshot(77)));
        let chunk = l.key(ObjectName::Chunk(5, 9));
        assert_eq!(
            chunk.as_ref(),
            "fleet/eu/plant-7/abc/chunks/00000000000000000005-00000000000000000008.chunk"
        );
        assert_eq!(l.parse(&chunk), Some(ObjectName::Chunk(5, 9)));
        let man = l.key(ObjectName::Manifest(3));
        assert_eq!(l.parse(&man), Some(ObjectName::Manifest(3)));
        assert_eq!(l.with_lineage("other").parse(&man), None);
        assert_eq!(
            l.parse(&Path::from("fleet/eu/plant-7/abc/segments/x")),
            None
        );
        assert_eq!(Layout::new("", "s", "l").root().as_ref(), "s/l");
        let sha = Sha256::of(b"spill");
        let part = l.key(ObjectName::RollupPart(12, sha, 3));
        assert_eq!(
            part.as_ref(),
            format!("fleet/eu/plant-7/abc/rollups/00000000000000000012-{sha}-000003.rlp")
        );
        assert_eq!(l.parse(&part), Some(ObjectName::RollupPart(12, sha, 3)));
        let upper = part
            .as_ref()
            .replace(&sha.to_hex(), &sha.to_hex().to_uppercase());
        for other in [
            upper,
            format!("fleet/eu/plant-7/abc/rollups/00000000000000000012-{sha}-3.rlp"),
            format!("fleet/eu/plant-7/abc/rollups/12-{sha}-000003.rlp"),
            "fleet/eu/plant-7/abc/rollups/00000000000000000012-beef-000003.rlp".into(),
            format!("fleet/eu/plant-7/abc/rollups/00000000000000000012-{sha}-000003-1.rlp"),
        ] {
            assert_eq!(l.parse(&Path::from(other.as_str())), None, "{other}");
            assert!(!is_rollup_part_key(&other), "{other}");
        }
        assert!(is_rollup_part_key(part.as_ref()));
        assert!(!is_rollup_part_key(snap.as_ref()));
    }
}
