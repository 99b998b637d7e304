//! The listener's certificate: `tls.cert_file` and `tls.key_file` read into a rustls
//! server configuration, and read again on SIGHUP.
//!
//! The crypto provider is ring's, named here ([`rustls::crypto::ring::default_provider`]),
//! never a process-wide default: which backend serves the gateway's keys does not depend
//! on what else the binary links. Each accepted connection takes the configuration in
//! force at that moment ([`Tls::current`]); a reload swaps it for connections accepted
//! afterwards and leaves open ones alone. A new pair that cannot be used (unreadable, not
//! PEM, a key that does not match the certificate) is refused with an error naming the
//! file and the problem, and the pair in force stays.
//!
//! The certificate's notAfter is read from its DER here (a walk of the few fields before
//! it, bounded by the bytes present) for `/api/v1/status` and `/metrics`, so an operator
//! sees an expiry coming without another parser in the binary.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// Largest certificate or key file read (a chain of a few certificates is ~10 KiB); a
/// larger one is refused before it is read into memory.
pub const PEM_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Why a certificate and key could not be put in force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is larger than [`PEM_FILE_BYTES_MAX`].
    #[error("{path} is larger than {max_bytes} bytes: not a certificate or key file")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        max_bytes: u64,
    },
    /// A file is not valid PEM, or holds no item of the kind needed.
    #[error("{path} holds no usable {what}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key (PKCS#8, RSA or SEC1)`.
        what: &'static str,
        /// What the PEM reader found.
        source: rustls_pki_types::pem::Error,
    },
    /// rustls refused the pair (a key that does not match the certificate, an unsupported
    /// key type).
    #[error("the key in {key_file} cannot serve the certificate in {cert_file}: {source}")]
    Refused {
        /// The certificate file.
        cert_file: PathBuf,
        /// The key file.
        key_file: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// A pair in force: the configuration connections use, and what status reports of it.
#[derive(Debug)]
pub struct Loaded {
    /// What new connections are served with.
    pub config: Arc<ServerConfig>,
    /// The end-entity certificate's notAfter, seconds since the Unix epoch, if it could be
    /// read.
    pub not_after_unix_s: Option<i64>,
}

/// The listener's certificate, reloadable.
#[derive(Debug)]
pub struct Tls {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<Loaded>>,
}

impl Tls {
    /// Reads the pair `config` names; `None` when TLS is off.
    pub fn load(config: &TlsConfig) -> Result<Option<Tls>, TlsError> {
        if !config.enabled() {
            return Ok(None);
        }
        let loaded = load_pair(&config.cert_file, &config.key_file)?;
        Ok(Some(Tls {
            cert_file: config.cert_file.clone(),
            key_file: config.key_file.clone(),
            current: RwLock::new(Arc::new(loaded)),
        }))
    }

    /// The pair in force now.
    pub fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the files again; on success the new pair serves every connection accepted
    /// from now on, on failure the pair in force stays and the error says why.
    pub fn reload(&self) -> Result<Arc<Loaded>, TlsError> {
        let loaded = Arc::new(load_pair(&self.cert_file, &self.key_file)?);
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = loaded.clone();
        Ok(loaded)
    }

    /// The certificate file.
    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }
}

/// Reads and checks a pair: a chain in `cert_file` (end entity first), a key in `key_file`.
pub fn load_pair(cert_file: &Path, key_file: &Path) -> Result<Loaded, TlsError> {
    let cert_pem = read_bounded(cert_file)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .and_then(|chain| {
            if chain.is_empty() {
                Err(rustls_pki_types::pem::Error::NoItemsFound)
            } else {
                Ok(chain)
            }
        })
        .map_err(|source| TlsError::Pem {
            path: cert_file.into(),
            what: "certificate",
            source,
        })?;
    let key = PrivateKeyDer::from_pem_slice(&read_bounded(key_file)?).map_err(|source| {
        TlsError::Pem {
            path: key_file.into(),
            what: "private key (PKCS#8, RSA or SEC1)",
            source,
        }
    })?;
    let not_after_unix_s = not_after_unix_s(&chain[0]);
    let refused = |source| TlsError::Refused {
        cert_file: cert_file.into(),
        key_file: key_file.into(),
        source,
    };
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(refused)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(refused)?;
    // The server speaks HTTP/1.1 only; saying so lets a client that offers h2 fall back.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        not_after_unix_s,
    })
}

