//! Bindings for `ctrstore_core::archive`: apply a layer stream to a directory.

use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::unix::io::FromRawFd;
use std::path::PathBuf;

use ctrstore_core::archive::{apply_layer, ApplyOptions, ApplyStats, Compression, WhiteoutMode};
use pyo3::prelude::*;

use crate::errors::{InvalidArgument, ToPyResult};

/// What applying a layer saw: its diffID (sha256 of the uncompressed stream), how it was
/// compressed, the bytes read and decoded, and the tar entries.
#[pyclass(module = "ctrstore._core", name = "ApplyStats", frozen, eq, get_all)]
#[derive(PartialEq)]
pub struct Stats {
    diff_id: String,
    compression: &'static str,
    compressed_bytes: u64,
    uncompressed_bytes: u64,
    entries: u64,
}

#[pymethods]
impl Stats {
    fn __repr__(&self) -> String {
        format!(
            "ApplyStats(diff_id={:?}, compression={:?}, compressed_bytes={}, uncompressed_bytes={}, entries={})",
            self.diff_id, self.compression, self.compressed_bytes, self.uncompressed_bytes, self.entries
        )
    }
}

/// The name Python sees for a compression (`"none"` for a plain tar).
pub fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    }
}

fn stats(s: ApplyStats) -> Stats {
    Stats {
        diff_id: s.diff_id.to_string(),
        compression: compression_name(s.compression),
        compressed_bytes: s.compressed_bytes,
        uncompressed_bytes: s.uncompressed_bytes,
        entries: s.entries,
    }
}

fn options(
    whiteouts: &str,
    parents: Vec<PathBuf>,
    no_same_owner: bool,
    userxattr: bool,
    owner_xattr: bool,
) -> PyResult<ApplyOptions> {
    let whiteouts = match whiteouts {
        "overlay" => WhiteoutMode::Overlay,
        "delete" => WhiteoutMode::Delete,
        other => {
            return Err(InvalidArgument::new_err(format!(
                "whiteouts must be \"overlay\" or \"delete\", not {other:?}"
            )))
        }
    };
    Ok(ApplyOptions {
        whiteouts,
        parents,
        no_same_owner,
        userxattr,
        owner_xattr,
    })
}

/// An OS error while applying happened under `target` unless it names another file: say so
/// (a full disk is then reported with the free space where the layer was going).
fn onto(e: ctrstore_core::Error, target: &std::path::Path) -> ctrstore_core::Error {
    if e.path().is_none() && e.raw_os_error().is_some() {
        e.with_path(target)
    } else {
        e
    }
}

/// Apply the layer read from file descriptor `fd` (left open) onto `target`, without the GIL.
#[pyfunction]
#[allow(clippy::too_many_arguments)] // a Python signature: keywords, flat
#[pyo3(signature = (target, fd, whiteouts="overlay", parents=Vec::new(), no_same_owner=false, userxattr=false, owner_xattr=false))]
pub fn apply_layer_fd(
    py: Python<'_>,
    target: PathBuf,
    fd: i32,
    whiteouts: &str,
    parents: Vec<PathBuf>,
    no_same_owner: bool,
    userxattr: bool,
    owner_xattr: bool,
) -> PyResult<Stats> {
    let opts = options(whiteouts, parents, no_same_owner, userxattr, owner_xattr)?;
    py.detach(|| {
        // SAFETY: the caller keeps `fd` open for the duration; ManuallyDrop never closes it.
        let f = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
        apply_layer(&target, &*f, &opts)
    })
    .map_err(|e| onto(e, &target))
    .map(stats)
    .py()
}

/// Apply the layer file at `path` onto `target`, without the GIL.
#[pyfunction]
#[allow(clippy::too_many_arguments)] // a Python signature: keywords, flat
#[pyo3(signature = (target, path, whiteouts="overlay", parents=Vec::new(), no_same_owner=false, userxattr=false, owner_xattr=false))]
pub fn apply_layer_path(
    py: Python<'_>,
    target: PathBuf,
    path: PathBuf,
    whiteouts: &str,
    parents: Vec<PathBuf>,
    no_same_owner: bool,
    userxattr: bool,
    owner_xattr: bool,
) -> PyResult<Stats> {
    let opts = options(whiteouts, parents, no_same_owner, userxattr, owner_xattr)?;
    py.detach(|| {
        let f = File::open(&path).map_err(|e| ctrstore_core::Error::io(e, path.display()))?;
        apply_layer(&target, f, &opts)
    })
    .map_err(|e| onto(e, &target))
    .map(stats)
    .py()
}

