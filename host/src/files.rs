//! Reading a whole small file without trusting its size (a file on the gateway can be
//! damaged, or replaced by someone, like any input), and inflating the gzipped data
//! `build.rs` embeds in the binary.

use std::io::Read as _;
use std::path::Path;

/// At most the first `max_bytes + 1` bytes of the file: a result longer than `max_bytes`
/// means the file is larger than the caller accepts, found out without reading or
/// reserving more.
pub fn read_at_most(path: &Path, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Inflates gzip bytes that `build.rs` embedded in the binary (`what` names them). They are
/// part of the build and checked by its tests, so bytes that do not inflate, or inflate to
/// more than `max_bytes`, are a build mistake, not something a user can fix: it panics.
pub fn inflate_embedded(gz: &[u8], max_bytes: u64, what: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("embedded {what} does not inflate: {e}"));
    assert!(
        bytes.len() as u64 <= max_bytes,
        "embedded {what} inflates to more than {max_bytes} bytes: raise the bound"
    );
    bytes
}
