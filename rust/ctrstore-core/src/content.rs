//! The content store's on-disk half: `blobs/sha256/<hex>` and resumable, verifying ingests.
//!
//! Layout (as containerd's local store):
//!
//! ```text
//! <root>/blobs/sha256/<hex>          committed blobs, read-only
//! <root>/ingest/<sha256(ref)>/ref    the ref text
//!                             data   bytes written so far
//!                             total  expected size, when known
//!                             startedat, updatedat   RFC 3339 with nanoseconds
//!                             hashstate              ctrstore's saved SHA-256 state (see below)
//! ```
//!
//! One writer per ref across processes: the writer holds `flock(LOCK_EX)` on the ingest
//! *directory* from open until commit or close. A second open fails at once with
//! `Unavailable`; callers that want to wait retry (the Python layer does, with backoff).
//! Locking the directory rather than `data` matters: commit renames `data` away, and a
//! waiter must not be able to lock a fresh `data` while the old directory is being removed.
//!
//! On close the writer saves its hash state next to `data`; a resumed writer whose `data`
//! has exactly the saved length continues from that state instead of re-reading the file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::digest::{Digest, Sha256, CHUNK};
use crate::error::{
    already_exists, failed_precondition, invalid_argument, not_found, unavailable, Error,
    ErrorKind, Result,
};
use crate::tail::{IngestWatch, Shared as TailShared};
use crate::timefmt::rfc3339_nanos;

/// Path of the committed blob for `digest` under a content store root.
pub fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs")
        .join(digest.algorithm())
        .join(digest.hex())
}

/// Directory of the ingest for `reference` under a content store root.
pub fn ingest_dir(root: &Path, reference: &str) -> PathBuf {
    root.join("ingest")
        .join(Digest::of_bytes(reference.as_bytes()).hex())
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |e| Error::io(e, path.display()).with_path(path)
}

/// Write a small file atomically: `<name>.tmp` with O_SYNC, then rename.
fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_SYNC)
        .mode(0o644)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(data).map_err(io_err(&tmp))?;
    let dst = dir.join(name);
    fs::rename(&tmp, &dst).map_err(io_err(&dst))
}

fn read_opt(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(e, path.display())),
    }
}

/// An exclusively locked ingest directory; the lock goes with the descriptor.
struct DirLock {
    _dir: File,
}

/// Lock `dir` (which must exist), checking that the locked directory is still the one at
/// `dir` (a committing writer may have removed it between our open and our lock).
fn lock_dir(dir: &Path, reference: &str) -> Result<Option<DirLock>> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(e, dir.display())),
    };
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(unavailable(format!(
                "ref {reference:?} is locked: another writer holds its ingest"
            )));
        }
        return Err(Error::io(e, dir.display()));
    }
    let locked_ino = f.metadata().map_err(io_err(dir))?.ino();
    match fs::metadata(dir) {
        Ok(m) if m.ino() == locked_ino => Ok(Some(DirLock { _dir: f })),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(e, dir.display())),
    }
}

/// A resumable writer for one ref. Dropping it without `close` or `commit` keeps the
/// ingest on disk (resumable) but does not save the hash state.
///
/// Its bytes can be read back while they are written ([`IngestWriter::watch`], see
/// [`crate::tail`]): a verified commit ends those readers' streams, anything else breaks them.
pub struct IngestWriter {
    root: PathBuf,
    dir: PathBuf,
    reference: String,
    data: File,
    hasher: Sha256,
    total: Option<u64>,
    expected: Option<Digest>,
    started_at: String,
    /// Readers following the bytes as they are written, if any were asked for.
    watch: Option<std::sync::Arc<TailShared>>,
    _lock: DirLock,
}