/// Apply the bytes of an ingest being written onto `target` as they arrive (from the first
/// byte: a resumed download's bytes on disk are replayed), without the GIL. Returns when the
/// writer's verified commit ends the stream; fails when the stream breaks off (the download
/// stopped, or its bytes did not verify) or is cancelled, leaving `target` partly applied.
#[pyfunction]
#[allow(clippy::too_many_arguments)] // a Python signature: keywords, flat
#[pyo3(signature = (target, watch, whiteouts="overlay", parents=Vec::new(), no_same_owner=false, userxattr=false, owner_xattr=false))]
pub fn apply_layer_watch(
    py: Python<'_>,
    target: PathBuf,
    watch: &crate::content::IngestWatch,
    whiteouts: &str,
    parents: Vec<PathBuf>,
    no_same_owner: bool,
    userxattr: bool,
    owner_xattr: bool,
) -> PyResult<Stats> {
    let opts = options(whiteouts, parents, no_same_owner, userxattr, owner_xattr)?;
    let watch = watch.core().clone();
    py.detach(|| apply_layer(&target, watch.reader(), &opts))
        .map_err(|e| onto(e, &target))
        .map(stats)
        .py()
}

/// A layer file decoded (and hashed) ahead of its apply, on a thread of its own, into a
/// bounded queue (64 MiB): where layers go one after another, the next one's decoding
/// overlaps the current one's file creation. `apply` creates the entries (once); `close`, or
/// dropping it, stops the decoding.
#[pyclass(module = "ctrstore._core")]
pub struct LayerDecoder {
    /// In a mutex only to be `Sync` (its queue's receiver is not); only `&mut self` uses it.
    inner: std::sync::Mutex<Option<ctrstore_core::archive::DecodingLayer>>,
    path: PathBuf,
    applied: bool,
}

