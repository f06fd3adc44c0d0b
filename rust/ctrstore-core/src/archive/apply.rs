//! The layer applier: one streaming pass over a tar, creating each entry with fd-relative
//! system calls inside the target.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::compression::{Compression, CountingReader, Decompress, HashingReader};
use super::path;
use super::pipeline::{self, ChunkReader};
use super::resolve::{Dir, OnCreate, Resolver};
use super::rootlesscontainers;
use super::sys::{self, cstr, errno, Time};
use super::{ApplyOptions, ApplyStats, WhiteoutMode, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};
use crate::digest::Sha256;
use crate::error::{invalid_argument, Error, Result};
use crate::tail::carried_error;

const COPY_BUF: usize = 1 << 20;
const READ_BUF: usize = 256 * 1024;
/// Open directory handles kept by the target's resolver (bounded to stay far from RLIMIT_NOFILE).
const TARGET_DIR_CACHE: usize = 128;
/// Per parent layer (a 127-layer image then holds at most 127 * 3 descriptors for them).
const PARENT_DIR_CACHE: usize = 2;
/// Latest time representable as Go's `time.Unix(0, 1<<63-1)` (containerd's bound).
const MAX_TIME_SECS: i64 = (i64::MAX / 1_000_000_000) - 1;

/// Apply the layer read from `reader` (plain, gzip or zstd tar) to the directory `target`.
///
/// The stream is read to EOF and hashed (after decompression) in the same pass; memory use is
/// bounded whatever the layer's size. On error the target is left partly applied.
pub fn apply_layer(target: &Path, reader: impl Read, opts: &ApplyOptions) -> Result<ApplyStats> {
    apply_layer_with(target, reader, opts, None)
}

/// [`apply_layer`] with the decode-on-a-second-thread choice forced (`Some`) or automatic.
pub(crate) fn apply_layer_with(
    target: &Path,
    reader: impl Read,
    opts: &ApplyOptions,
    pipeline: Option<bool>,
) -> Result<ApplyStats> {
    let root = sys::open_path(target, libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| Error::io(e, format!("opening layer target {}", target.display())))?;
    // Parent layers are opened when first needed (an implied directory), not held open
    // up front: an image may have over a hundred.
    let parents = opts.parents.clone();

    let compressed = Cell::new(0u64);
    let counting = CountingReader {
        inner: reader,
        count: &compressed,
    };
    let mut decomp = Decompress::new(counting)
        .map_err(|e| carried_error(e).unwrap_or_else(|e| Error::io(e, "reading layer")))?;
    let compression = decomp.compression();

    let (hasher, entries) = if pipeline.unwrap_or_else(use_pipeline) {
        std::thread::scope(|s| -> Result<(Sha256, u64)> {
            let (tx, rx) = std::sync::mpsc::sync_channel(pipeline::DEPTH);
            let hash = pipeline::shared_hash();
            let consumer_hash = hash.clone();
            let handle = std::thread::Builder::new()
                .name("ctrstore-apply".into())
                .spawn_scoped(s, move || {
                    let reader = ChunkReader::new(rx, consumer_hash);
                    Applier::new(root, parents, opts)
                        .run(reader)
                        .map(|(n, _)| n)
                })
                .map_err(|e| Error::io(e, "starting layer apply thread"))?;
            let produced = pipeline::produce(&mut decomp, tx, &hash);
            let applied = match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            match (produced, applied) {
                (Err(e), _) => Err(read_error(e, compression)),
                (Ok(()), Err(e)) => Err(e),
                (Ok(()), Ok(n)) => Ok((pipeline::into_hasher(hash), n)),
            }
        })?
    } else {
        let mut hr = HashingReader::new(&mut decomp);
        let (n, _) =
            Applier::new(root, parents, opts).run(BufReader::with_capacity(READ_BUF, &mut hr))?;
        (hr.hasher, n)
    };
    Ok(ApplyStats {
        diff_id: hasher.finish(),
        compression,
        compressed_bytes: compressed.get(),
        uncompressed_bytes: hasher.len(),
        entries,
    })
}

/// Decoded chunks a [`DecodingLayer`] may hold before its apply starts (64 MiB).
pub const AHEAD_DEPTH: usize = 256;

