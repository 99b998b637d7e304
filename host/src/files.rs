//! Reading a whole small file without trusting its size (a file on the gateway can be
//! damaged, or replaced by someone, like any input).

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
