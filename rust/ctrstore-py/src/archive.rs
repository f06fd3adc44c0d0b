//! Bindings for `ctrstore_core::archive`: apply a layer stream to a directory.

use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::unix::io::FromRawFd;
use std::path::PathBuf;

use ctrstore_core::archive::{apply_layer, ApplyOptions, ApplyStats, Compression, WhiteoutMode};
use pyo3::prelude::*;

use crate::errors::{InvalidArgument, ToPyResult};

/// `(diff_id, compression, compressed_bytes, uncompressed_bytes, entries)`
type Stats = (String, &'static str, u64, u64, u64);

fn stats(s: ApplyStats) -> Stats {
    let c = match s.compression {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    };
    (
        s.diff_id.to_string(),
        c,
        s.compressed_bytes,
        s.uncompressed_bytes,
        s.entries,
    )
}

fn options(
    whiteouts: &str,
    parents: Vec<PathBuf>,
    no_same_owner: bool,
    userxattr: bool,
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
#[pyo3(signature = (target, fd, whiteouts="overlay", parents=Vec::new(), no_same_owner=false, userxattr=false))]
pub fn apply_layer_fd(
    py: Python<'_>,
    target: PathBuf,
    fd: i32,
    whiteouts: &str,
    parents: Vec<PathBuf>,
    no_same_owner: bool,
    userxattr: bool,
) -> PyResult<Stats> {
    let opts = options(whiteouts, parents, no_same_owner, userxattr)?;
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
#[pyo3(signature = (target, path, whiteouts="overlay", parents=Vec::new(), no_same_owner=false, userxattr=false))]
pub fn apply_layer_path(
    py: Python<'_>,
    target: PathBuf,
    path: PathBuf,
    whiteouts: &str,
    parents: Vec<PathBuf>,
    no_same_owner: bool,
    userxattr: bool,
) -> PyResult<Stats> {
    let opts = options(whiteouts, parents, no_same_owner, userxattr)?;
    py.detach(|| {
        let f = File::open(&path).map_err(|e| ctrstore_core::Error::io(e, path.display()))?;
        apply_layer(&target, f, &opts)
    })
    .map_err(|e| onto(e, &target))
    .map(stats)
    .py()
}