impl IngestWriter {
    /// Open (or resume) the ingest for `reference`.
    ///
    /// `total` is the expected size if known; `expected` the expected digest. If the blob for
    /// `expected` already exists, this fails with AlreadyExists before touching the ingest.
    pub fn open(
        root: &Path,
        reference: &str,
        total: Option<u64>,
        expected: Option<Digest>,
    ) -> Result<Self> {
        if reference.is_empty() {
            return Err(invalid_argument("ingest ref must not be empty"));
        }
        if let Some(d) = &expected {
            if blob_path(root, d).exists() {
                return Err(already_exists(format!("content {d} already exists")));
            }
        }
        let ingest_root = root.join("ingest");
        fs::create_dir_all(&ingest_root).map_err(io_err(&ingest_root))?;
        let dir = ingest_dir(root, reference);
        let mut lock = None;
        for _ in 0..8 {
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(e, dir.display())),
            }
            if let Some(l) = lock_dir(&dir, reference)? {
                lock = Some(l);
                break;
            }
        }
        let lock = lock.ok_or_else(|| {
            unavailable(format!(
                "ref {reference:?}: ingest kept vanishing while opening it"
            ))
        })?;

        match read_opt(&dir.join("ref"))? {
            Some(r) if r == reference => {}
            Some(r) => {
                return Err(failed_precondition(format!(
                    "ingest {} holds ref {r:?}, not {reference:?}",
                    dir.display()
                )))
            }
            None => write_atomic(&dir, "ref", reference.as_bytes())?,
        }
        let started_at = match read_opt(&dir.join("startedat"))? {
            Some(s) => s,
            None => {
                let s = rfc3339_nanos(SystemTime::now());
                write_atomic(&dir, "startedat", s.as_bytes())?;
                s
            }
        };
        let stored_total = match read_opt(&dir.join("total"))? {
            Some(s) => Some(s.trim().parse::<u64>().map_err(|_| {
                failed_precondition(format!(
                    "ingest {reference:?}: corrupt total file {s:?}; abort the ingest"
                ))
            })?),
            None => None,
        };
        let total = match (total, stored_total) {
            (Some(t), Some(s)) if t > 0 && s > 0 && t != s => {
                return Err(failed_precondition(format!(
                    "ingest {reference:?} was started with size {s}, now opened with size {t}; abort it first"
                )))
            }
            (Some(t), None) if t > 0 => {
                write_atomic(&dir, "total", t.to_string().as_bytes())?;
                Some(t)
            }
            (Some(t), _) if t > 0 => Some(t),
            (_, s) => s,
        };

        let data_path = dir.join("data");
        let mut data = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_CLOEXEC)
            .mode(0o644)
            .open(&data_path)
            .map_err(io_err(&data_path))?;
        let size = data.metadata().map_err(io_err(&data_path))?.len();
        let saved = fs::read(dir.join("hashstate"))
            .ok()
            .and_then(|b| Sha256::import(&b));
        let mut hasher = match saved {
            Some(h) if h.len() == size => h,
            _ => {
                let mut h = Sha256::new();
                let mut buf = vec![0u8; CHUNK];
                data.seek(SeekFrom::Start(0)).map_err(io_err(&data_path))?;
                loop {
                    let n = data.read(&mut buf).map_err(io_err(&data_path))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                h
            }
        };
        // The saved state describes the file as of the last close; once we write, it is stale.
        let _ = fs::remove_file(dir.join("hashstate"));
        // A resumed ingest that is already complete but cannot verify (or is longer than it
        // may be) would fail every commit, whatever the caller writes: start it over.
        let wrong = match (total, &expected) {
            (Some(t), _) if hasher.len() > t => true,
            (Some(t), Some(want)) if hasher.len() == t => hasher.finish() != *want,
            _ => false,
        };
        if wrong {
            data.set_len(0).map_err(io_err(&data_path))?;
            hasher = Sha256::new();
        }
        data.seek(SeekFrom::Start(hasher.len()))
            .map_err(io_err(&data_path))?;
        Ok(IngestWriter {
            root: root.to_owned(),
            dir,
            reference: reference.to_owned(),
            data,
            hasher,
            total,
            expected,
            started_at,
            watch: None,
            _lock: lock,
        })
    }

    pub fn reference(&self) -> &str {
        &self.reference
    }
    pub fn offset(&self) -> u64 {
        self.hasher.len()
    }
    pub fn total(&self) -> Option<u64> {
        self.total
    }
    pub fn started_at(&self) -> &str {
        &self.started_at
    }
    pub fn expected(&self) -> Option<&Digest> {
        self.expected.as_ref()
    }
    /// Digest of the bytes written so far.
    pub fn digest(&self) -> Digest {
        self.hasher.finish()
    }
    pub fn ingest_path(&self) -> &Path {
        &self.dir
    }

    /// A handle from which readers of this ingest's bytes are made, each from the first byte,
    /// following what is written (see [`crate::tail`]). Every call returns a handle on the
    /// same stream, until a truncation starts a new one.
    pub fn watch(&mut self) -> Result<IngestWatch> {
        if self.watch.is_none() {
            let data = self.dir.join("data");
            self.watch = Some(TailShared::new(&data, &self.reference, self.offset())?);
        }
        Ok(IngestWatch::new(self.watch.clone().expect("set above")))
    }

    /// End the watchers' stream with an error (the first end wins).
    fn break_watch(&mut self, kind: ErrorKind, message: String) {
        if let Some(w) = self.watch.take() {
            w.break_off(kind, message);
        }
    }

    /// Append bytes. On a failed write the data file is cut back to the last good offset.
    pub fn write(&mut self, buf: &[u8]) -> Result<()> {
        if let Err(e) = self.data.write_all(buf) {
            let off = self.offset();
            let _ = self.data.set_len(off);
            let _ = self.data.seek(SeekFrom::Start(off));
            return Err(Error::io(e, format!("writing ingest {:?}", self.reference))
                .with_path(self.dir.join("data")));
        }
        self.hasher.update(buf);
        if let Some(w) = &self.watch {
            w.publish(self.hasher.len());
        }
        Ok(())
    }

    /// Copy from a reader until EOF or `limit` bytes; returns the bytes copied.
    pub fn write_from<R: Read>(&mut self, mut r: R, limit: Option<u64>) -> Result<u64> {
        let mut buf = vec![0u8; CHUNK];
        let mut copied = 0u64;
        loop {
            let want = match limit {
                Some(l) if l - copied < CHUNK as u64 => (l - copied) as usize,
                _ => CHUNK,
            };
            if want == 0 {
                break;
            }
            let n = match r.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::io(
                        e,
                        format!("reading data for ingest {:?}", self.reference),
                    ))
                }
            };
            self.write(&buf[..n])?;
            copied += n as u64;
        }
        Ok(copied)
    }

    /// Only truncation to 0 is supported (as in containerd): start the ingest over.
    pub fn truncate(&mut self, size: u64) -> Result<()> {
        if size != 0 {
            return Err(invalid_argument(format!(
                "ingest {:?}: can only truncate to 0, not {size}",
                self.reference
            )));
        }
        let msg = format!("ingest {:?} started over", self.reference);
        self.break_watch(ErrorKind::Unavailable, msg);
        let p = self.dir.join("data");
        self.data.set_len(0).map_err(io_err(&p))?;
        self.data.seek(SeekFrom::Start(0)).map_err(io_err(&p))?;
        self.hasher = Sha256::new();
        Ok(())
    }

    fn save_state(&mut self) -> Result<()> {
        self.data.sync_data().map_err(io_err(&self.dir))?;
        write_atomic(&self.dir, "hashstate", &self.hasher.export())?;
        // The time of the last write (the data's mtime), not of the close: closing and
        // reopening an ingest does not update it (as containerd's local store).
        let p = self.dir.join("data");
        let written = self
            .data
            .metadata()
            .and_then(|m| m.modified())
            .map_err(io_err(&p))?;
        write_atomic(&self.dir, "updatedat", rfc3339_nanos(written).as_bytes())
    }

    /// Keep the ingest for a later resume and release the lock.
    pub fn close(mut self) -> Result<()> {
        let msg = format!(
            "the write of ingest {:?} stopped after {} bytes",
            self.reference,
            self.offset()
        );
        self.break_watch(ErrorKind::Unavailable, msg);
        self.save_state()
    }

    /// Verify and move the data into `blobs/`. `size` 0 means "whatever the expected total
    /// is, if any". On a size or digest mismatch the ingest is kept as it is (a reopened
    /// writer sees the same offset) and FailedPrecondition is returned; the lock is released
    /// either way. If the blob already exists, the ingest is removed and AlreadyExists returned.
    pub fn commit(mut self, size: u64, expected: Option<Digest>) -> Result<Digest> {
        let offset = self.offset();
        let want_size = if size > 0 { Some(size) } else { self.total };
        if let Some(want) = want_size {
            if want != offset {
                let _ = self.save_state();
                let e = failed_precondition(format!(
                    "commit of {:?} failed: wrote {offset} bytes, expected {want}",
                    self.reference
                ));
                self.break_watch(e.kind(), e.message().to_owned());
                return Err(e);
            }
        }
        let actual = self.hasher.finish();
        if let Some(want) = expected.or_else(|| self.expected.clone()) {
            if want != actual {
                let _ = self.save_state();
                let e = failed_precondition(format!(
                    "commit of {:?} failed: content digest is {actual}, expected {want}",
                    self.reference
                ));
                self.break_watch(e.kind(), e.message().to_owned());
                return Err(e);
            }
        }
        // Verified: the watchers' stream is the blob, whatever happens to the files next.
        if let Some(w) = self.watch.take() {
            w.seal(offset);
        }
        let data_path = self.dir.join("data");
        self.data.sync_all().map_err(io_err(&data_path))?;
        let target = blob_path(&self.root, &actual);
        let blob_dir = target.parent().expect("blob path has a parent");
        fs::create_dir_all(blob_dir).map_err(io_err(blob_dir))?;
        if target.exists() {
            fs::remove_dir_all(&self.dir).map_err(io_err(&self.dir))?;
            return Err(already_exists(format!("content {actual} already exists")));
        }
        fs::rename(&data_path, &target).map_err(io_err(&target))?;
        File::open(blob_dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(blob_dir))?;
        let now = SystemTime::now();
        let times = fs::FileTimes::new().set_accessed(now).set_modified(now);
        self.data.set_times(times).map_err(io_err(&target))?;
        let mode = self
            .data
            .metadata()
            .map_err(io_err(&target))?
            .permissions()
            .mode()
            & !0o222;
        fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(io_err(&target))?;
        fs::remove_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        Ok(actual)
    }
}

