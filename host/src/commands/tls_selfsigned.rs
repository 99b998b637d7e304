//! `gridlog tls-selfsigned`: a self-signed certificate and key for the HTTPS listener.
//!
//! The key is ECDSA P-256 (rcgen on ring), written as PKCS#8 PEM with mode 0600; the
//! certificate names every DNS name or IP address asked for (default: `localhost`,
//! `127.0.0.1`, `::1` and this host's name). Neither file is written if either exists,
//! unless `--force`, so a pair in use is never half replaced by accident.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::Outcome;
use crate::cli::TlsSelfSignedArgs;

/// Days a certificate is valid by default: 825, the longest that browsers accept for a
/// certificate a person chose to trust.
pub const DAYS_DEFAULT: u32 = 825;

/// The longest validity `--days` accepts (ten years).
pub const DAYS_MAX: u32 = 3650;

/// The mode of the key file: readable by its owner only.
pub const KEY_FILE_MODE: u32 = 0o600;

/// The mode of the certificate file (public).
pub const CERT_FILE_MODE: u32 = 0o644;

/// Why a pair could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SelfSignedError {
    /// A file is there already and `--force` was not given.
    #[error("{path} exists; pass --force to replace it")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A name is neither an IP address nor a valid DNS name.
    #[error("{name:?} is not a DNS name or an IP address: {source}")]
    BadName {
        /// The name.
        name: String,
        /// What rcgen found wrong.
        source: rcgen::Error,
    },
    /// The key or certificate could not be made.
    #[error("cannot make the certificate: {0}")]
    Generate(#[source] rcgen::Error),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Runs the command: 0 written, 2 not.
pub fn run(args: &TlsSelfSignedArgs) -> Outcome {
    let names = if args.names.is_empty() {
        default_names()
    } else {
        args.names.clone()
    };
    match write_pair(&args.cert, &args.key, &names, args.days, args.force) {
        Ok(()) => {
            println!(
                "wrote {} and {} for {}, valid {} days",
                args.cert.display(),
                args.key.display(),
                names.join(", "),
                args.days
            );
            Outcome::Clean
        }
        Err(e) => {
            eprintln!("gridlog tls-selfsigned: {e}");
            Outcome::Failed
        }
    }
}

/// `localhost`, the loopback addresses and this host's name (if it has one).
pub fn default_names() -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    if let Some(host) = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty() && !names.contains(h))
    {
        names.push(host);
    }
    names
}

/// Makes a self-signed pair for `names`, valid `days` from now, and writes it.
pub fn write_pair(
    cert: &Path,
    key: &Path,
    names: &[String],
    days: u32,
    force: bool,
) -> Result<(), SelfSignedError> {
    if !force {
        if let Some(path) = [cert, key].into_iter().find(|p| p.exists()) {
            return Err(SelfSignedError::Exists { path: path.into() });
        }
    }
    for name in names {
        rcgen::CertificateParams::new(vec![name.clone()]).map_err(|source| {
            SelfSignedError::BadName {
                name: name.clone(),
                source,
            }
        })?;
    }
    let mut params =
        rcgen::CertificateParams::new(names.to_vec()).map_err(SelfSignedError::Generate)?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + time::Duration::days(i64::from(days));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gridlog gateway");
    let key_pair = rcgen::KeyPair::generate().map_err(SelfSignedError::Generate)?;
    let certificate = params
        .self_signed(&key_pair)
        .map_err(SelfSignedError::Generate)?;
    write_file(
        key,
        key_pair.serialize_pem().as_bytes(),
        KEY_FILE_MODE,
        force,
    )?;
    write_file(cert, certificate.pem().as_bytes(), CERT_FILE_MODE, force)
}

/// Writes `bytes` to `path` with `mode` (also when replacing a file that had another).
fn write_file(path: &Path, bytes: &[u8], mode: u32, force: bool) -> Result<(), SelfSignedError> {
    let error = |source| SelfSignedError::Write {
        path: path.into(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(mode);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => SelfSignedError::Exists { path: path.into() },
        _ => error(e),
    })?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(error)?;
    file.write_all(bytes).map_err(error)?;
    file.sync_all().map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_written_once_with_a_private_key_file_and_replaced_only_with_force() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        write_pair(&cert, &key, &names, 30, false).unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, KEY_FILE_MODE);
        let first = std::fs::read(&cert).unwrap();
        assert!(first.starts_with(b"-----BEGIN CERTIFICATE-----"));
        match write_pair(&cert, &key, &names, 30, false) {
            Err(SelfSignedError::Exists { path }) => assert_eq!(path, cert),
            other => panic!("{other:?}"),
        }
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_pair(&cert, &key, &names, 30, true).unwrap();
        assert_ne!(std::fs::read(&cert).unwrap(), first);
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, KEY_FILE_MODE);
    }

    #[test]
    fn a_bad_name_is_refused_by_name_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let names = vec!["localhost".to_string(), "caf\u{e9}".to_string()];
        match write_pair(&cert, &key, &names, 30, false) {
            Err(SelfSignedError::BadName { name, .. }) => assert_eq!(name, "caf\u{e9}"),
            other => panic!("{other:?}"),
        }
        assert!(!cert.exists() && !key.exists());
    }
}
