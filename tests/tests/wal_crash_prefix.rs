//! Power loss at a random instant, simulated exactly: a model of the file system keeps the
//! bytes that were written apart from the bytes that were made durable (by `fdatasync` for
//! file data, by a directory `fsync` for names), fed by the log's I/O hook. At a random I/O
//! call the "power goes": that call and every later one fail. The disk that remains is
//! rebuilt from the model in three ways:
//! - `Durable`: only what was synced;
//! - `CutAtByte`: what was synced, plus the unsynced writes in order, cut at a random byte;
//! - `RandomSectors`: what was synced, plus a random subset of the unsynced 512-byte sectors.
//!
//! After recovery the log must be exactly a prefix of the written batches (in offset order)
//! that includes every acknowledged batch, with no partial batch and every byte intact.
//! With `Removal::Recycle`, a thread removes every sealed segment as soon as there is one
//! (as archiving does), so segment files are recycled while appends run: the log must then
//! hold that prefix from its oldest remaining segment on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gridlog_firmware::wal::{IoOp, Wal, WalOptions};
use proptest::prelude::*;

#[derive(Default, Clone)]
struct Inode {
    written: Vec<u8>,
    durable: Vec<u8>,
    /// Writes since the last sync, in order.
    unsynced: Vec<(u64, Vec<u8>)>,
}

#[derive(Default)]
struct Model {
    inodes: Vec<Inode>,
    names: HashMap<PathBuf, usize>,
    durable_names: HashMap<PathBuf, usize>,
    /// Directories the log created, and those whose entry a sync of the parent made durable.
    dirs: HashSet<PathBuf>,
    durable_dirs: HashSet<PathBuf>,
}

impl Model {
    fn apply(&mut self, op: &IoOp<'_>) {
        match *op {
            IoOp::Create { path } => {
                self.inodes.push(Inode::default());
                self.names.insert(path.to_path_buf(), self.inodes.len() - 1);
            }
            IoOp::Write { path, pos, data } => {
                let id = self.inode_of(path);
                let inode = &mut self.inodes[id];
                write_at(&mut inode.written, pos, data);
                inode.unsynced.push((pos, data.to_vec()));
            }
            IoOp::Allocate { path, len } => {
                // The size (zeros) reaches the disk with the next sync, like a write.
                let id = self.inode_of(path);
                let inode = &mut self.inodes[id];
                if (inode.written.len() as u64) < len {
                    let zeros = vec![0u8; len as usize - inode.written.len()];
                    let pos = inode.written.len() as u64;
                    write_at(&mut inode.written, pos, &zeros);
                    inode.unsynced.push((pos, zeros));
                }
            }
            IoOp::SyncData { path } => {
                let id = self.inode_of(path);
                let inode = &mut self.inodes[id];
                inode.durable = inode.written.clone();
                inode.unsynced.clear();
            }
            IoOp::Rename { from, to } => {
                // (A file from before the hook's time, such as a spare: durable as it is.)
                self.inode_of(from);
                let id = self.names.remove(from).expect("rename of a known file");
                self.names.insert(to.to_path_buf(), id);
            }
            IoOp::Remove { path } => {
                self.names.remove(path);
            }
            IoOp::CreateDir { path } => {
                self.dirs.insert(path.to_path_buf());
            }
            IoOp::SyncDir { path } => {
                for dir in &self.dirs {
                    if dir.parent() == Some(path) {
                        self.durable_dirs.insert(dir.clone());
                    }
                }
                self.durable_names.retain(|p, _| p.parent() != Some(path));
                for (p, id) in &self.names {
                    if p.parent() == Some(path) {
                        self.durable_names.insert(p.clone(), *id);
                    }
                }
            }
            _ => {}
        }
    }

    fn inode_of(&mut self, path: &Path) -> usize {
        if let Some(&id) = self.names.get(path) {
            return id;
        }
        // A file the model did not see created (opened by recovery before the hook's
        // time): its current content is durable.
        let content = std::fs::read(path).unwrap_or_default();
        self.inodes.push(Inode {
            written: content.clone(),
            durable: content,
            unsynced: vec![],
        });
        self.names.insert(path.to_path_buf(), self.inodes.len() - 1);
        self.durable_names
            .insert(path.to_path_buf(), self.inodes.len() - 1);
        self.inodes.len() - 1
    }
}

fn write_at(buf: &mut Vec<u8>, pos: u64, data: &[u8]) {
    let end = pos as usize + data.len();
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[pos as usize..end].copy_from_slice(data);
}

#[derive(Debug, Clone, Copy)]
enum CrashKind {
    Durable,
    CutAtByte(u64),
    RandomSectors(u64),
}

