//! Writing a layer: the changes of a container's snapshot as an OCI layer tar, compressed and
//! hashed in one streaming pass — containerd's diff writer (`pkg/archive` `WriteDiff` and
//! `ChangeWriter`, over continuity's `fs.Changes` and `fs.DiffDirChanges`).
//!
//! Two sources of changes:
//!
//! - [`DiffSource::OverlayUpper`]: an overlay upper directory *is* the change set. Every entry
//!   in it is added; a 0:0 character device is a deleted name (`.wh.<name>`); a directory
//!   with `trusted.overlay.opaque=y` (or `user.overlay.opaque=y`) hides what is below it
//!   (`<dir>/.wh..wh..opq`, right after the directory's own entry). fuse-overlayfs's upper
//!   dirs too: unprivileged it marks an opaque directory with `user.fuseoverlayfs.opaque=y`
//!   and a `.wh..wh..opq` file (plus a 0:0 device named `.wh..opq`), and a deleted name with a
//!   `.wh.<name>` file where it cannot make a device: a `.wh.` name in an upper dir is a
//!   marker, never written as itself.
//! - [`DiffSource::Compare`]: two trees, walked side by side in name order. A name only in
//!   `upper` is added (with everything under it); a name only in `lower` is deleted (one
//!   whiteout, nothing for what was under it); a name in both is written again unless it is the
//!   same (continuity's `sameFile`: same inode, or same type, mode, owner, device, xattrs,
//!   size, mtime — and, when both mtimes are whole seconds, the same content or link target).
//!   A directory that did not change is written only when something below it is (its parent
//!   entries come first, as `ChangeWriter.includeParents` does).
//!
//! Entries are written as containerd writes them: paths relative, directories ending in `/`,
//! mode bits (with setuid/setgid/sticky), numeric owners, mtime in whole seconds, no atime or
//! ctime, no user or group names, devices' major and minor; a file whose inode was written
//! before is a hard link to that first name (in `Compare`, an unchanged name of a changed
//! multiply-linked inode is written as a link too); sockets are left out. Xattrs carried:
//! `security.capability` (as containerd) and `user.*` (but not overlay's own `user.overlay.*`
//! or fuse-overlayfs's `user.fuseoverlayfs.*` in an upper dir) — never `trusted.*`. Whiteouts
//! are empty regular files owned by 0:0 with mode 0 and mtime 0.
//!
//! In single-id mode ([`DiffOptions::owner_xattr`]) an entry carrying `user.rootlesscontainers`
//! is written with the owner recorded there, and that xattr is never written (umoci's
//! `mapHeader`): the layer has the image's owners, not the one id the files have on disk.
//!
//! Memory is bounded whatever the layer's size: file data is copied through one buffer, and
//! what is kept is per directory level (its sorted names) and per hard-linked inode.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::compression::Compression;
use super::rootlesscontainers;
use super::sys::{self, cstr, errno};
use super::tarwriter::{EntryType, Header, TarWriter};
use super::{whiteout_path, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};
use crate::digest::{Digest, Sha256};
use crate::error::{invalid_argument, Error, Result};

/// Where the changes come from.
#[derive(Debug, Clone, Copy)]
pub enum DiffSource<'a> {
    /// An overlay upper directory (whiteouts as 0:0 character devices, opaque xattrs).
    OverlayUpper(&'a Path),
    /// Tree `upper` compared with tree `lower`.
    Compare { lower: &'a Path, upper: &'a Path },
}

/// Options for [`write_diff_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DiffOptions {
    /// Single-id mode: owners come from the `user.rootlesscontainers` xattr where a file has
    /// one, and the xattr is left out of the layer.
    pub owner_xattr: bool,
}

/// What [`write_diff`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffStats {
    /// sha256 of the bytes written to the output (the compressed layer): its descriptor's digest.
    pub digest: Digest,
    /// Bytes written to the output.
    pub size: u64,
    /// sha256 of the uncompressed tar: the layer's diffID.
    pub diff_id: Digest,
    pub uncompressed_bytes: u64,
    pub compression: Compression,
    /// Tar entries written.
    pub entries: u64,
}

