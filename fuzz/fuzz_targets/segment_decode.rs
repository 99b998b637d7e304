//! Any bytes as a segment file: the header decoder on the first 64 bytes, then the frames
//! after them, as recovery and verify walk a segment. Nothing may panic, every accepted
//! header must re-encode to its bytes, and the walk must always move forward.
#![no_main]

use gridlog_common::batch::{self, Body};
use gridlog_common::frame;
use gridlog_common::segment::{SegmentHeader, SEGMENT_HEADER_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (head, rest) = data.split_at(data.len().min(SEGMENT_HEADER_BYTES));
    if let Ok(header) = SegmentHeader::decode(head) {
        assert_eq!(&header.encode()[..], head);
    }
    // Walk the frames as a reader does (the header's verdict aside, so the fuzzer explores
    // frames without first having to forge a header CRC).
    let mut pos = 0usize;
    let mut next_offset: Option<u64> = None;
    while pos < rest.len() {
        let Ok(decoded) = frame::decode(&rest[pos..]) else {
            break;
        };
        let len = decoded.encoded_len();
        assert!(len > frame::FRAME_HEADER_BYTES, "a frame has a body");
        match batch::decode_body(decoded.body) {
            Ok(Body::Batch(view)) => {
                assert!(view.count() >= 1);
                assert!(view.next_offset() > view.first_offset);
                if next_offset.is_some_and(|n| n != view.first_offset) {
                    break; // a gap: where a reader reports damage
                }
                next_offset = Some(view.next_offset());
            }
            // A round's end: its salt and position are the reader's to check.
            Ok(Body::Commit(_)) => {}
            Ok(Body::Footer(_)) | Err(_) => break,
        }
        pos += len;
    }
    assert!(pos <= rest.len());
});