/// What the decoding thread of a [`DecodingLayer`] ends with: how reading went, the
/// compression it found and the compressed bytes it read.
type Decoded = (io::Result<()>, Compression, u64);

/// A layer decoded (and hashed) ahead of its apply, on a thread of its own, into a bounded
/// queue (at most [`AHEAD_DEPTH`] chunks of [`pipeline::CHUNK`]): where layers must be applied
/// one after another (the native and btrfs snapshotters), the next layer's decoding overlaps
/// the current one's file creation. [`DecodingLayer::apply`] then creates the entries from
/// the queue while the rest is decoded. Dropped without being applied, it stops decoding.
pub struct DecodingLayer {
    rx: std::sync::mpsc::Receiver<pipeline::Chunk>,
    hash: pipeline::SharedHash,
    thread: std::thread::JoinHandle<Decoded>,
}

impl DecodingLayer {
    /// Start decoding the layer read from `reader` (plain, gzip or zstd tar).
    pub fn start<R: Read + Send + 'static>(reader: R) -> Result<Self> {
        Self::start_with_depth(reader, AHEAD_DEPTH)
    }

    pub(crate) fn start_with_depth<R: Read + Send + 'static>(
        reader: R,
        depth: usize,
    ) -> Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(depth);
        let hash = pipeline::shared_hash();
        let producer_hash = hash.clone();
        let thread = std::thread::Builder::new()
            .name("ctrstore-decode".into())
            .spawn(move || -> Decoded {
                let compressed = Cell::new(0u64);
                let counting = CountingReader {
                    inner: reader,
                    count: &compressed,
                };
                let mut decomp = match Decompress::new(counting) {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                        return (Err(e), Compression::None, compressed.get());
                    }
                };
                let compression = decomp.compression();
                let produced = pipeline::produce(&mut decomp, tx, &producer_hash);
                drop(decomp);
                (produced, compression, compressed.get())
            })
            .map_err(|e| Error::io(e, "starting layer decode thread"))?;
        Ok(DecodingLayer { rx, hash, thread })
    }

    /// Apply the layer to the directory `target` (see [`apply_layer`]).
    pub fn apply(self, target: &Path, opts: &ApplyOptions) -> Result<ApplyStats> {
        let DecodingLayer { rx, hash, thread } = self;
        let applied = match sys::open_path(target, libc::O_PATH | libc::O_DIRECTORY) {
            Ok(root) => Applier::new(root, opts.parents.clone(), opts)
                .run(ChunkReader::new(rx, hash.clone()))
                .map(|(n, _)| n),
            Err(e) => {
                drop(rx);
                Err(Error::io(
                    e,
                    format!("opening layer target {}", target.display()),
                ))
            }
        };
        let (produced, compression, compressed) = match thread.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let entries = match (produced, applied) {
            (Err(e), _) => return Err(read_error(e, compression)),
            (Ok(()), Err(e)) => return Err(e),
            (Ok(()), Ok(n)) => n,
        };
        let hasher = pipeline::into_hasher(hash);
        Ok(ApplyStats {
            diff_id: hasher.finish(),
            compression,
            compressed_bytes: compressed,
            uncompressed_bytes: hasher.len(),
            entries,
        })
    }
}

/// Read and decode on a second thread when there is a second core (also for plain tars: the
/// hashing then overlaps the applying). `CTRSTORE_APPLY_PIPELINE=0|1` overrides (benchmarks).
fn use_pipeline() -> bool {
    if let Some(v) = std::env::var_os("CTRSTORE_APPLY_PIPELINE") {
        return v != "0";
    }
    std::thread::available_parallelism().is_ok_and(|n| n.get() > 1)
}

fn read_error(e: io::Error, compression: Compression) -> Error {
    let e = match carried_error(e) {
        Ok(err) => return err,
        Err(e) => e,
    };
    if e.raw_os_error().is_some() {
        Error::io(e, "reading layer")
    } else {
        invalid_argument(format!("reading layer ({compression}): {e}"))
    }
}

/// An error from the tar reader: a malformed archive unless it came from the OS.
fn tar_error(e: io::Error) -> Error {
    let e = match carried_error(e) {
        Ok(err) => return err,
        Err(e) => e,
    };
    if e.raw_os_error().is_some() {
        Error::io(e, "reading layer")
    } else {
        invalid_argument(format!("invalid layer tar: {e}"))
    }
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |e| Error::io(e, what)
}