/// The file's bytes, refused past [`PEM_FILE_BYTES_MAX`] before they are read.
fn read_bounded(path: &Path) -> Result<Vec<u8>, TlsError> {
    let bytes =
        crate::files::read_at_most(path, PEM_FILE_BYTES_MAX).map_err(|source| TlsError::Read {
            path: path.into(),
            source,
        })?;
    if bytes.len() as u64 > PEM_FILE_BYTES_MAX {
        return Err(TlsError::TooLarge {
            path: path.into(),
            max_bytes: PEM_FILE_BYTES_MAX,
        });
    }
    Ok(bytes)
}

/// One DER element: (tag, contents, what follows it), or `None` if the bytes are short
/// or the length takes more than four bytes.
fn der_element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The notAfter of an X.509 certificate (RFC 5280 §4.1): Certificate → tbsCertificate →
/// [0] version (optional), serialNumber, signature, issuer, validity → notAfter.
pub fn not_after_unix_s(certificate: &[u8]) -> Option<i64> {
    const SEQUENCE: u8 = 0x30;
    const VERSION: u8 = 0xa0;
    let (SEQUENCE, certificate, _) = der_element(certificate)? else {
        return None;
    };
    let (SEQUENCE, mut tbs, _) = der_element(certificate)? else {
        return None;
    };
    if tbs.first() == Some(&VERSION) {
        tbs = der_element(tbs)?.2;
    }
    for _serial_signature_issuer in 0..3 {
        tbs = der_element(tbs)?.2;
    }
    let (SEQUENCE, validity, _) = der_element(tbs)? else {
        return None;
    };
    let after_not_before = der_element(validity)?.2;
    let (tag, time, _) = der_element(after_not_before)?;
    asn1_time_unix_s(tag, time)
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as
/// seconds since the Unix epoch.
fn asn1_time_unix_s(tag: u8, text: &[u8]) -> Option<i64> {
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        UTC_TIME if text.len() == 12 => {
            let yy: i32 = text[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        GENERALIZED_TIME if text.len() == 14 => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |at: usize| rest.get(at..at + 2)?.parse::<u8>().ok();
    let month = time::Month::try_from(field(0)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, field(2)?).ok()?;
    let clock = time::Time::from_hms(field(4)?, field(6)?, field(8)?).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, clock)
            .assume_utc()
            .unix_timestamp(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str, days: u32) -> (PathBuf, PathBuf) {
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        crate::commands::tls_selfsigned::write_pair(
            &cert,
            &key,
            &["localhost".into()],
            days,
            false,
        )
        .unwrap();
        (cert, key)
    }

    #[test]
    fn a_pair_loads_with_its_not_after_and_a_bad_one_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a", 30);
        let loaded = load_pair(&cert, &key).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let not_after = loaded.not_after_unix_s.unwrap();
        assert!(
            (29 * 86_400..=31 * 86_400).contains(&(not_after - now)),
            "{not_after}"
        );

        let (_, other_key) = pair(dir.path(), "b", 30);
        match load_pair(&cert, &other_key) {
            Err(e @ TlsError::Refused { .. }) => {
                assert!(e.to_string().contains("b.key"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        match load_pair(&key, &key) {
            Err(e @ TlsError::Pem { .. }) => assert!(e.to_string().contains("a.key"), "{e}"),
            other => panic!("{other:?}"),
        }
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            load_pair(&missing, &key),
            Err(TlsError::Read { .. })
        ));
    }

    #[test]
    fn a_reload_that_fails_keeps_the_pair_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a", 30);
        let config = TlsConfig {
            cert_file: cert.clone(),
            key_file: key.clone(),
            ..TlsConfig::default()
        };
        let tls = Tls::load(&config).unwrap().unwrap();
        let before = tls.current();
        std::fs::write(&key, "not a key").unwrap();
        assert!(tls.reload().is_err());
        assert!(Arc::ptr_eq(&before, &tls.current()));
        std::fs::remove_file(&cert).unwrap();
        std::fs::remove_file(&key).unwrap();
        pair(dir.path(), "a", 60);
        tls.reload().unwrap();
        assert!(!Arc::ptr_eq(&before, &tls.current()));
        assert!(tls.current().not_after_unix_s > before.not_after_unix_s);
    }

    #[test]
    fn both_asn1_time_forms_are_read() {
        assert_eq!(asn1_time_unix_s(0x17, b"700101000000Z"), Some(0));
        assert_eq!(
            asn1_time_unix_s(0x17, b"490101000000Z"),
            Some(2_493_072_000)
        );
        assert_eq!(
            asn1_time_unix_s(0x18, b"20500101000000Z"),
            Some(2_524_608_000)
        );
        assert_eq!(asn1_time_unix_s(0x18, b"2050010100000Z"), None);
        assert_eq!(asn1_time_unix_s(0x17, b"701301000000Z"), None);
        assert_eq!(not_after_unix_s(&[0x30, 0x82, 0xff]), None);
    }
}
