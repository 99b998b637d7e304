//! Every file-system call the log makes that changes a file or a directory, or makes it
//! durable, goes through [`Io`], so a test can watch each one and inject a fault (a
//! simulated crash) before it.
//!
//! The hook sees the operation *before* it runs; returning an error makes the operation fail
//! with that error, as a dying disk or a power cut at that instant would. Reads are not
//! hooked: they change nothing a crash could lose.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// One mutating or durability call, as shown to an [`IoHook`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum IoOp<'a> {
    /// A new file is created (empty).
    Create {
        /// The file.
        path: &'a Path,
    },
    /// `data` is written at byte `pos` of the file.
    Write {
        /// The file.
        path: &'a Path,
        /// Byte position.
        pos: u64,
        /// The bytes.
        data: &'a [u8],
    },
    /// The file's blocks up to `len` bytes are reserved (`fallocate`); it reads as zeros
    /// up to `len`, and its size becomes `len` if it was smaller.
    Allocate {
        /// The file.
        path: &'a Path,
        /// The size reserved.
        len: u64,
    },
    /// `fdatasync` of the file: its written data becomes durable.
    SyncData {
        /// The file.
        path: &'a Path,
    },
    /// A file is renamed (atomically replacing `to`).
    Rename {
        /// Old name.
        from: &'a Path,
        /// New name.
        to: &'a Path,
    },
    /// A file is removed.
    Remove {
        /// The file.
        path: &'a Path,
    },
    /// A directory is created, with any missing parents (`create_dir_all`); its entry in
    /// its parent becomes durable with the parent's [`IoOp::SyncDir`].
    CreateDir {
        /// The directory.
        path: &'a Path,
    },
    /// `fsync` of a directory: entries created, renamed or removed in it become durable.
    SyncDir {
        /// The directory.
        path: &'a Path,
    },
}

/// A function called before every [`IoOp`]; an `Err` fails the operation.
pub type IoHook = Arc<dyn Fn(&IoOp<'_>) -> io::Result<()> + Send + Sync>;

/// The file-system calls of the log, with the optional hook in front.
#[derive(Clone, Default)]
pub(crate) struct Io {
    hook: Option<IoHook>,
}

impl std::fmt::Debug for Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io")
            .field("hooked", &self.hook.is_some())
            .finish()
    }
}

impl Io {
    pub(crate) fn new(hook: Option<IoHook>) -> Io {
        Io { hook }
    }

    fn check(&self, op: IoOp<'_>) -> io::Result<()> {
        match &self.hook {
            Some(hook) => hook(&op),
            None => Ok(()),
        }
    }

    /// Creates a new file for reading and writing; fails if it exists.
    pub(crate) fn create_new(&self, path: &Path) -> io::Result<File> {
        self.check(IoOp::Create { path })?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
    }

    pub(crate) fn write_all_at(
        &self,
        file: &File,
        path: &Path,
        pos: u64,
        data: &[u8],
    ) -> io::Result<()> {
        self.check(IoOp::Write { path, pos, data })?;
        file.write_all_at(data, pos)
    }

    pub(crate) fn sync_data(&self, file: &File, path: &Path) -> io::Result<()> {
        self.check(IoOp::SyncData { path })?;
        file.sync_data()
    }

    pub(crate) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(IoOp::Rename { from, to })?;
        std::fs::rename(from, to)
    }

    pub(crate) fn remove(&self, path: &Path) -> io::Result<()> {
        self.check(IoOp::Remove { path })?;
        std::fs::remove_file(path)
    }

    /// Creates a directory and any missing parents; the caller syncs the parent.
    pub(crate) fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check(IoOp::CreateDir { path })?;
        std::fs::create_dir_all(path)
    }

    pub(crate) fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.check(IoOp::SyncDir { path })?;
        File::open(path)?.sync_all()
    }

    /// Creates `dir` (and missing parents) and syncs its parent, every time, not only when
    /// it was missing: a crash between the two would otherwise leave its entry unsynced for
    /// ever. On failure, the path of the call that failed.
    pub(crate) fn create_dir_durably(
        &self,
        dir: &Path,
    ) -> Result<(), (std::path::PathBuf, io::Error)> {
        self.create_dir_all(dir)
            .map_err(|e| (dir.to_path_buf(), e))?;
        let parent = dir.parent().unwrap_or(dir);
        self.sync_dir(parent).map_err(|e| (parent.to_path_buf(), e))
    }

    /// Writes a whole file atomically: `dir/name.tmp` (any leftover removed first), the
    /// parts one after the other, `fdatasync`, rename to `dir/name`, `fsync` of `dir`. A
    /// crash at any step leaves the old state or the whole new file, never half of one;
    /// a leftover `.tmp` is removed at the next start. Returns the file's path, or the
    /// error with the path it happened on.
    pub(crate) fn write_file_atomically(
        &self,
        dir: &Path,
        name: &str,
        parts: &[&[u8]],
    ) -> Result<std::path::PathBuf, (std::path::PathBuf, io::Error)> {
        let tmp = dir.join(format!("{name}.tmp"));
        let path = dir.join(name);
        let on = |path: &Path| {
            let path = path.to_path_buf();
            move |e| (path, e)
        };
        if tmp.exists() {
            self.remove(&tmp).map_err(on(&tmp))?;
        }
        let file = self.create_new(&tmp).map_err(on(&tmp))?;
        let mut pos = 0u64;
        for part in parts {
            self.write_all_at(&file, &tmp, pos, part)
                .map_err(on(&tmp))?;
            pos += part.len() as u64;
        }
        self.sync_data(&file, &tmp).map_err(on(&tmp))?;
        self.rename(&tmp, &path).map_err(on(&path))?;
        self.sync_dir(dir).map_err(on(dir))?;
        Ok(path)
    }

    /// Writes `len` zero bytes from `pos`, in bounded chunks.
    /// Reserves `len` bytes of `file` (which reads as zeros there) without writing them:
    /// `fallocate` mode 0. Fails with [`io::ErrorKind::Unsupported`] where the file system
    /// cannot (the caller then writes zeros).
    pub(crate) fn allocate(&self, file: &File, path: &Path, len: u64) -> io::Result<()> {
        self.check(IoOp::Allocate { path, len })?;
        rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len).map_err(|e| {
            if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS {
                io::Error::new(io::ErrorKind::Unsupported, e)
            } else {
                io::Error::from(e)
            }
        })
    }

    pub(crate) fn write_zeros(
        &self,
        file: &File,
        path: &Path,
        pos: u64,
        len: u64,
    ) -> io::Result<()> {
        const ZERO_CHUNK_BYTES: usize = 1 << 20;
        static ZEROS: [u8; ZERO_CHUNK_BYTES] = [0; ZERO_CHUNK_BYTES];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(ZERO_CHUNK_BYTES as u64) as usize;
            self.write_all_at(file, path, pos + done, &ZEROS[..n])?;
            done += n as u64;
        }
        Ok(())
    }
}