/// Copies owner, mode, times and non-`trusted.*` xattrs onto implied parent directories from
/// the nearest parent layer that has the directory.
struct ParentLayers {
    layers: Vec<(PathBuf, Option<Resolver>)>,
}

impl OnCreate for ParentLayers {
    fn created(&mut self, parent: &Dir, name: &CStr, path: &[u8]) -> io::Result<()> {
        for (root, layer) in &mut self.layers {
            let layer = match layer {
                Some(l) => l,
                None => {
                    let fd = match sys::open_path(root, libc::O_PATH | libc::O_DIRECTORY) {
                        Ok(fd) => fd,
                        // As containerd: a parent that does not have the path is passed over.
                        Err(e) if errno(&e) == libc::ENOENT => continue,
                        Err(e) => {
                            let msg = format!("opening parent layer {}: {e}", root.display());
                            return Err(io::Error::new(e.kind(), msg));
                        }
                    };
                    layer.insert(Resolver::new(fd, PARENT_DIR_CACHE))
                }
            };
            let lower = match layer.resolve(path, None) {
                Ok(d) => d,
                Err(e) if errno(&e) == libc::ENOENT => continue,
                // Replaced by a non-directory in that layer: do not copy.
                Err(e) if errno(&e) == libc::ENOTDIR => return Ok(()),
                Err(e) => return Err(e),
            };
            let st = sys::fstat(lower.fd())?;
            if let Err(e) = sys::fchownat_nofollow(parent.fd(), name, st.st_uid, st.st_gid) {
                let same = sys::lstatat(parent.fd(), name)
                    .is_ok_and(|d| d.st_uid == st.st_uid && d.st_gid == st.st_gid);
                if !same {
                    return Err(e);
                }
            }
            sys::fchmodat(parent.fd(), name, st.st_mode & 0o7777)?;
            let names =
                sys::reopen_dir(lower.fd()).and_then(|fd| Ok((sys::flistxattr(fd.as_fd())?, fd)));
            if let Ok((names, lower_fd)) = names {
                let names: Vec<_> = names
                    .into_iter()
                    .filter(|n| !n.starts_with(b"trusted."))
                    .collect();
                if !names.is_empty() {
                    let new_fd = sys::openat(
                        parent.fd(),
                        name,
                        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                        0,
                    )?;
                    for n in names {
                        let key = cstr(&n)?;
                        if let Some(v) = sys::fgetxattr(lower_fd.as_fd(), &key)? {
                            match sys::fsetxattr(new_fd.as_fd(), &key, &v, libc::XATTR_CREATE) {
                                Ok(()) => {}
                                Err(e)
                                    if matches!(
                                        errno(&e),
                                        libc::ENOTSUP | libc::ENODATA | libc::EEXIST
                                    ) => {}
                                Err(e) => return Err(e),
                            }
                        }
                    }
                }
            }
            sys::utimensat_nofollow(
                parent.fd(),
                name,
                (st.st_atime, st.st_atime_nsec),
                (st.st_mtime, st.st_mtime_nsec),
            )?;
            return Ok(());
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    Char,
    Block,
    Fifo,
}

/// An entry's metadata, from its header and PAX records.
struct Meta {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    atime: Time,
    mtime: Time,
    dev: (u32, u32),
    xattrs: Vec<(CString, Vec<u8>)>,
}

struct Applier<'o> {
    opts: &'o ApplyOptions,
    res: Resolver,
    parents: ParentLayers,
    /// Directory entries of the layer (resolved paths) and their times, re-applied at the end.
    dirs: Vec<(Vec<u8>, Time, Time)>,
    /// Resolved paths unpacked from this layer (only kept in delete mode, for opaque dirs).
    unpacked: HashSet<Vec<u8>>,
    buf: Vec<u8>,
    ids: Ids,
}

/// Who we create files as.
struct Ids {
    euid: u32,
    egid: u32,
    /// The process umask (0o777 if it cannot be read: then every file is chmod-ed).
    umask: u32,
    /// In a user namespace device nodes cannot be made: such entries are skipped.
    in_userns: bool,
}

impl Ids {
    fn current() -> Self {
        // Reading the umask with umask(2) would change it for every thread for a moment.
        let umask = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .unwrap_or(0o777);
        // SAFETY: plain getters without arguments.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let in_userns = std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| {
            let f: Vec<&str> = m.split_whitespace().collect();
            f != ["0", "0", "4294967295"]
        });
        Ids {
            euid,
            egid,
            umask,
            in_userns,
        }
    }
}

