//! The image digest's hash. Depends on nothing: the image, the rollups and the state
//! types feed it, so it sits below all of them.

/// The image digest's hash: 64-bit words mixed by multiply, rotate and xor (bytes taken
/// eight at a time, little-endian), with a final avalanche. Small, fixed, dependency-free,
/// and fast enough to digest 10,000 meters with their rollups in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct DigestHasher(u64);

impl Default for DigestHasher {
    fn default() -> Self {
        DigestHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl DigestHasher {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    fn word(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(Self::K).rotate_left(29);
    }
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        // The length keeps "ab" + "" apart from "a" + "b".
        self.word(u64::from_le_bytes(last) ^ ((bytes.len() as u64) << 56));
    }
    pub(crate) fn write_u64(&mut self, v: u64) {
        self.word(v);
    }
    pub(crate) fn write_i64(&mut self, v: i64) {
        self.word(v as u64);
    }
    pub(crate) fn write_f64(&mut self, v: f64) {
        self.word(v.to_bits());
    }
    pub(crate) fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}
