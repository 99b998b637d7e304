//! The part of [crc-fast](https://crates.io/crates/crc-fast)'s API that object_store's S3
//! client uses, on the `crc` crate: see this crate's `Cargo.toml` for why it exists.

/// The CRC algorithms this stand-in computes: only the one object_store asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrcAlgorithm {
    /// CRC-64/NVME (the S3 `x-amz-checksum-crc64nvme` header).
    Crc64Nvme,
}

static CRC64_NVME: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_NVME);

/// A running checksum, as `crc_fast::Digest`.
#[derive(Clone)]
pub struct Digest {
    digest: crc::Digest<'static, u64>,
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Digest")
            .field("algorithm", &CrcAlgorithm::Crc64Nvme)
            .finish_non_exhaustive()
    }
}

impl Digest {
    /// A checksum of no bytes yet.
    pub fn new(algorithm: CrcAlgorithm) -> Self {
        match algorithm {
            CrcAlgorithm::Crc64Nvme => Digest {
                digest: CRC64_NVME.digest(),
            },
        }
    }

    /// Adds `data` to the checksum.
    pub fn update(&mut self, data: &[u8]) {
        self.digest.update(data);
    }

    /// The checksum of everything added so far (the digest stays usable, as crc-fast's).
    pub fn finalize(&self) -> u64 {
        self.digest.clone().finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_nvme_gives_the_catalogue_check_value_in_any_split() {
        // The check value of CRC-64/NVME (the CRC catalogue: the CRC of "123456789").
        let check = 0xae8b_1486_0a79_9888;
        let mut whole = Digest::new(CrcAlgorithm::Crc64Nvme);
        whole.update(b"123456789");
        assert_eq!(whole.finalize(), check);
        let mut parts = Digest::new(CrcAlgorithm::Crc64Nvme);
        for part in [&b"1234"[..], b"", b"56789"] {
            parts.update(part);
        }
        assert_eq!(parts.finalize(), check);
        assert_eq!(
            parts.finalize(),
            check,
            "finalize leaves the digest as it was"
        );
    }
}