impl<'o> Applier<'o> {
    fn new(root: OwnedFd, parents: Vec<PathBuf>, opts: &'o ApplyOptions) -> Self {
        Applier {
            opts,
            res: Resolver::new(root, TARGET_DIR_CACHE),
            parents: ParentLayers {
                layers: parents.into_iter().map(|p| (p, None)).collect(),
            },
            dirs: Vec::new(),
            unpacked: HashSet::new(),
            buf: Vec::new(),
            ids: Ids::current(),
        }
    }

    /// Whether entries get the archive's owner with chown (not with `no_same_owner`, nor in
    /// single-id mode: there the owner is in an xattr).
    fn chown_wanted(&self) -> bool {
        !self.opts.no_same_owner && !self.opts.owner_xattr
    }

    fn delete_mode(&self) -> bool {
        self.opts.whiteouts == WhiteoutMode::Delete
    }

    /// Apply every entry, re-apply directory times, then read the rest of the stream to EOF.
    fn run<R: Read>(mut self, reader: R) -> Result<(u64, R)> {
        let mut archive = tar::Archive::new(reader);
        let mut count = 0u64;
        {
            let entries = archive.entries().map_err(tar_error)?;
            for entry in entries {
                let mut entry = entry.map_err(tar_error)?;
                count += 1;
                self.entry(&mut entry).map_err(|e| {
                    let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                    e.context(format!("layer entry {name:?}"))
                })?;
            }
        }
        self.finish_dirs()?;
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(tar_error)?;
        Ok((count, rest))
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let etype = entry.header().entry_type();
        if etype.is_pax_global_extensions() {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let clean = path::clean(&raw);
        if clean.is_empty() {
            // Resolves to the root itself: ignored.
            return Ok(());
        }
        let mut meta = parse_meta(entry, &raw)?;
        if self.opts.owner_xattr {
            owner_to_xattr(&mut meta);
        }
        if matches!(meta.kind, Kind::Char | Kind::Block) && self.ids.in_userns {
            // As containerd: the archive may not be supported on this system; skip.
            return Ok(());
        }
        let (parent, base) = path::split(&clean);

        if base.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(parent, base, &meta);
        }

        let pdir = self.resolve_parent(parent)?;
        let cbase = cstr(base).map_err(io_err("entry name"))?;
        match meta.kind {
            Kind::File => self.write_file(&pdir, &cbase, &meta, entry)?,
            Kind::Dir => {
                self.make_dir(&pdir, &cbase, &meta)?;
                self.dirs
                    .push((path::join(&pdir.path, base), meta.atime, meta.mtime));
            }
            Kind::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default();
                let ctarget = cstr(&target).map_err(io_err("symlink target"))?;
                self.create(&pdir, &cbase, false, || {
                    sys::symlinkat(&ctarget, pdir.fd(), &cbase)
                })
                .map_err(io_err("creating symlink"))?;
                self.finish_meta(&pdir, &cbase, &meta, true)?;
            }
            Kind::HardLink => {
                let target = entry.link_name_bytes().unwrap_or_default();
                let tclean = path::clean(&target);
                if tclean.is_empty() {
                    return Err(invalid_argument("hard link target resolves to the root"));
                }
                let (tparent, tbase) = path::split(&tclean);
                let tdir = self
                    .res
                    .resolve(tparent, None)
                    .map_err(io_err("resolving hard link target"))?;
                let ctbase = cstr(tbase).map_err(io_err("hard link target"))?;
                self.create(&pdir, &cbase, false, || {
                    sys::linkat(tdir.fd(), &ctbase, pdir.fd(), &cbase)
                })
                .map_err(io_err("creating hard link"))?;
                // A hard link shares its target's inode: the link header's owner, mode and
                // times are not applied over the target's (as umoci does, and as containerd
                // does in practice: its chmod for links looks the target up relative to the
                // process's working directory, where it is not found).
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                let fmt = match meta.kind {
                    Kind::Char => libc::S_IFCHR,
                    Kind::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let dev = libc::makedev(meta.dev.0, meta.dev.1);
                self.create(&pdir, &cbase, false, || {
                    sys::mknodat(pdir.fd(), &cbase, fmt | (meta.mode & 0o777), dev)
                })
                .map_err(io_err("creating device node"))?;
                self.finish_meta(&pdir, &cbase, &meta, false)?;
            }
        }
        if self.delete_mode() {
            self.unpacked.insert(path::join(&pdir.path, base));
        }
        Ok(())
    }