impl Drop for IngestWriter {
    fn drop(&mut self) {
        let msg = format!(
            "the writer of ingest {:?} went away after {} bytes",
            self.reference,
            self.offset()
        );
        self.break_watch(ErrorKind::Unavailable, msg);
    }
}

/// Appending through `io::Write` (for encoders that write into an ingest): an error is the
/// core [`Error`] wrapped in an `io::Error`, with its kind and file.
impl Write for IngestWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        IngestWriter::write(self, buf)
            .map(|()| buf.len())
            .map_err(io::Error::other)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Remove the ingest for `reference`. NotFound if there is none; Unavailable if a writer
/// holds it.
pub fn abort(root: &Path, reference: &str) -> Result<()> {
    let dir = ingest_dir(root, reference);
    match lock_dir(&dir, reference)? {
        Some(_lock) => fs::remove_dir_all(&dir).map_err(io_err(&dir)),
        None => Err(not_found(format!("no active ingest for ref {reference:?}"))),
    }
}

/// Whether a writer currently holds the ingest at `dir` (used by gc to skip live ingests).
pub fn ingest_in_use(dir: &Path) -> Result<bool> {
    let f = match File::open(dir) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(e, dir.display())),
    };
    // SAFETY: flock on a descriptor we own; closing it releases the probe lock.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    Ok(rc != 0)
}