/// gzip as `gzip -6` with no name and mtime 0 (what Python's `gzip.compress(mtime=0)` and Go's
/// `gzip.NewWriter` write); zstd at level 3.
const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;
const OUT_BUF: usize = 1 << 20;
const TAR_BUF: usize = 256 * 1024;

/// Hashes (and so counts) what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Encoder<W: Write> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    fn new(out: W, c: Compression) -> io::Result<Self> {
        Ok(match c {
            Compression::None => Encoder::Plain(out),
            Compression::Gzip => Encoder::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .write(out, flate2::Compression::new(GZIP_LEVEL)),
            ),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?),
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

type Chain<W> = BufWriter<Hashing<Encoder<Hashing<BufWriter<W>>>>>;

/// An error that crossed an `io::Write` boundary: the core error it wraps, if it is one (an
/// ingest writer's, with its kind and file), else an OS error named by `what`.
fn unwrap_io(e: io::Error, what: impl std::fmt::Display) -> Error {
    if e.get_ref().is_some_and(|r| r.is::<Error>()) {
        let inner = e.into_inner().expect("checked: it has an inner error");
        return *inner.downcast::<Error>().expect("checked: it is one");
    }
    Error::io(e, what)
}

/// Write the layer of `source`'s changes to `out`, compressed with `compression`, and hash it
/// (compressed and uncompressed) in the same pass. Returns the stats and `out`, flushed.
pub fn write_diff<W: Write>(
    source: DiffSource<'_>,
    out: W,
    compression: Compression,
) -> Result<(DiffStats, W)> {
    write_diff_with(source, out, compression, DiffOptions::default())
}