    fn resolve_parent(&mut self, parent: &[u8]) -> Result<Rc<Dir>> {
        let create: &mut dyn OnCreate = &mut self.parents;
        self.res
            .resolve(parent, Some(create))
            .map_err(io_err("resolving parent directory"))
    }

    /// Run `make` (which creates `pdir/name`); if something is in the way, remove it (unless
    /// both it and the new entry are directories: then return Ok(false)) and try again.
    fn create(
        &mut self,
        pdir: &Dir,
        name: &CStr,
        is_dir: bool,
        mut make: impl FnMut() -> io::Result<()>,
    ) -> io::Result<bool> {
        match make() {
            Ok(()) => return Ok(true),
            Err(e) if errno(&e) == libc::EEXIST => {}
            Err(e) => return Err(e),
        }
        let st = sys::lstatat(pdir.fd(), name)?;
        if is_dir && sys::is_dir(&st) {
            return Ok(false);
        }
        self.remove(pdir, name, Some(&st))?;
        make().map(|()| true)
    }

    /// Remove `pdir/name` (recursively); forget cached directories if that could stale them.
    fn remove(&mut self, pdir: &Dir, name: &CStr, st: Option<&libc::stat>) -> io::Result<()> {
        let dir_or_link = !matches!(st, Some(st) if !sys::is_dir(st) && !sys::is_symlink(st));
        sys::remove_all_at(pdir.fd(), name)?;
        if dir_or_link {
            self.res.invalidate();
        }
        Ok(())
    }