/// Make the store's directories (`blobs/sha256/`, `ingest/`) if they are missing.
pub fn create_layout(root: &Path) -> Result<()> {
    for dir in [root.join("blobs").join("sha256"), root.join("ingest")] {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    }
    Ok(())
}

// -- reading the store: blobs, ingest status, the ingest listing --------------------------------

/// A committed blob as the file system sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
    /// The file's modification time: when it was committed (commit sets it).
    pub modified: SystemTime,
}

fn blob_info_of(digest: Digest, m: &fs::Metadata) -> BlobInfo {
    BlobInfo {
        digest,
        size: m.len(),
        modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    }
}

/// The blob for `digest`; NotFound if the store does not hold it.
pub fn blob_info(root: &Path, digest: &Digest) -> Result<BlobInfo> {
    let p = blob_path(root, digest);
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_file() => Ok(blob_info_of(digest.clone(), &m)),
        Ok(_) => Err(not_found(format!("content {digest} not found"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(not_found(format!("content {digest} not found")))
        }
        Err(e) => Err(Error::io(e, p.display()).with_path(&p)),
    }
}

/// Every blob under `blobs/sha256/`, by digest. Names that are not a digest's 64 lowercase hex
/// digits and anything that is not a regular file are passed over; a blob removed while the
/// walk runs is simply not listed.
pub fn walk_blobs(root: &Path) -> Result<Vec<BlobInfo>> {
    let base = root.join("blobs").join("sha256");
    let dir = match fs::read_dir(&base) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(e, base.display()).with_path(&base)),
    };
    let mut out = Vec::new();
    for entry in dir {
        let entry = entry.map_err(io_err(&base))?;
        let name = entry.file_name();
        let Some(digest) = name
            .to_str()
            .and_then(|n| format!("sha256:{n}").parse::<Digest>().ok())
        else {
            continue;
        };
        match entry.metadata() {
            Ok(m) if m.is_file() => out.push(blob_info_of(digest, &m)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(e, entry.path().display()).with_path(entry.path())),
        }
    }
    out.sort_by(|a, b| a.digest.hex().cmp(b.digest.hex()));
    Ok(out)
}