#[pymethods]
impl LayerDecoder {
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        let f = File::open(&path)
            .map_err(|e| ctrstore_core::Error::io(e, path.display()))
            .py()?;
        let inner = ctrstore_core::archive::DecodingLayer::start(f).py()?;
        Ok(LayerDecoder {
            inner: std::sync::Mutex::new(Some(inner)),
            path,
            applied: false,
        })
    }

    /// The layer file being decoded.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Whether `apply` was called.
    #[getter]
    fn applied(&self) -> bool {
        self.applied
    }

    /// Apply the layer onto `target` (as `apply_layer_path`), without the GIL. Once only.
    #[allow(clippy::too_many_arguments)] // a Python signature: keywords, flat
    #[pyo3(signature = (target, whiteouts="overlay", parents=Vec::new(), no_same_owner=false, userxattr=false, owner_xattr=false))]
    fn apply(
        &mut self,
        py: Python<'_>,
        target: PathBuf,
        whiteouts: &str,
        parents: Vec<PathBuf>,
        no_same_owner: bool,
        userxattr: bool,
        owner_xattr: bool,
    ) -> PyResult<Stats> {
        let opts = options(whiteouts, parents, no_same_owner, userxattr, owner_xattr)?;
        let taken = self
            .inner
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let inner = taken.ok_or_else(|| {
            crate::errors::FailedPrecondition::new_err(format!(
                "the decoder of {} was applied or closed already",
                self.path.display()
            ))
        })?;
        self.applied = true;
        py.detach(|| inner.apply(&target, &opts))
            .map_err(|e| onto(e, &target))
            .map(stats)
            .py()
    }

    /// Stop decoding (harmless after `apply`).
    fn close(&mut self) {
        *self.inner.get_mut().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Open `path` inside `root` as if `root` were `/`: symlinks (the last one's too) are
/// followed inside it, every component is opened with `O_NOFOLLOW`, so nothing outside is
/// reached. Returns a new descriptor (`O_CLOEXEC`) that the caller owns and must close.
#[pyfunction]
#[pyo3(signature = (root, path, flags=libc::O_RDONLY))]
pub fn open_in_root(py: Python<'_>, root: PathBuf, path: PathBuf, flags: i32) -> PyResult<i32> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::IntoRawFd;
    py.detach(|| {
        ctrstore_core::archive::open_in_root(&root, path.as_os_str().as_bytes(), flags)
            .map(IntoRawFd::into_raw_fd)
            .map_err(|e| {
                let p = path.display().to_string();
                let p = p.trim_start_matches('/');
                ctrstore_core::Error::io(e, format!("/{p} inside {}", root.display()))
            })
    })
    .py()
}

/// What writing a layer produced: the compressed blob's digest and size (its descriptor) and
/// the uncompressed tar's diffID and size.
#[pyclass(module = "ctrstore._core", frozen, eq, get_all)]
#[derive(PartialEq)]
pub struct DiffStats {
    digest: String,
    size: u64,
    diff_id: String,
    uncompressed_bytes: u64,
    compression: &'static str,
    entries: u64,
}

#[pymethods]
impl DiffStats {
    fn __repr__(&self) -> String {
        format!(
            "DiffStats(digest={:?}, size={}, diff_id={:?}, uncompressed_bytes={}, compression={:?}, entries={})",
            self.digest, self.size, self.diff_id, self.uncompressed_bytes, self.compression, self.entries
        )
    }
}

fn compression_of(name: &str) -> PyResult<Compression> {
    match name {
        "gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        "none" => Ok(Compression::None),
        other => Err(InvalidArgument::new_err(format!(
            "compression must be \"gzip\", \"zstd\" or \"none\", not {other:?}"
        ))),
    }
}

/// Write the layer of a snapshot's changes into `out` (an `IngestWriter`, or a file
/// descriptor left open): with `lower`, tree `upper` compared with tree `lower`; without, the
/// overlay upper directory `upper` (0:0 character devices are whiteouts, opaque xattrs opaque
/// directories). Compressed and hashed in the same pass, streaming, without the GIL. With
/// `owner_xattr` (single-id mode) owners come from `user.rootlesscontainers`, which is left out.
#[pyfunction]
#[pyo3(signature = (out, upper, lower=None, compression="gzip", owner_xattr=false))]
pub fn write_diff(
    py: Python<'_>,
    out: &Bound<'_, PyAny>,
    upper: PathBuf,
    lower: Option<PathBuf>,
    compression: &str,
    owner_xattr: bool,
) -> PyResult<DiffStats> {
    use ctrstore_core::archive::{write_diff_with as core_write_diff, DiffOptions, DiffSource};
    let opts = DiffOptions { owner_xattr };
    let compression = compression_of(compression)?;
    let source = match &lower {
        Some(l) => DiffSource::Compare {
            lower: l,
            upper: &upper,
        },
        None => DiffSource::OverlayUpper(&upper),
    };
    let stats = if let Ok(w) = out.cast::<crate::content::IngestWriter>() {
        let mut w = w.try_borrow_mut().map_err(|_| {
            crate::errors::Unavailable::new_err("the ingest writer is in use by another thread")
        })?;
        let w = w.core_mut()?;
        py.detach(|| core_write_diff(source, &mut *w, compression, opts).map(|(s, _)| s))
    } else {
        let fd: i32 = out.extract().map_err(|_| {
            InvalidArgument::new_err("out must be an IngestWriter or a file descriptor")
        })?;
        py.detach(|| {
            // SAFETY: the caller keeps `fd` open for the duration; ManuallyDrop never closes it.
            let mut f = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
            core_write_diff(source, &mut *f, compression, opts).map(|(s, _)| s)
        })
    }
    .py()?;
    Ok(DiffStats {
        digest: stats.digest.to_string(),
        size: stats.size,
        diff_id: stats.diff_id.to_string(),
        uncompressed_bytes: stats.uncompressed_bytes,
        compression: compression_name(stats.compression),
        entries: stats.entries,
    })
}

/// The layer entry that deletes `path` (`dir/.wh.name`), or with `opaque` the one that makes
/// directory `path` opaque (`path/.wh..wh..opq`): the whiteout encoding, from its one owner.
#[pyfunction]
#[pyo3(signature = (path, opaque=false))]
pub fn whiteout_path(path: &str, opaque: bool) -> String {
    let p = path.trim_matches('/');
    String::from_utf8(ctrstore_core::archive::whiteout_path(p.as_bytes(), opaque))
        .expect("built from UTF-8 parts")
}

/// The owner a single-id store's file has in its image: `uid`/`gid` (the file's own, 0 in the
/// namespace) as its `user.rootlesscontainers` xattr `value` changes them (the format's one
/// owner is `ctrstore_core::archive::rootlesscontainers`).
#[pyfunction]
pub fn rootless_owner(value: &[u8], uid: u32, gid: u32) -> PyResult<(u32, u32)> {
    ctrstore_core::archive::rootlesscontainers::owner(value, uid, gid).py()
}