fn materialize(model: &Model, from: &Path, to: &Path, kind: CrashKind) {
    std::fs::create_dir_all(to.join("wal")).unwrap();
    for (path, &id) in &model.durable_names {
        // A file in a directory whose own entry never became durable is lost with it.
        let parent = path.parent().expect("a file in a directory");
        if model.dirs.contains(parent) && !model.durable_dirs.contains(parent) {
            continue;
        }
        let inode = &model.inodes[id];
        let mut content = inode.durable.clone();
        match kind {
            CrashKind::Durable => {}
            CrashKind::CutAtByte(seed) => {
                let total: usize = inode.unsynced.iter().map(|(_, d)| d.len()).sum();
                let mut budget = if total == 0 {
                    0
                } else {
                    (seed as usize) % (total + 1)
                };
                for (pos, data) in &inode.unsynced {
                    let n = budget.min(data.len());
                    write_at(&mut content, *pos, &data[..n]);
                    budget -= n;
                    if budget == 0 {
                        break;
                    }
                }
            }
            CrashKind::RandomSectors(seed) => {
                let mut rng = seed | 1;
                for (pos, data) in &inode.unsynced {
                    for (i, sector) in data.chunks(512).enumerate() {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        if rng % 2 == 0 {
                            write_at(&mut content, pos + (i * 512) as u64, sector);
                        }
                    }
                }
            }
        }
        let rel = path.strip_prefix(from).unwrap();
        std::fs::write(to.join(rel), content).unwrap();
    }
}

struct Outcome {
    /// first offset -> records, for every batch whose append returned (acked or not).
    batches: BTreeMap<u64, Vec<Vec<u8>>>,
    acked: Vec<u64>,
    /// Rotations into a recycled segment file before the crash.
    recycled_rotations: u64,
    /// Segments whose removal began held the records below this offset (1: none). (A
    /// removal that failed at the crash may still be on disk: another thread's directory
    /// sync can make its rename durable, as with an unlink.)
    removed_below: u64,
}

/// Whether sealed segments are removed (and so recycled) while the appenders run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    None,
    Recycle,
}

/// How the batches are appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Appenders {
    /// Threads that each hand a batch over (`append_nowait`) and wait on its ticket: the
    /// writer thread writes the rounds.
    Tickets(usize),
    /// One thread calling `Wal::append`: it finds the writer idle and writes and syncs its
    /// own rounds, rotations included.
    Leader,
}

impl Appenders {
    /// 0 stands for the leader, any other count for that many ticket threads.
    fn from_count(threads: usize) -> Appenders {
        match threads {
            0 => Appenders::Leader,
            n => Appenders::Tickets(n),
        }
    }
}