/// [`write_diff`] with options.
pub fn write_diff_with<W: Write>(
    source: DiffSource<'_>,
    out: W,
    compression: Compression,
    opts: DiffOptions,
) -> Result<(DiffStats, W)> {
    let (upper, lower, overlay) = match source {
        DiffSource::OverlayUpper(u) => (u, None, true),
        DiffSource::Compare { lower, upper } => (upper, Some(lower), false),
    };
    let open_root = |p: &Path| {
        sys::open_path(p, libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(|e| Error::io(e, format!("opening {}", p.display())).with_path(p))
    };
    let upper_fd = open_root(upper)?;
    let lower_fd = lower.map(open_root).transpose()?;

    let sink = Hashing {
        inner: BufWriter::with_capacity(OUT_BUF, out),
        hasher: Sha256::new(),
    };
    let enc = Encoder::new(sink, compression).map_err(|e| Error::io(e, "starting compression"))?;
    let chain: Chain<W> = BufWriter::with_capacity(
        TAR_BUF,
        Hashing {
            inner: enc,
            hasher: Sha256::new(),
        },
    );
    let mut d = Differ {
        tar: TarWriter::new(chain),
        overlay,
        owner_xattr: opts.owner_xattr,
        upper_root: upper_fd,
        added_dirs: HashSet::new(),
        inode_src: HashMap::new(),
        inode_refs: HashMap::new(),
    };
    let root = d.upper_root.try_clone().map_err(|e| Error::io(e, "dup"))?;
    let walked = match &lower_fd {
        None => d.walk_overlay(&root, b""),
        Some(l) => d.walk_compare(Some(l), &root, b""),
    };
    walked?;
    let entries = d.tar.entries();
    let chain = d
        .tar
        .finish()
        .map_err(|e| unwrap_io(e, "writing the layer"))?;
    let tar_hash = chain
        .into_inner()
        .map_err(|e| unwrap_io(e.into_error(), "writing the layer"))?;
    let sink = tar_hash
        .inner
        .finish()
        .map_err(|e| unwrap_io(e, "compressing the layer"))?;
    let out = sink
        .inner
        .into_inner()
        .map_err(|e| unwrap_io(e.into_error(), "writing the layer"))?;
    Ok((
        DiffStats {
            digest: sink.hasher.finish(),
            size: sink.hasher.len(),
            diff_id: tar_hash.hasher.finish(),
            uncompressed_bytes: tar_hash.hasher.len(),
            compression,
            entries,
        },
        out,
    ))
}

/// The `ChangeWriter`: turns changes into entries.
struct Differ<W: Write> {
    tar: TarWriter<Chain<W>>,
    overlay: bool,
    owner_xattr: bool,
    upper_root: OwnedFd,
    /// Directories written so far (paths without the trailing `/`).
    added_dirs: HashSet<Vec<u8>>,
    /// A multiply-linked inode's first written name.
    inode_src: HashMap<(u64, u64), Vec<u8>>,
    /// Unchanged names of a multiply-linked inode not written yet (Compare only).
    inode_refs: HashMap<(u64, u64), Vec<Vec<u8>>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Add,
    Unmodified,
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        p.extend_from_slice(parent);
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

fn kind_of(st: &libc::stat) -> Option<EntryType> {
    Some(match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => EntryType::File,
        libc::S_IFDIR => EntryType::Dir,
        libc::S_IFLNK => EntryType::Symlink,
        libc::S_IFCHR => EntryType::Char,
        libc::S_IFBLK => EntryType::Block,
        libc::S_IFIFO => EntryType::Fifo,
        _ => return None, // sockets
    })
}

fn is_whiteout_device(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// The names in a directory, sorted bytewise (the walk order).
fn sorted_names(dir: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    let mut names = sys::read_dir_names(dir)?;
    names.sort();
    Ok(names)
}

fn open_dir(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    sys::openat(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
}

/// lstat, or None if the name is gone (removed while we walk: a running container).
fn lstat_opt(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<libc::stat>> {
    match sys::lstatat(dir, name) {
        Ok(st) => Ok(Some(st)),
        Err(e) if errno(&e) == libc::ENOENT => Ok(None),
        Err(e) => Err(e),
    }
}

impl<W: Write> Differ<W> {
    /// The xattrs a layer carries for `dir/name`, sorted.
    fn xattrs(&self, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for key in sys::listxattr_at_nofollow(dir, name)? {
            let keep = key == b"security.capability"
                || (key.starts_with(b"user.")
                    && !(self.overlay
                        && (key.starts_with(b"user.overlay.")
                            || key.starts_with(b"user.fuseoverlayfs."))));
            if !keep {
                continue;
            }
            if let Some(v) = sys::getxattr_at_nofollow(dir, name, &cstr(&key)?)? {
                out.push((key, v));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Single-id mode: the owner `value` (a `user.rootlesscontainers` xattr) records, over the
    /// file's own.
    fn owner_from_xattr(&self, h: &mut Header, value: Option<Vec<u8>>, path: &[u8]) -> Result<()> {
        let Some(v) = value else {
            return Ok(());
        };
        let (uid, gid) = rootlesscontainers::owner(&v, h.uid as u32, h.gid as u32)
            .map_err(|e| e.context(format!("reading {:?}", show(path))))?;
        h.uid = u64::from(uid);
        h.gid = u64::from(gid);
        Ok(())
    }

    fn write(&mut self, h: &Header, data: Option<&mut dyn io::Read>) -> Result<()> {
        self.tar
            .append(h, data)
            .map_err(|e| unwrap_io(e, format!("writing layer entry {:?}", show(&h.name))))
    }

    /// Write the parent directories of `path` that are not written yet, outermost first.
    fn include_parents(&mut self, path: &[u8]) -> Result<()> {
        let parent = match path.iter().rposition(|b| *b == b'/') {
            Some(i) => &path[..i],
            None => return Ok(()),
        };
        if self.added_dirs.contains(parent) {
            return Ok(());
        }
        let parent = parent.to_vec();
        self.include_parents(&parent)?;
        // Open it from the upper root, one component at a time, never following a symlink.
        let (dir_path, base) = match parent.iter().rposition(|b| *b == b'/') {
            Some(i) => (&parent[..i], &parent[i + 1..]),
            None => (&b""[..], &parent[..]),
        };
        let mut fd = self
            .upper_root
            .try_clone()
            .map_err(|e| Error::io(e, "dup"))?;
        for comp in dir_path.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
            fd = open_dir(fd.as_fd(), &cstr(comp).map_err(|e| Error::io(e, "path"))?)
                .map_err(|e| Error::io(e, format!("opening {:?}", show(&parent))))?;
        }
        let cbase = cstr(base).map_err(|e| Error::io(e, "path"))?;
        let st = sys::lstatat(fd.as_fd(), &cbase)
            .map_err(|e| Error::io(e, format!("reading {:?}", show(&parent))))?;
        self.entry(fd.as_fd(), &cbase, &parent, &st, Change::Add)
    }

    /// Write a whiteout for `path` (or, with `opaque`, the opaque marker in directory `path`).
    fn whiteout(&mut self, path: &[u8], opaque: bool) -> Result<()> {
        let name = whiteout_path(path, opaque);
        self.include_parents(&name)?;
        self.write(&Header::new(name, EntryType::File), None)
    }

    /// `ChangeWriter.HandleChange` for an added, modified or (Compare) unmodified entry.
    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        path: &[u8],
        st: &libc::stat,
        change: Change,
    ) -> Result<()> {
        let Some(kind) = kind_of(st) else {
            return Ok(()); // a socket
        };
        let ctx = |e: io::Error| Error::io(e, format!("reading {:?}", show(path)));
        let mut hname = path.to_vec();
        if kind == EntryType::Dir {
            hname.push(b'/');
        }
        let key = (st.st_dev, st.st_ino);
        let mut additional = Vec::new();
        if kind != EntryType::Dir && st.st_nlink > 1 {
            if let Some(src) = self.inode_src.get(&key) {
                let mut h = Header::new(hname, EntryType::HardLink);
                h.link = src.clone();
                h.mode = st.st_mode & 0o7777;
                h.uid = u64::from(st.st_uid);
                h.gid = u64::from(st.st_gid);
                h.mtime = st.st_mtime;
                if self.owner_xattr {
                    let v = sys::getxattr_at_nofollow(dir, name, rootlesscontainers::KEY)
                        .map_err(ctx)?;
                    self.owner_from_xattr(&mut h, v, path)?;
                }
                self.include_parents(path)?;
                return self.write(&h, None);
            }
            if change == Change::Unmodified {
                self.inode_refs.entry(key).or_default().push(hname);
                return Ok(());
            }
            self.inode_src.insert(key, hname.clone());
            additional = self.inode_refs.remove(&key).unwrap_or_default();
        } else if change == Change::Unmodified {
            return Ok(());
        }

        // A regular file is read through the descriptor its header is made from.
        let mut file = None;
        let mut st = *st;
        if kind == EntryType::File {
            let fd = sys::openat(dir, name, libc::O_RDONLY | libc::O_NOFOLLOW, 0).map_err(ctx)?;
            st = sys::fstat(fd.as_fd()).map_err(ctx)?;
            if kind_of(&st) != Some(EntryType::File) {
                return Err(invalid_argument(format!(
                    "{:?} changed while being read",
                    show(path)
                )));
            }
            file = Some(File::from(fd));
        }
        let mut h = Header::new(hname, kind);
        h.mode = st.st_mode & 0o7777;
        h.uid = u64::from(st.st_uid);
        h.gid = u64::from(st.st_gid);
        h.mtime = st.st_mtime;
        if kind == EntryType::File {
            h.size = st.st_size as u64;
        }
        if kind == EntryType::Symlink {
            h.link = sys::readlinkat(dir, name).map_err(ctx)?;
        }
        if matches!(kind, EntryType::Char | EntryType::Block) {
            h.dev = (
                u64::from(libc::major(st.st_rdev)),
                u64::from(libc::minor(st.st_rdev)),
            );
        }
        h.xattrs = self.xattrs(dir, name).map_err(ctx)?;
        if self.owner_xattr {
            let at = h
                .xattrs
                .iter()
                .position(|(k, _)| k == rootlesscontainers::KEY.to_bytes());
            let v = at.map(|i| h.xattrs.remove(i).1);
            self.owner_from_xattr(&mut h, v, path)?;
        }
        self.include_parents(path)?;
        self.write(&h, file.as_mut().map(|f| f as &mut dyn io::Read))?;
        if kind == EntryType::Dir {
            self.added_dirs.insert(path.to_vec());
        }
        let source = h.name;
        for extra in additional {
            let mut l = Header::new(extra.clone(), EntryType::HardLink);
            l.link = source.clone();
            l.mode = h.mode;
            l.uid = h.uid;
            l.gid = h.gid;
            l.mtime = h.mtime;
            self.include_parents(&extra)?;
            self.write(&l, None)?;
        }
        Ok(())
    }

    /// Everything in an overlay upper directory, depth first in name order.
    fn walk_overlay(&mut self, dir: &OwnedFd, rel: &[u8]) -> Result<()> {
        let ctx = |e: io::Error| Error::io(e, format!("reading {:?}", show(rel)));
        for name in sorted_names(dir.as_fd()).map_err(ctx)? {
            let path = join(rel, name.to_bytes());
            let Some(st) = lstat_opt(dir.as_fd(), &name).map_err(ctx)? else {
                continue;
            };
            if let Some(hidden) = name.to_bytes().strip_prefix(WHITEOUT_PREFIX) {
                // fuse-overlayfs's markers: the opaque file (read by is_opaque), a device
                // whiting out that marker's name, or a file whiting out `hidden`.
                if name.to_bytes() != WHITEOUT_OPAQUE && !is_whiteout_device(&st) {
                    self.whiteout(&join(rel, hidden), false)?;
                }
            } else if is_whiteout_device(&st) {
                self.whiteout(&path, false)?;
            } else if sys::is_dir(&st) {
                let sub = match open_dir(dir.as_fd(), &name) {
                    Ok(fd) => fd,
                    Err(e) if errno(&e) == libc::ENOENT => continue,
                    Err(e) => return Err(Error::io(e, format!("opening {:?}", show(&path)))),
                };
                self.entry(dir.as_fd(), &name, &path, &st, Change::Add)?;
                let opq = cstr(WHITEOUT_OPAQUE).map_err(|e| Error::io(e, "path"))?;
                if self.is_opaque(dir.as_fd(), &name)?
                    || lstat_opt(sub.as_fd(), &opq).map_err(ctx)?.is_some()
                {
                    self.whiteout(&path, true)?;
                }
                self.walk_overlay(&sub, &path)?;
            } else {
                self.entry(dir.as_fd(), &name, &path, &st, Change::Add)?;
            }
        }
        Ok(())
    }

    fn is_opaque(&self, dir: BorrowedFd<'_>, name: &CStr) -> Result<bool> {
        for key in [
            c"trusted.overlay.opaque",
            c"user.overlay.opaque",
            c"user.fuseoverlayfs.opaque",
        ] {
            let v = sys::getxattr_at_nofollow(dir, name, key)
                .map_err(|e| Error::io(e, format!("reading {key:?}")))?;
            if let Some(v) = v {
                return Ok(v == b"y");
            }
        }
        Ok(false)
    }

    /// Compare directory `lower` (None: there is none) with `upper`, depth first in name order.
    fn walk_compare(&mut self, lower: Option<&OwnedFd>, upper: &OwnedFd, rel: &[u8]) -> Result<()> {
        let ctx = |e: io::Error| Error::io(e, format!("reading {:?}", show(rel)));
        let unames = sorted_names(upper.as_fd()).map_err(ctx)?;
        let lnames = match lower {
            Some(l) => sorted_names(l.as_fd()).map_err(ctx)?,
            None => Vec::new(),
        };
        let (mut i, mut j) = (0, 0);
        while i < lnames.len() || j < unames.len() {
            let order = match (lnames.get(i), unames.get(j)) {
                (Some(l), Some(u)) => l.cmp(u),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    // Only in lower: deleted.
                    self.whiteout(&join(rel, lnames[i].to_bytes()), false)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let name = &unames[j];
                    j += 1;
                    let path = join(rel, name.to_bytes());
                    let Some(st) = lstat_opt(upper.as_fd(), name).map_err(ctx)? else {
                        continue;
                    };
                    self.added(upper, name, &path, &st, None)?;
                }
                std::cmp::Ordering::Equal => {
                    let name = &unames[j];
                    let l = lower.expect("names from lower");
                    i += 1;
                    j += 1;
                    let path = join(rel, name.to_bytes());
                    let Some(ust) = lstat_opt(upper.as_fd(), name).map_err(ctx)? else {
                        continue;
                    };
                    let Some(lst) = lstat_opt(l.as_fd(), name).map_err(ctx)? else {
                        self.added(upper, name, &path, &ust, None)?;
                        continue;
                    };
                    self.compared(l, upper, name, &path, &lst, &ust)?;
                }
            }
        }
        Ok(())
    }

    /// A name only in the upper tree (or replacing a non-directory): added, with its subtree.
    fn added(
        &mut self,
        upper: &OwnedFd,
        name: &CStr,
        path: &[u8],
        st: &libc::stat,
        lower_dir: Option<&OwnedFd>,
    ) -> Result<()> {
        if !sys::is_dir(st) {
            return self.entry(upper.as_fd(), name, path, st, Change::Add);
        }
        let sub = match open_dir(upper.as_fd(), name) {
            Ok(fd) => fd,
            Err(e) if errno(&e) == libc::ENOENT => return Ok(()),
            Err(e) => return Err(Error::io(e, format!("opening {:?}", show(path)))),
        };
        self.entry(upper.as_fd(), name, path, st, Change::Add)?;
        self.walk_compare(lower_dir, &sub, path)
    }

    /// A name in both trees.
    fn compared(
        &mut self,
        lower: &OwnedFd,
        upper: &OwnedFd,
        name: &CStr,
        path: &[u8],
        lst: &libc::stat,
        ust: &libc::stat,
    ) -> Result<()> {
        let ctx = |e: io::Error| Error::io(e, format!("comparing {:?}", show(path)));
        let same = self
            .same(lower.as_fd(), upper.as_fd(), name, lst, ust)
            .map_err(ctx)?;
        if sys::is_dir(ust) {
            if !sys::is_dir(lst) {
                // A non-directory replaced by a directory: everything in it is new.
                return self.added(upper, name, path, ust, None);
            }
            let sub_l = open_dir(lower.as_fd(), name).map_err(ctx)?;
            if same {
                // Unchanged itself: written only if something below it is (include_parents).
                let sub_u = open_dir(upper.as_fd(), name).map_err(ctx)?;
                return self.walk_compare(Some(&sub_l), &sub_u, path);
            }
            return self.added(upper, name, path, ust, Some(&sub_l));
        }
        // A non-directory (replacing a directory or not: applying it removes what was there).
        let change = if same && !sys::is_dir(lst) {
            Change::Unmodified
        } else {
            Change::Add
        };
        self.entry(upper.as_fd(), name, path, ust, change)
    }

    /// continuity's `sameFile` (plus the link target and every carried xattr compared).
    fn same(
        &self,
        ldir: BorrowedFd<'_>,
        udir: BorrowedFd<'_>,
        name: &CStr,
        a: &libc::stat,
        b: &libc::stat,
    ) -> io::Result<bool> {
        if a.st_dev == b.st_dev && a.st_ino == b.st_ino {
            return Ok(true);
        }
        if a.st_mode != b.st_mode || a.st_uid != b.st_uid || a.st_gid != b.st_gid {
            return Ok(false);
        }
        if a.st_rdev != b.st_rdev {
            return Ok(false);
        }
        if self.xattrs(ldir, name)? != self.xattrs(udir, name)? {
            return Ok(false);
        }
        if sys::is_dir(a) {
            return Ok(true);
        }
        if a.st_size != b.st_size || a.st_mtime != b.st_mtime {
            return Ok(false);
        }
        if sys::is_symlink(a) {
            return Ok(sys::readlinkat(ldir, name)? == sys::readlinkat(udir, name)?
                && a.st_mtime_nsec == b.st_mtime_nsec);
        }
        if a.st_mtime_nsec == 0 && b.st_mtime_nsec == 0 {
            // Both times may have been cut to seconds (a tar apply): compare the content.
            if a.st_size == 0 || a.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Ok(true);
            }
            return same_content(ldir, udir, name);
        }
        Ok(a.st_mtime_nsec == b.st_mtime_nsec)
    }
}

fn same_content(ldir: BorrowedFd<'_>, udir: BorrowedFd<'_>, name: &CStr) -> io::Result<bool> {
    use std::io::Read;
    let open = |d| sys::openat(d, name, libc::O_RDONLY | libc::O_NOFOLLOW, 0).map(File::from);
    let (mut f1, mut f2) = (open(ldir)?, open(udir)?);
    let mut b1 = vec![0u8; 64 * 1024];
    let mut b2 = vec![0u8; 64 * 1024];
    loop {
        let n1 = read_full(&mut f1, &mut b1)?;
        let n2 = read_full(&mut f2, &mut b2)?;
        if n1 != n2 || b1[..n1] != b2[..n2] {
            return Ok(false);
        }
        if n1 == 0 {
            return Ok(true);
        }
    }

    fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}
