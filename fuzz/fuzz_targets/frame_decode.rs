//! Any bytes through the frame decoder, then the body decoder: neither may panic, and
//! whatever they accept must re-encode to exactly the bytes they read.
//!
//! The body decoder also gets the raw input directly, so the fuzzer explores batch and
//! footer and commit bodies without first having to forge a CRC.
#![no_main]

use gridlog_common::batch::{self, Body};
use gridlog_common::frame::{self, FRAME_BODY_AT};
use libfuzzer_sys::fuzz_target;

/// Re-encodes an accepted body as a whole frame through the log's own encoders.
fn reencode(body: &Body<'_>) -> Vec<u8> {
    match body {
        Body::Batch(view) => {
            let records: Vec<&[u8]> = view.records().map(|(_, r)| r).collect();
            assert_eq!(records.len() as u64, view.count());
            for (i, (offset, _)) in view.records().enumerate() {
                assert_eq!(offset, view.first_offset + i as u64);
            }
            let mut out = vec![0u8; batch::batch_frame_len(view.first_offset, &records)];
            batch::encode_batch_frame(&mut out, view.first_offset, &records)
                .expect("a decoded batch re-encodes");
            out
        }
        Body::Footer(footer) => {
            let mut out = vec![0u8; batch::footer_frame_len(footer)];
            batch::encode_footer_frame(&mut out, footer).expect("a decoded footer re-encodes");
            out
        }
        Body::Commit(commit) => {
            let mut out = vec![0u8; batch::commit_frame_len(commit.position)];
            batch::encode_commit_frame(&mut out, commit).expect("a decoded commit re-encodes");
            out
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The body decoder alone: canonical encodings only, so accepted bytes round-trip.
    if let Ok(body) = batch::decode_body(data) {
        assert_eq!(&reencode(&body)[FRAME_BODY_AT..], data);
    }

    let Ok(decoded) = frame::decode(data) else {
        return;
    };
    let len = decoded.encoded_len();
    assert!(len <= data.len());
    let original = &data[..len];

    // The frame envelope round-trips.
    let mut again = vec![0u8; len];
    assert_eq!(frame::encode(decoded.body, &mut again), Ok(len));
    assert_eq!(again, original);

    // So does a frame with a valid body.
    if let Ok(body) = batch::decode_body(decoded.body) {
        assert_eq!(reencode(&body), original);
    }
});