/// Remove the blob for `digest`; NotFound if there is none. (Callers decide whether anything
/// still names it: the metadata store, inside its write transaction.)
pub fn delete_blob(root: &Path, digest: &Digest) -> Result<()> {
    let p = blob_path(root, digest);
    match fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(not_found(format!("content {digest} not found")))
        }
        Err(e) => Err(Error::io(e, p.display()).with_path(&p)),
    }
}

/// What an ingest directory's files say about the write in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestStatus {
    pub reference: String,
    /// Bytes written so far: the size of `data`.
    pub offset: u64,
    /// The expected size, if the writer was told it.
    pub total: Option<u64>,
    pub started_at: SystemTime,
    /// The later of `updatedat` (written on close) and the data's modification time.
    pub updated_at: SystemTime,
}

/// One directory under `ingest/`, as [`list_ingests`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestEntry {
    /// The directory's name (the sha256 of the ref): what [`remove_ingest`] takes.
    pub name: String,
    pub path: PathBuf,
    /// The text of its `ref` file; None if it has none (a writer killed while creating it, or
    /// not an ingest at all).
    pub reference: Option<String>,
    /// None unless `ref`, `data` and a readable `startedat` are all there.
    pub status: Option<IngestStatus>,
    /// Whether a writer holds it; None if the listing was asked not to probe the locks.
    pub in_use: Option<bool>,
}

/// A file that is not there (or whose directory is not one).
fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// Read the status files of the ingest directory `dir`; None if it is not (or no longer) a
/// readable ingest.
fn read_status(dir: &Path) -> Result<Option<IngestStatus>> {
    let opt_text = |name: &str| -> Result<Option<String>> {
        match fs::read_to_string(dir.join(name)) {
            Ok(s) => Ok(Some(s)),
            Err(e) if gone(&e) || e.kind() == io::ErrorKind::InvalidData => Ok(None),
            Err(e) => Err(Error::io(e, dir.join(name).display())),
        }
    };
    let Some(reference) = opt_text("ref")? else {
        return Ok(None);
    };
    let data = match fs::metadata(dir.join("data")) {
        Ok(m) => m,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(Error::io(e, dir.join("data").display())),
    };
    let Some(started_at) = opt_text("startedat")?
        .as_deref()
        .and_then(crate::timefmt::parse_rfc3339)
    else {
        return Ok(None);
    };
    let mut updated_at = data.modified().unwrap_or(started_at);
    if let Some(t) = opt_text("updatedat")?
        .as_deref()
        .and_then(crate::timefmt::parse_rfc3339)
    {
        updated_at = updated_at.max(t);
    }
    let total = opt_text("total")?.and_then(|s| s.trim().parse::<u64>().ok());
    Ok(Some(IngestStatus {
        reference,
        offset: data.len(),
        total,
        started_at,
        updated_at,
    }))
}

/// The status of the ingest for `reference`; NotFound if there is none (or it is unreadable).
pub fn ingest_status(root: &Path, reference: &str) -> Result<IngestStatus> {
    match read_status(&ingest_dir(root, reference))? {
        Some(st) if st.reference == reference => Ok(st),
        _ => Err(not_found(format!("no active ingest for ref {reference:?}"))),
    }
}