    fn write_file<R: Read>(
        &mut self,
        pdir: &Dir,
        name: &CStr,
        meta: &Meta,
        data: &mut R,
    ) -> Result<()> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        // Create with the final permission bits when the umask cannot change them and no
        // set-ID/sticky bit is asked for: then no chmod is needed afterwards.
        let perm = meta.mode & 0o777;
        let exact = meta.mode & 0o7000 == 0 && perm & self.ids.umask == 0;
        let create_mode = if exact { perm } else { 0o600 };
        let mut fd = None;
        self.create(pdir, name, false, || {
            fd = Some(sys::openat(pdir.fd(), name, flags, create_mode)?);
            Ok(())
        })
        .map_err(io_err("creating file"))?;
        let mut file = File::from(fd.expect("created"));
        if self.buf.is_empty() {
            self.buf = vec![0u8; COPY_BUF];
        }
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(tar_error(e).context("reading file data")),
            };
            file.write_all(&self.buf[..n])
                .map_err(io_err("writing file"))?;
        }
        let fd = file.as_fd();
        if self.chown_wanted() {
            // A new file is owned by our euid and egid (or the directory's group if it is
            // set-group-ID); only chown when that is not already what the entry asks for.
            let gid = pdir
                .new_file_gid(self.ids.egid)
                .map_err(io_err("stat of parent directory"))?;
            if meta.uid != self.ids.euid || meta.gid != gid {
                sys::fchown(fd, meta.uid, meta.gid).map_err(|e| chown_error(e, meta))?;
            }
        }
        for (key, value) in &meta.xattrs {
            set_xattr(key, value, true, |k, v| sys::fsetxattr(fd, k, v, 0))?;
        }
        if !exact || !meta.xattrs.is_empty() {
            sys::fchmod(fd, meta.mode).map_err(io_err("chmod"))?;
        }
        sys::futimens(fd, meta.atime, meta.mtime).map_err(io_err("setting times"))?;
        Ok(())
    }

    fn make_dir(&mut self, pdir: &Dir, name: &CStr, meta: &Meta) -> Result<()> {
        self.create(pdir, name, true, || sys::mkdirat(pdir.fd(), name, 0o700))
            .map_err(io_err("creating directory"))?;
        if meta.mode & libc::S_ISGID != 0 {
            // Cached directories remember whether they are set-group-ID.
            self.res.invalidate();
        }
        // Times are set once, after the whole layer (see finish_dirs).
        self.owner_xattrs_mode(pdir, name, meta, false)
    }

    /// Owner, xattrs, mode (not for symlinks) and times of a non-regular entry.
    fn finish_meta(
        &mut self,
        pdir: &Dir,
        name: &CStr,
        meta: &Meta,
        is_symlink: bool,
    ) -> Result<()> {
        self.owner_xattrs_mode(pdir, name, meta, is_symlink)?;
        sys::utimensat_nofollow(pdir.fd(), name, meta.atime, meta.mtime)
            .map_err(io_err("setting times"))
    }

    fn owner_xattrs_mode(
        &mut self,
        pdir: &Dir,
        name: &CStr,
        meta: &Meta,
        is_symlink: bool,
    ) -> Result<()> {
        if self.chown_wanted() {
            sys::fchownat_nofollow(pdir.fd(), name, meta.uid, meta.gid)
                .map_err(|e| chown_error(e, meta))?;
        }
        if !meta.xattrs.is_empty() {
            let regular_or_dir = meta.kind == Kind::Dir
                || (meta.kind == Kind::HardLink
                    && sys::lstatat(pdir.fd(), name).is_ok_and(|st| {
                        let f = st.st_mode & libc::S_IFMT;
                        f == libc::S_IFREG || f == libc::S_IFDIR
                    }));
            for (key, value) in &meta.xattrs {
                set_xattr(key, value, regular_or_dir, |k, v| {
                    sys::setxattr_at_nofollow(pdir.fd(), name, k, v)
                })?;
            }
        }
        if !is_symlink {
            sys::fchmodat(pdir.fd(), name, meta.mode).map_err(io_err("chmod"))?;
        }
        Ok(())
    }

    fn whiteout(&mut self, parent: &[u8], base: &[u8], meta: &Meta) -> Result<()> {
        let opaque = base == WHITEOUT_OPAQUE;
        let orig = &base[WHITEOUT_PREFIX.len()..];
        if !opaque && (orig.is_empty() || orig == b"." || orig == b"..") {
            return Err(invalid_argument(format!(
                "invalid whiteout name {:?}: it would not stay inside its directory",
                String::from_utf8_lossy(base)
            )));
        }
        let pdir = self.resolve_parent(parent)?;
        match (self.opts.whiteouts, opaque) {
            (WhiteoutMode::Overlay, true) => {
                let key: &CStr = if self.opts.userxattr {
                    c"user.overlay.opaque"
                } else {
                    c"trusted.overlay.opaque"
                };
                let fd = sys::reopen_dir(pdir.fd()).map_err(io_err("opening opaque directory"))?;
                sys::fsetxattr(fd.as_fd(), key, b"y", 0).map_err(io_err("setting opaque xattr"))?;
            }
            (WhiteoutMode::Overlay, false) => {
                let cname = cstr(orig).map_err(io_err("whiteout name"))?;
                self.create(&pdir, &cname, false, || {
                    sys::mknodat(pdir.fd(), &cname, libc::S_IFCHR, 0)
                })
                .map_err(io_err("creating whiteout device"))?;
                if self.chown_wanted() {
                    sys::fchownat_nofollow(pdir.fd(), &cname, meta.uid, meta.gid)
                        .map_err(|e| chown_error(e, meta))?;
                }
            }
            (WhiteoutMode::Delete, true) => {
                let dir_path = pdir.path.clone();
                self.clear_opaque(&pdir, &dir_path)
                    .map_err(io_err("clearing opaque directory"))?;
            }
            (WhiteoutMode::Delete, false) => {
                let cname = cstr(orig).map_err(io_err("whiteout name"))?;
                self.remove(&pdir, &cname, None)
                    .map_err(io_err("removing whited-out path"))?;
            }
        }
        Ok(())
    }

    /// Remove every child of `dir` except paths unpacked from this layer (recursing into those).
    fn clear_opaque(&mut self, dir: &Dir, dir_path: &[u8]) -> io::Result<()> {
        for child in sys::read_dir_names(dir.fd())? {
            let child_path = path::join(dir_path, child.to_bytes());
            if self.unpacked.contains(&child_path) {
                if let Ok(sub) = sys::open_dir_nofollow(dir.fd(), &child) {
                    let sub = Dir::new(sub, child_path);
                    self.clear_opaque(&sub, &sub.path.clone())?;
                }
            } else {
                self.remove(dir, &child, None)?;
            }
        }
        Ok(())
    }

    /// Re-apply the times of the layer's directories (creating their children changed them).
    fn finish_dirs(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (p, atime, mtime) in dirs.into_iter().rev() {
            let (parent, base) = path::split(&p);
            let r = self.res.resolve(parent, None).and_then(|pdir| {
                let cbase = cstr(base)?;
                sys::utimensat_nofollow(pdir.fd(), &cbase, atime, mtime)
            });
            match r {
                Ok(()) => {}
                // Removed or replaced later in the layer.
                Err(e) if matches!(errno(&e), libc::ENOENT | libc::ENOTDIR) => {}
                Err(e) => {
                    return Err(Error::io(e, "setting directory times")
                        .context(format!("layer entry {:?}", String::from_utf8_lossy(&p))))
                }
            }
        }
        Ok(())
    }
}

