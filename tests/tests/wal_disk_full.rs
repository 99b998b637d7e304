//! A really full disk: a small tmpfs is filled until the next segment cannot be
//! preallocated. Appends then wait (nothing is acknowledged that is not durable, nothing
//! is lost), the log says `disk_full`; when space is freed, writing resumes by itself, and
//! every acknowledged record is there after a reopen.
//!
//! Needs root to mount tmpfs (CI and developer machines of this project run as root); it
//! fails, not skips, when the mount is refused.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gridlog_firmware::wal::{Wal, WalOptions};
use gridlog_tests::tmpfs::Tmpfs;
use gridlog_tests::wait_until;

#[test]
fn a_full_disk_pauses_writes_and_loses_nothing() {
    let fs = Tmpfs::mount("8m");
    let data = fs.path().join("data");
    let options = || {
        WalOptions::default()
            .segment_bytes(512 * 1024)
            .round_bytes(16 * 1024)
    };
    let wal = Arc::new(Wal::open(&data, options()).unwrap());
    // Fill what is left but a little, so that two more segments fit and the third does not.
    let free = fs.free_bytes();
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![1u8; (free - 1_100 * 1024) as usize]).unwrap();

    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (wal, acked, stop) = (wal.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let record = format!("record {i:08} {}", "z".repeat(200));
                match wal.append(&[record.as_bytes()]) {
                    Ok(ack) => {
                        assert_eq!(ack.first_offset, i + 1);
                        acked.store(i + 1, Ordering::SeqCst);
                        i += 1;
                    }
                    Err(e) => panic!("append failed instead of waiting: {e}"),
                }
            }
        })
    };
    wait_until(
        "the disk to be reported full",
        Duration::from_secs(60),
        || wal.stats().disk_full,
    );
    let stalled_at = acked.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        acked.load(Ordering::SeqCst),
        stalled_at,
        "appends were acknowledged while the disk was full"
    );
    assert!(
        stalled_at > 1000,
        "expected the disk to fill after many records, got {stalled_at}"
    );

    // Space comes back: writing resumes by itself.
    std::fs::remove_file(&filler).unwrap();
    wait_until(
        "the full disk to be reported over",
        Duration::from_secs(30),
        || !wal.stats().disk_full,
    );
    wait_until("writes to resume", Duration::from_secs(30), || {
        acked.load(Ordering::SeqCst) > stalled_at + 100
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let total = acked.load(Ordering::SeqCst);
    drop(wal);

    let wal = Wal::open(&data, options()).unwrap();
    let mut cursor = wal.read_from(1).unwrap();
    let mut n = 0u64;
    while let Some(r) = cursor.next() {
        let r = r.unwrap();
        n += 1;
        assert_eq!(r.offset, n);
        assert!(r
            .bytes
            .starts_with(format!("record {:08} ", n - 1).as_bytes()));
    }
    assert!(n >= total, "acknowledged {total}, found {n}");
    drop(wal);
    assert!(gridlog_firmware::wal::verify(&data).unwrap().is_clean());
}
