//! Bindings for `ctrstore_core::mount`. Every syscall runs with the GIL released.

use std::path::PathBuf;

use ctrstore_core::mount::{self as core, Mount, MNT_DETACH};
use pyo3::prelude::*;

use crate::errors::ToPyResult;

/// One line of `/proc/self/mountinfo`, with escapes in paths, source and type decoded.
#[pyclass(module = "ctrstore._core", frozen, get_all)]
pub struct MountInfo {
    id: u32,
    parent: u32,
    major: u32,
    minor: u32,
    root: PathBuf,
    mount_point: PathBuf,
    options: String,
    optional: Vec<String>,
    fstype: String,
    source: String,
    super_options: String,
}

impl From<core::MountInfo> for MountInfo {
    fn from(m: core::MountInfo) -> Self {
        MountInfo {
            id: m.id,
            parent: m.parent,
            major: m.major,
            minor: m.minor,
            root: m.root,
            mount_point: m.mount_point,
            options: m.options,
            optional: m.optional,
            fstype: m.fstype,
            source: m.source,
            super_options: m.super_options,
        }
    }
}

#[pymethods]
impl MountInfo {
    fn __repr__(&self) -> String {
        format!(
            "MountInfo(id={}, mount_point={:?}, fstype={:?}, source={:?})",
            self.id,
            self.mount_point.display().to_string(),
            self.fstype,
            self.source
        )
    }
}

/// Mount `kind`/`source`/`options` (containerd's type, source, options) onto `target`.
#[pyfunction]
pub fn mount(
    py: Python<'_>,
    kind: String,
    source: String,
    options: Vec<String>,
    target: PathBuf,
) -> PyResult<()> {
    let m = Mount {
        kind,
        source,
        options,
    };
    py.detach(|| core::mount(&m, &target)).py()
}

/// Unmount `target` (a non-mount point is fine); `recursive` takes everything below it too,
/// deepest first; `lazy` detaches (MNT_DETACH).
#[pyfunction]
#[pyo3(signature = (target, lazy=false, recursive=false))]
pub fn unmount(py: Python<'_>, target: PathBuf, lazy: bool, recursive: bool) -> PyResult<()> {
    let flags = if lazy { MNT_DETACH } else { 0 };
    py.detach(|| {
        if recursive {
            core::unmount_recursive(&target, flags)
        } else {
            core::unmount(&target, flags)
        }
    })
    .py()
}

/// Unmount `target` until it is no longer a mount point; a missing target is fine.
#[pyfunction]
#[pyo3(signature = (target, lazy=false))]
pub fn unmount_all(py: Python<'_>, target: PathBuf, lazy: bool) -> PyResult<()> {
    let flags = if lazy { MNT_DETACH } else { 0 };
    py.detach(|| core::unmount_all(&target, flags)).py()
}

/// The mounts of this process's mount namespace, parents first.
#[pyfunction]
pub fn mountinfo(py: Python<'_>) -> PyResult<Vec<MountInfo>> {
    let all = py.detach(core::mountinfo).py()?;
    Ok(all.into_iter().map(MountInfo::from).collect())
}