/// Single-id mode: the entry's owner goes into `user.rootlesscontainers` (umoci's
/// `unmapHeader` in rootless mode: none for 0:0, an xattr of the layer's own dropped) and the
/// entry itself stays owned by the one id. The kernel refuses `user.*` xattrs on symlinks and
/// device nodes (EPERM, skipped by `set_xattr`), so those lose their owner, as with umoci.
fn owner_to_xattr(meta: &mut Meta) {
    meta.xattrs
        .retain(|(k, _)| k.as_c_str() != rootlesscontainers::KEY);
    if let Some(v) = rootlesscontainers::encode(meta.uid, meta.gid) {
        meta.xattrs.push((rootlesscontainers::KEY.to_owned(), v));
    }
    meta.uid = 0;
    meta.gid = 0;
}

fn chown_error(e: io::Error, meta: &Meta) -> Error {
    Error::io(e, format!("chown to {}:{}", meta.uid, meta.gid))
}

/// Set one xattr from the archive: `trusted.*` is refused (skipped), ENOTSUP skipped, EPERM on
/// `user.*` for something that is neither a file nor a directory skipped.
fn set_xattr(
    key: &CStr,
    value: &[u8],
    regular_or_dir: bool,
    set: impl FnOnce(&CStr, &[u8]) -> io::Result<()>,
) -> Result<()> {
    let k = key.to_bytes();
    if k.starts_with(b"trusted.") {
        return Ok(());
    }
    match set(key, value) {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == libc::ENOTSUP => Ok(()),
        Err(e) if errno(&e) == libc::EPERM && k.starts_with(b"user.") && !regular_or_dir => Ok(()),
        Err(e) => Err(Error::io(
            e,
            format!("setting xattr {:?}", String::from_utf8_lossy(k)),
        )),
    }
}

fn bound_time(t: Time) -> Time {
    if t.0 < 0 || t.0 > MAX_TIME_SECS {
        (0, 0)
    } else {
        t
    }
}

/// A tar numeric field: octal (NUL/space padded) or GNU base-256 (high bit set); `None` if
/// malformed or negative.
fn parse_numeric(field: &[u8]) -> Option<u64> {
    match field.first() {
        Some(b) if b & 0x80 != 0 => {
            if b & 0x40 != 0 {
                return None; // negative
            }
            let mut v: u64 = u64::from(b & 0x3f);
            for &c in &field[1..] {
                v = v.checked_mul(256)?.checked_add(u64::from(c))?;
            }
            Some(v)
        }
        _ => {
            let s: &[u8] = {
                let t = field
                    .iter()
                    .position(|c| *c == 0)
                    .map_or(field, |i| &field[..i]);
                let start = t.iter().position(|c| *c != b' ').unwrap_or(t.len());
                let end = t.iter().rposition(|c| *c != b' ').map_or(start, |i| i + 1);
                &t[start..end]
            };
            if s.is_empty() {
                return Some(0);
            }
            s.iter().try_fold(0u64, |v, c| match c {
                b'0'..=b'7' => v.checked_mul(8)?.checked_add(u64::from(c - b'0')),
                _ => None,
            })
        }
    }
}