fn run_until_crash(
    dir: &Path,
    batches: &[Vec<Vec<u8>>],
    crash_at: usize,
    appenders: Appenders,
    removal: Removal,
) -> (Arc<Mutex<Model>>, Outcome) {
    let model = Arc::new(Mutex::new(Model::default()));
    let ops = Arc::new(AtomicUsize::new(0));
    let crashed = Arc::new(AtomicBool::new(false));
    let hook = {
        let (model, ops, crashed) = (model.clone(), ops.clone(), crashed.clone());
        Arc::new(move |op: &IoOp<'_>| -> io::Result<()> {
            let mut model = model.lock().unwrap();
            if crashed.load(Ordering::SeqCst) || ops.fetch_add(1, Ordering::SeqCst) >= crash_at {
                crashed.store(true, Ordering::SeqCst);
                return Err(io::Error::other("injected power loss"));
            }
            model.apply(op);
            Ok(())
        })
    };
    // Recycled segments of two pages: a round zeroes the rest of its page only (the
    // writer's last write of a round runs to the page's end), so the earlier use's bytes
    // stay in the second page while the first fills.
    let segment_bytes = match removal {
        Removal::Recycle => 8192,
        Removal::None => 4096,
    };
    let options = WalOptions::default()
        .segment_bytes(segment_bytes)
        .round_bytes(2048)
        .io_hook(hook);
    let wal = match Wal::open(dir, options) {
        Ok(wal) => wal,
        Err(_) => {
            return (
                model,
                Outcome {
                    batches: BTreeMap::new(),
                    acked: vec![],
                    recycled_rotations: 0,
                    removed_below: 1,
                },
            )
        }
    };
    let wal = &wal;
    let outcome = Mutex::new(Outcome {
        batches: BTreeMap::new(),
        acked: vec![],
        recycled_rotations: 0,
        removed_below: 1,
    });
    let removed_below = AtomicUsize::new(1);
    let appending = AtomicBool::new(true);
    std::thread::scope(|s| {
        if removal == Removal::Recycle {
            let (appending, removed_below) = (&appending, &removed_below);
            s.spawn(move || {
                while appending.load(Ordering::SeqCst) {
                    for (first, next) in wal.sealed_segments() {
                        removed_below.store(next as usize, Ordering::SeqCst);
                        if wal.remove_oldest_segment(first).is_err() {
                            return;
                        }
                    }
                    std::thread::yield_now();
                }
            });
        }
        if appenders == Appenders::Leader {
            let mut next = wal.next_offset();
            for batch in batches {
                // Its offsets are known before the call: one thread, nothing else in flight.
                outcome.lock().unwrap().batches.insert(next, batch.clone());
                match wal.append(batch) {
                    Ok(ack) => {
                        assert_eq!(ack.first_offset, next);
                        outcome.lock().unwrap().acked.push(next);
                        next = ack.next_offset;
                    }
                    Err(_) => break,
                }
            }
            let led = wal.stats().rounds_led;
            let acked = outcome.lock().unwrap().acked.len() as u64;
            assert!(
                led >= acked,
                "the appender wrote its own rounds: {led} < {acked}"
            );
        }
        let threads = match appenders {
            Appenders::Tickets(threads) => threads,
            Appenders::Leader => 0,
        };
        let appenders: Vec<_> = (0..threads)
            .map(|t| {
                let outcome = &outcome;
                s.spawn(move || {
                    for batch in batches.iter().skip(t).step_by(threads) {
                        let Ok(ticket) = wal.append_nowait(batch) else {
                            return;
                        };
                        let first = ticket.ack().first_offset;
                        outcome.lock().unwrap().batches.insert(first, batch.clone());
                        match ticket.wait() {
                            Ok(_) => outcome.lock().unwrap().acked.push(first),
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        for appender in appenders {
            appender.join().unwrap();
        }
        appending.store(false, Ordering::SeqCst);
    });
    let mut outcome = outcome.into_inner().unwrap();
    outcome.recycled_rotations = wal.stats().recycled_rotations;
    outcome.removed_below = removed_below.load(Ordering::SeqCst) as u64;
    (model, outcome)
}

fn check_recovered_prefix(dir: &Path, outcome: &Outcome) {
    let wal = Wal::open(dir, WalOptions::default().segment_bytes(4096))
        .unwrap_or_else(|e| panic!("recovery failed: {e}"));
    // Segments removed while the log ran (recycled) took the records before the oldest one.
    let oldest = wal.segments().first().map_or(1, |(first, _)| *first);
    assert!(
        oldest <= outcome.removed_below,
        "the log starts at {oldest}, but only the segments below {} were being removed",
        outcome.removed_below
    );
    let mut cursor = wal.read_from(oldest).unwrap();
    let mut recovered = Vec::new();
    while let Some(record) = cursor.next() {
        let record = record.expect("readable");
        recovered.push((record.offset, record.bytes.to_vec()));
    }
    // Expected: batches in offset order, each whole or not at all, a prefix (from the
    // oldest remaining segment on, which starts with a batch).
    let mut expected = Vec::new();
    let mut whole_batches = 0;
    for (&first, records) in &outcome.batches {
        if first + records.len() as u64 <= oldest {
            continue;
        }
        if expected.len() >= recovered.len() {
            break;
        }
        assert_eq!(
            first,
            oldest + expected.len() as u64,
            "batches are contiguous, and the oldest segment starts with one"
        );
        for (i, r) in records.iter().enumerate() {
            expected.push((first + i as u64, r.clone()));
        }
        whole_batches += 1;
    }
    assert_eq!(recovered.len(), expected.len(), "recovered {} records: not a whole number of batches ({whole_batches} batches = {} records)", recovered.len(), expected.len());
    assert_eq!(
        recovered, expected,
        "recovered records differ from what was written"
    );
    let next = oldest + recovered.len() as u64;
    for acked in &outcome.acked {
        assert!(
            *acked < next,
            "acknowledged batch at offset {acked} lost (recovered up to {next})"
        );
    }
    // The recovered log accepts new appends right after the prefix.
    assert_eq!(wal.append(&[b"after"]).unwrap().first_offset, next);
}

fn batches_strategy() -> impl Strategy<Value = Vec<Vec<Vec<u8>>>> {
    proptest::collection::vec(
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..200), 1..6),
        1..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn power_loss_keeps_exactly_an_acknowledged_prefix(
        batches in batches_strategy(),
        crash_at in 0usize..400,
        threads in 0usize..5,
        seed in any::<u64>(),
        kind in 0u8..3,
    ) {
        let appenders = Appenders::from_count(threads);
        crash_and_check(&batches, crash_at, appenders, Removal::None, crash_kind(kind, seed));
    }

    /// The same while sealed segments are removed as they appear, so that segment files are
    /// recycled (bytes of their earlier use after the log's end) while appends run.
    #[test]
    fn power_loss_while_segments_are_recycled_keeps_an_acknowledged_prefix(
        batches in batches_strategy(),
        crash_at in 0usize..600,
        threads in 0usize..4,
        seed in any::<u64>(),
        kind in 0u8..3,
    ) {
        let appenders = Appenders::from_count(threads);
        crash_and_check(&batches, crash_at, appenders, Removal::Recycle, crash_kind(kind, seed));
    }

    /// A crash during recovery itself (zeroing a torn tail) is also survived: recover once
    /// with a crash injected, then again without.
    #[test]
    fn power_loss_during_recovery_is_survived(
        batches in batches_strategy(),
        crash_at in 0usize..400,
        seed in any::<u64>(),
        recovery_crash_at in 0usize..20,
        recycle in any::<bool>(),
    ) {
        let before = tempfile::tempdir().unwrap();
        let removal = if recycle { Removal::Recycle } else { Removal::None };
        let (model, outcome) = run_until_crash(before.path(), &batches, crash_at, Appenders::Tickets(2), removal);
        let middle = tempfile::tempdir().unwrap();
        materialize(&model.lock().unwrap(), before.path(), middle.path(), CrashKind::CutAtByte(seed));
        let (model2, _) = run_until_crash(middle.path(), &[], recovery_crash_at, Appenders::Leader, Removal::None);
        let after = tempfile::tempdir().unwrap();
        // Carry over files recovery never touched, then the model's durable view of the rest.
        copy_dir(middle.path(), after.path());
        materialize(&model2.lock().unwrap(), middle.path(), after.path(), CrashKind::CutAtByte(seed >> 3));
        remove_undurable_names(&model2.lock().unwrap(), middle.path(), after.path());
        check_recovered_prefix(after.path(), &outcome);
    }
}

/// Runs the batches until the power goes at I/O call `crash_at`, rebuilds the disk as
/// `kind` says, and checks what recovery makes of it.
fn crash_and_check(
    batches: &[Vec<Vec<u8>>],
    crash_at: usize,
    appenders: Appenders,
    removal: Removal,
    kind: CrashKind,
) {
    let before = tempfile::tempdir().unwrap();
    let (model, outcome) = run_until_crash(before.path(), batches, crash_at, appenders, removal);
    let after = tempfile::tempdir().unwrap();
    materialize(&model.lock().unwrap(), before.path(), after.path(), kind);
    check_recovered_prefix(after.path(), &outcome);
}

/// The recycling runs do recycle, whoever writes the rounds: without a crash, removed
/// segments come back as later ones (and the log that results recovers whole).
#[test]
fn removing_segments_while_appending_recycles_them() {
    let batches: Vec<Vec<Vec<u8>>> = (0..200u8).map(|i| vec![vec![i; 150]; 3]).collect();
    for appenders in [Appenders::Tickets(2), Appenders::Leader] {
        let before = tempfile::tempdir().unwrap();
        let (model, outcome) = run_until_crash(
            before.path(),
            &batches,
            usize::MAX,
            appenders,
            Removal::Recycle,
        );
        assert!(
            outcome.recycled_rotations > 0,
            "{appenders:?}: no segment was recycled"
        );
        assert_eq!(outcome.acked.len(), batches.len(), "{appenders:?}");
        let after = tempfile::tempdir().unwrap();
        materialize(
            &model.lock().unwrap(),
            before.path(),
            after.path(),
            CrashKind::Durable,
        );
        check_recovered_prefix(after.path(), &outcome);
    }
}

fn crash_kind(kind: u8, seed: u64) -> CrashKind {
    match kind {
        0 => CrashKind::Durable,
        1 => CrashKind::CutAtByte(seed),
        _ => CrashKind::RandomSectors(seed),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("wal")).unwrap();
    for entry in std::fs::read_dir(from.join("wal")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join("wal").join(entry.file_name())).unwrap();
        }
    }
}

/// Files whose removal or rename was made durable in the model no longer exist after the
/// crash; files created but never made durable by a directory sync do not either.
fn remove_undurable_names(model: &Model, from: &Path, to: &Path) {
    for entry in std::fs::read_dir(to.join("wal")).unwrap() {
        let entry = entry.unwrap();
        let original = from.join("wal").join(entry.file_name());
        let known = model.names.contains_key(&original)
            || model.durable_names.contains_key(&original)
            || model_saw_removal(model, &original);
        if known && !model.durable_names.contains_key(&original) {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
}

fn model_saw_removal(model: &Model, path: &Path) -> bool {
    // A file the model opened (so it is in the inode table under that name at some point)
    // but which is in neither map has been removed or renamed away durably or not; we
    // treat it conservatively as still present, which is the worst case for recovery.
    let _ = (model, path);
    false
}