/// Every directory (or stray file) under `ingest/`, by name. With `probe_locks`, each is
/// checked for a writer holding it (a probe takes the lock for a moment: a writer opening it
/// right then gets Unavailable and retries, so listings shown to users leave it off).
pub fn list_ingests(root: &Path, probe_locks: bool) -> Result<Vec<IngestEntry>> {
    let base = root.join("ingest");
    let dir = match fs::read_dir(&base) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(e, base.display()).with_path(&base)),
    };
    let mut out = Vec::new();
    for entry in dir {
        let entry = entry.map_err(io_err(&base))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue; // not a name this store makes (nor removes)
        };
        let path = entry.path();
        let status = read_status(&path)?;
        let reference = match &status {
            Some(st) => Some(st.reference.clone()),
            None => read_opt(&path.join("ref")).unwrap_or(None),
        };
        let in_use = if probe_locks {
            Some(ingest_in_use(&path)?)
        } else {
            None
        };
        out.push(IngestEntry {
            name,
            path,
            reference,
            status,
            in_use,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Remove `ingest/<name>` (a listing entry's name) unless a writer holds it: true if it was
/// removed (or was already gone), false if a writer holds it. The lock is taken before
/// anything goes, so a writer that opened it is never removed from under.
pub fn remove_ingest(root: &Path, name: &str) -> Result<bool> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(invalid_argument(format!(
            "{name:?} is not the name of an ingest directory"
        )));
    }
    let dir = root.join("ingest").join(name);
    let meta = match fs::symlink_metadata(&dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(Error::io(e, dir.display()).with_path(&dir)),
    };
    if !meta.is_dir() {
        return match fs::remove_file(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::io(e, dir.display()).with_path(&dir))
            }
            _ => Ok(true),
        };
    }
    match lock_dir(&dir, name) {
        Ok(Some(_lock)) => match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::io(e, dir.display()).with_path(&dir))
            }
            _ => Ok(true),
        },
        Ok(None) => Ok(true),
        Err(e) if e.kind() == crate::error::ErrorKind::Unavailable => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn store() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn write_and_commit() {
        let t = store();
        let data = b"hello world";
        let d = Digest::of_bytes(data);
        let mut w =
            IngestWriter::open(t.path(), "r1", Some(data.len() as u64), Some(d.clone())).unwrap();
        w.write(data).unwrap();
        let got = w.commit(0, None).unwrap();
        assert_eq!(got, d);
        let p = blob_path(t.path(), &d);
        assert_eq!(fs::read(&p).unwrap(), data);
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o222, 0);
        assert!(!ingest_dir(t.path(), "r1").exists());
        let e = IngestWriter::open(t.path(), "r2", None, Some(d))
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    }

    #[test]
    fn mismatch_commits_nothing_and_keeps_ingest() {
        let t = store();
        let mut w = IngestWriter::open(t.path(), "r", None, None).unwrap();
        w.write(b"abc").unwrap();
        let wrong = Digest::of_bytes(b"abd");
        let e = w.commit(3, Some(wrong)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::FailedPrecondition);
        assert!(e.to_string().contains("expected sha256:"), "{e}");
        assert!(!t
            .path()
            .join("blobs/sha256")
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(false));
        let w = IngestWriter::open(t.path(), "r", None, None).unwrap();
        assert_eq!(w.offset(), 3);
        let e = w.commit(4, None).unwrap_err();
        assert!(e.to_string().contains("wrote 3 bytes, expected 4"), "{e}");
    }

    #[test]
    fn resume_uses_saved_state_or_rehashes() {
        let t = store();
        let all = b"0123456789abcdef".repeat(100);
        let mut w = IngestWriter::open(t.path(), "r", Some(all.len() as u64), None).unwrap();
        w.write(&all[..700]).unwrap();
        w.close().unwrap();
        assert!(ingest_dir(t.path(), "r").join("hashstate").exists());
        let mut w = IngestWriter::open(t.path(), "r", None, None).unwrap();
        assert_eq!(w.offset(), 700);
        assert_eq!(w.total(), Some(all.len() as u64));
        w.write(&all[700..900]).unwrap();
        drop(w); // crash-like: no state saved for 900 bytes
        let mut w = IngestWriter::open(t.path(), "r", None, None).unwrap();
        assert_eq!(w.offset(), 900);
        w.write(&all[900..]).unwrap();
        assert_eq!(
            w.commit(0, Some(Digest::of_bytes(&all))).unwrap(),
            Digest::of_bytes(&all)
        );
    }

    #[test]
    fn forged_state_is_not_trusted_blindly() {
        let t = store();
        let mut w = IngestWriter::open(t.path(), "r", None, None).unwrap();
        w.write(b"aaaa").unwrap();
        w.close().unwrap();
        // Someone appends to data behind our back: the saved length no longer matches.
        let dir = ingest_dir(t.path(), "r");
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join("data"))
            .unwrap();
        f.write_all(b"bb").unwrap();
        let w = IngestWriter::open(t.path(), "r", None, None).unwrap();
        assert_eq!(w.digest(), Digest::of_bytes(b"aaaabb"));
    }

    #[test]
    fn second_writer_is_unavailable_and_abort() {
        let t = store();
        let w = IngestWriter::open(t.path(), "r", None, None).unwrap();
        let e = IngestWriter::open(t.path(), "r", None, None).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(ingest_in_use(&ingest_dir(t.path(), "r")).unwrap());
        assert_eq!(
            abort(t.path(), "r").unwrap_err().kind(),
            ErrorKind::Unavailable
        );
        w.close().unwrap();
        assert!(!ingest_in_use(&ingest_dir(t.path(), "r")).unwrap());
        abort(t.path(), "r").unwrap();
        assert_eq!(
            abort(t.path(), "r").unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn complete_but_wrong_ingest_starts_over() {
        let t = store();
        let good = b"the right bytes";
        let d = Digest::of_bytes(good);
        let mut w = IngestWriter::open(t.path(), "r", Some(15), Some(d.clone())).unwrap();
        w.write(b"the wrong bytes").unwrap();
        assert_eq!(
            w.commit(0, None).unwrap_err().kind(),
            ErrorKind::FailedPrecondition
        );
        // Resumed with the same total and digest: the stored bytes can never verify.
        let mut w = IngestWriter::open(t.path(), "r", Some(15), Some(d.clone())).unwrap();
        assert_eq!(w.offset(), 0);
        w.write(good).unwrap();
        assert_eq!(w.commit(0, None).unwrap(), d);
        // A partial ingest (shorter than the total) is resumed as before.
        let mut w = IngestWriter::open(t.path(), "p", Some(4), None).unwrap();
        w.write(b"ab").unwrap();
        w.close().unwrap();
        let w =
            IngestWriter::open(t.path(), "p", Some(4), Some(Digest::of_bytes(b"abcd"))).unwrap();
        assert_eq!(w.offset(), 2);
    }

    #[test]
    fn total_conflict_and_truncate() {
        let t = store();
        let mut w = IngestWriter::open(t.path(), "r", Some(10), None).unwrap();
        w.write(b"xyz").unwrap();
        w.truncate(0).unwrap();
        assert_eq!(w.offset(), 0);
        assert_eq!(
            w.truncate(1).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        w.close().unwrap();
        let e = IngestWriter::open(t.path(), "r", Some(11), None)
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::FailedPrecondition);
        assert_eq!(
            IngestWriter::open(t.path(), "", None, None)
                .err()
                .unwrap()
                .kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn existing_blob_on_commit_removes_ingest() {
        let t = store();
        let mut a = IngestWriter::open(t.path(), "a", None, None).unwrap();
        let mut b = IngestWriter::open(t.path(), "b", None, None).unwrap();
        a.write(b"same").unwrap();
        b.write(b"same").unwrap();
        a.commit(0, None).unwrap();
        assert_eq!(
            b.commit(0, None).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        assert!(!ingest_dir(t.path(), "b").exists());
    }

    #[test]
    fn status_listing_and_removal() {
        let t = store();
        create_layout(t.path()).unwrap();
        assert!(list_ingests(t.path(), true).unwrap().is_empty());
        let mut w = IngestWriter::open(t.path(), "ns/a", Some(10), None).unwrap();
        w.write(b"abc").unwrap();
        let st = ingest_status(t.path(), "ns/a").unwrap();
        assert_eq!(
            (st.reference.as_str(), st.offset, st.total),
            ("ns/a", 3, Some(10))
        );
        assert!(st.updated_at >= st.started_at);
        assert_eq!(
            ingest_status(t.path(), "ns/b").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        // A directory without a ref file (a writer killed as it began), and a stray file.
        let bare = t.path().join("ingest").join("bare");
        fs::create_dir(&bare).unwrap();
        fs::write(t.path().join("ingest").join("stray"), b"x").unwrap();

        let list = list_ingests(t.path(), true).unwrap();
        let names: Vec<_> = list.iter().map(|e| e.name.as_str()).collect();
        let a_name = ingest_dir(t.path(), "ns/a")
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let mut want = vec![a_name.as_str(), "bare", "stray"];
        want.sort();
        assert_eq!(names, want);
        let a = list.iter().find(|e| e.name == a_name).unwrap();
        assert_eq!(a.reference.as_deref(), Some("ns/a"));
        assert_eq!(a.status.as_ref().unwrap(), &st);
        assert_eq!(a.in_use, Some(true));
        let b = list.iter().find(|e| e.name == "bare").unwrap();
        assert_eq!((b.reference.as_deref(), b.status.is_none()), (None, true));
        assert_eq!(b.in_use, Some(false));
        assert!(list_ingests(t.path(), false)
            .unwrap()
            .iter()
            .all(|e| e.in_use.is_none()));

        // A held ingest is not removed; the others are; removing twice is fine.
        assert!(!remove_ingest(t.path(), &a_name).unwrap());
        assert!(remove_ingest(t.path(), "bare").unwrap());
        assert!(remove_ingest(t.path(), "stray").unwrap());
        assert!(remove_ingest(t.path(), "stray").unwrap());
        for bad in ["", ".", "..", "a/b"] {
            assert_eq!(
                remove_ingest(t.path(), bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument
            );
        }
        w.close().unwrap();
        let closed = ingest_status(t.path(), "ns/a").unwrap();
        assert_eq!(closed.offset, 3);
        assert!(remove_ingest(t.path(), &a_name).unwrap());
        assert!(list_ingests(t.path(), true).unwrap().is_empty());
    }

    #[test]
    fn unreadable_status_is_no_status() {
        let t = store();
        let w = IngestWriter::open(t.path(), "r", None, None).unwrap();
        w.close().unwrap();
        let dir = ingest_dir(t.path(), "r");
        fs::write(dir.join("startedat"), "yesterday").unwrap();
        assert_eq!(
            ingest_status(t.path(), "r").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let list = list_ingests(t.path(), false).unwrap();
        assert_eq!(list[0].reference.as_deref(), Some("r"));
        assert!(list[0].status.is_none());
        // containerd's own form of the time is read; a bad total is no total.
        fs::write(dir.join("startedat"), "2023-11-14T22:13:20.5+01:00").unwrap();
        fs::write(dir.join("total"), "many").unwrap();
        let st = ingest_status(t.path(), "r").unwrap();
        assert_eq!(
            st.started_at,
            SystemTime::UNIX_EPOCH + std::time::Duration::new(1_699_996_400, 500_000_000)
        );
        assert_eq!(st.total, None);
    }

    #[test]
    fn blob_walk_info_and_delete() {
        let t = store();
        assert!(walk_blobs(t.path()).unwrap().is_empty());
        let mut digests = Vec::new();
        for data in [&b"one"[..], b"two", b"three"] {
            let mut w = IngestWriter::open(t.path(), "r", None, None).unwrap();
            w.write(data).unwrap();
            digests.push((w.commit(0, None).unwrap(), data.len() as u64));
        }
        let base = t.path().join("blobs/sha256");
        fs::write(base.join("not-a-digest"), b"x").unwrap();
        fs::create_dir(base.join("a".repeat(64))).unwrap();
        fs::write(base.join("A".repeat(64)), b"x").unwrap();
        digests.sort_by(|a, b| a.0.hex().cmp(b.0.hex()));
        let walked: Vec<_> = walk_blobs(t.path())
            .unwrap()
            .into_iter()
            .map(|b| (b.digest, b.size))
            .collect();
        assert_eq!(walked, digests);
        let (d, size) = &digests[0];
        let info = blob_info(t.path(), d).unwrap();
        assert_eq!(info.size, *size);
        assert!(info.modified > SystemTime::UNIX_EPOCH);
        delete_blob(t.path(), d).unwrap();
        assert_eq!(
            delete_blob(t.path(), d).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            blob_info(t.path(), d).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(walk_blobs(t.path()).unwrap().len(), 2);
    }
}