/// Parse a PAX time: decimal seconds with an optional fraction, possibly negative.
fn parse_pax_time(v: &[u8]) -> Option<Time> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = int.parse().unwrap_or(i64::MAX);
    let mut nsec: i64 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nsec += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
    }
    Some(if neg {
        if nsec > 0 {
            (-secs - 1, 1_000_000_000 - nsec)
        } else {
            (-secs, 0)
        }
    } else {
        (secs, nsec)
    })
}

fn parse_meta<R: Read>(entry: &mut tar::Entry<'_, R>, raw_name: &[u8]) -> Result<Meta> {
    let bad = |what: &str, e: io::Error| invalid_argument(format!("invalid {what} in header: {e}"));
    let hdr = entry.header();
    // The raw type byte: tar::EntryType folds NUL into '0'.
    let kind = match hdr.as_bytes()[156] {
        b'0' | b'7' | b'S' => Kind::File,
        // Old-style archives mark directories with a trailing slash on a NUL-type entry.
        b'\0' => {
            if raw_name.ends_with(b"/") {
                Kind::Dir
            } else {
                Kind::File
            }
        }
        b'1' => Kind::HardLink,
        b'2' => Kind::Symlink,
        b'3' => Kind::Char,
        b'4' => Kind::Block,
        b'5' => Kind::Dir,
        b'6' => Kind::Fifo,
        t => {
            return Err(invalid_argument(format!(
                "unsupported tar entry type {:?}",
                t as char
            )))
        }
    };
    let mode = hdr.mode().map_err(|e| bad("mode", e))? & 0o7777;
    let uid = hdr.uid().map_err(|e| bad("uid", e))?;
    let gid = hdr.gid().map_err(|e| bad("gid", e))?;
    let uid =
        u32::try_from(uid).map_err(|_| invalid_argument(format!("uid {uid} out of range")))?;
    let gid =
        u32::try_from(gid).map_err(|_| invalid_argument(format!("gid {gid} out of range")))?;
    let mtime_secs = hdr.mtime().map_err(|e| bad("mtime", e))?;
    let mut mtime: Time = (i64::try_from(mtime_secs).unwrap_or(-1), 0);
    let mut atime: Option<Time> = hdr
        .as_gnu()
        .and_then(|g| g.atime().ok())
        .filter(|t| *t > 0)
        .map(|t| (t as i64, 0));
    let dev = if matches!(kind, Kind::Char | Kind::Block) {
        // Parsed from the raw fields: tar's accessors truncate to u32 silently.
        let raw = hdr.as_bytes();
        let num = |what: &str, field: &[u8]| -> Result<u32> {
            parse_numeric(field)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| {
                    invalid_argument(format!("device {what} number out of range or malformed"))
                })
        };
        (num("major", &raw[329..337])?, num("minor", &raw[337..345])?)
    } else {
        (0, 0)
    };
    let mut xattrs = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(|e| bad("PAX header", e))? {
        for ext in exts {
            let ext = ext.map_err(|e| bad("PAX record", e))?;
            let key = ext.key_bytes();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                let k = cstr(name).map_err(|e| bad("xattr name", e))?;
                xattrs.push((k, ext.value_bytes().to_vec()));
            } else if key == b"mtime" {
                mtime = parse_pax_time(ext.value_bytes())
                    .ok_or_else(|| invalid_argument("invalid PAX mtime"))?;
            } else if key == b"atime" {
                atime = Some(
                    parse_pax_time(ext.value_bytes())
                        .ok_or_else(|| invalid_argument("invalid PAX atime"))?,
                );
            }
        }
    }
    let mtime = bound_time(mtime);
    let atime = match atime {
        Some(a) if a > mtime => bound_time(a),
        _ => mtime,
    };
    Ok(Meta {
        kind,
        mode,
        uid,
        gid,
        atime,
        mtime,
        dev,
        xattrs,
    })
}
