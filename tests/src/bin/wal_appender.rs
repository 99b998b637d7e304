//! Test child for the kill tests: appends to a log from many threads and prints every
//! acknowledged batch as `A <first offset> <records> <run> <thread> <seq>` — or, in `hold`
//! mode, opens the log, prints `READY` and waits to be killed.
//!
//! Usage: `wal-appender append DIR RUN THREADS SEGMENT_BYTES` | `wal-appender hold DIR`

use std::io::Write;
use std::path::PathBuf;

use gridlog_firmware::wal::{Wal, WalOptions};

/// The record a (run, thread, seq, index) writes: self-describing, so any record found in the
/// log can be checked for integrity on its own.
pub fn record(run: u32, thread: u32, seq: u64, index: u32) -> Vec<u8> {
    let mut r = Vec::with_capacity(32);
    r.extend_from_slice(&run.to_le_bytes());
    r.extend_from_slice(&thread.to_le_bytes());
    r.extend_from_slice(&seq.to_le_bytes());
    r.extend_from_slice(&index.to_le_bytes());
    let check = (u64::from(run) << 40)
        ^ (u64::from(thread) << 20)
        ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ u64::from(index);
    r.extend_from_slice(&check.to_le_bytes());
    // Variable length padding, so frames have many sizes.
    r.resize(24 + (seq % 40) as usize, (seq % 251) as u8);
    r
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(&args[2]);
    match args[1].as_str() {
        "hold" => {
            let _wal = Wal::open(&dir, WalOptions::default().segment_bytes(65536)).expect("open");
            println!("READY");
            std::io::stdout().flush().unwrap();
            loop {
                std::thread::sleep(std::time::Duration::from_secs(60));
            }
        }
        "append" => {
            let run: u32 = args[3].parse().unwrap();
            let threads: u32 = args[4].parse().unwrap();
            let segment_bytes: u64 = args[5].parse().unwrap();
            let wal =
                Wal::open(&dir, WalOptions::default().segment_bytes(segment_bytes)).expect("open");
            println!("READY");
            std::thread::scope(|s| {
                for thread in 0..threads {
                    let wal = &wal;
                    s.spawn(move || {
                        for seq in 0u64.. {
                            let count = (seq % 3 + 1) as u32;
                            let records: Vec<Vec<u8>> =
                                (0..count).map(|i| record(run, thread, seq, i)).collect();
                            let ack = wal.append(&records).expect("append");
                            let mut out = std::io::stdout().lock();
                            writeln!(out, "A {} {count} {run} {thread} {seq}", ack.first_offset)
                                .unwrap();
                            out.flush().unwrap();
                        }
                    });
                }
            });
        }
        other => panic!("unknown mode {other}"),
    }
}
