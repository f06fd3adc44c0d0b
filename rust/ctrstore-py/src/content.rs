//! Bindings for `ctrstore_core::content`.

use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::unix::io::FromRawFd;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use ctrstore_core::content::{self as core, IngestWriter as CoreWriter};
use ctrstore_core::tail as core_tail;
use ctrstore_core::Digest;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use crate::buffer::Bytes;
use crate::errors::{to_py, ToPyResult};

fn parse_opt(d: Option<&str>) -> PyResult<Option<Digest>> {
    d.map(|s| s.parse::<Digest>()).transpose().py()
}

/// A resumable, verifying writer for one ingest ref (see the core crate's `content` docs).
///
/// The writer holds an exclusive lock on its ingest until `commit()` or `close()`.
#[pyclass(module = "ctrstore._core")]
pub struct IngestWriter {
    inner: Option<CoreWriter>,
    reference: String,
}

impl IngestWriter {
    /// The open core writer, for other bindings that write into it (the diff writer).
    pub fn core_mut(&mut self) -> PyResult<&mut CoreWriter> {
        self.live()
    }

    fn live(&mut self) -> PyResult<&mut CoreWriter> {
        let r = &self.reference;
        self.inner.as_mut().ok_or_else(|| {
            crate::errors::FailedPrecondition::new_err(format!("writer for {r:?} is closed"))
        })
    }
}

#[pymethods]
impl IngestWriter {
    #[new]
    #[pyo3(signature = (root, reference, total=None, expected=None))]
    fn new(
        py: Python<'_>,
        root: PathBuf,
        reference: String,
        total: Option<u64>,
        expected: Option<&str>,
    ) -> PyResult<Self> {
        let expected = parse_opt(expected)?;
        let w = py
            .detach(|| CoreWriter::open(&root, &reference, total, expected))
            .py()?;
        Ok(IngestWriter {
            inner: Some(w),
            reference,
        })
    }

    #[getter]
    fn reference(&self) -> &str {
        &self.reference
    }

    #[getter]
    fn offset(&mut self) -> PyResult<u64> {
        Ok(self.live()?.offset())
    }

    #[getter]
    fn total(&mut self) -> PyResult<Option<u64>> {
        Ok(self.live()?.total())
    }

    #[getter]
    fn started_at(&mut self) -> PyResult<String> {
        Ok(self.live()?.started_at().to_owned())
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_none()
    }

    /// Digest of what was written so far.
    fn digest(&mut self) -> PyResult<String> {
        Ok(self.live()?.digest().to_string())
    }

    fn write(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let held = Bytes::new(data)?;
        let data = held.as_slice();
        let w = self.live()?;
        py.detach(|| w.write(data)).py()?;
        Ok(data.len())
    }

    /// Copy from an open file descriptor until EOF or `limit` bytes, without the GIL.
    /// The descriptor stays open and owned by the caller.
    #[pyo3(signature = (fd, limit=None))]
    fn write_from_fd(&mut self, py: Python<'_>, fd: i32, limit: Option<u64>) -> PyResult<u64> {
        let w = self.live()?;
        py.detach(|| {
            // SAFETY: the caller keeps `fd` open for the duration; ManuallyDrop never closes it.
            let f = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
            w.write_from(&*f, limit)
        })
        .py()
    }

    /// A handle for reading this ingest's bytes back while they are written (see
    /// `IngestWatch`); the same stream for every call until a truncation starts a new one.
    fn watch(&mut self) -> PyResult<IngestWatch> {
        Ok(IngestWatch {
            inner: self.live()?.watch().py()?,
        })
    }

    fn truncate(&mut self, size: u64) -> PyResult<()> {
        self.live()?.truncate(size).py()
    }

    /// Verify size and digest and move the data into `blobs/`; returns the digest.
    #[pyo3(signature = (size=0, expected=None))]
    fn commit(&mut self, py: Python<'_>, size: u64, expected: Option<&str>) -> PyResult<String> {
        let expected = parse_opt(expected)?;
        self.live()?;
        let w = self.inner.take().expect("checked live");
        py.detach(|| w.commit(size, expected))
            .map(|d| d.to_string())
            .map_err(to_py)
    }

    /// Keep the ingest for a later resume and release the lock. Closing twice is harmless.
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        match self.inner.take() {
            Some(w) => py.detach(|| w.close()).py(),
            None => Ok(()),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(
        &mut self,
        py: Python<'_>,
        _exc: &Bound<'_, pyo3::types::PyTuple>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }
}

/// An ingest being written, whose bytes can be read back as they arrive: `apply_layer_watch`
/// applies them while they download. A verified commit ends the stream; a close (the download
/// stopped), a truncation, a failed commit or `cancel` breaks it, and readers then fail.
#[pyclass(module = "ctrstore._core", frozen)]
pub struct IngestWatch {
    inner: core_tail::IngestWatch,
}

impl IngestWatch {
    pub fn core(&self) -> &core_tail::IngestWatch {
        &self.inner
    }
}

#[pymethods]
impl IngestWatch {
    /// The ingest's ref.
    #[getter]
    fn reference(&self) -> &str {
        self.inner.reference()
    }

    /// Bytes written so far.
    #[getter]
    fn written(&self) -> u64 {
        self.inner.progress().written
    }

    /// Bytes read by the furthest reader.
    #[getter]
    fn read(&self) -> u64 {
        self.inner.progress().read
    }

    /// Readers following the ingest now.
    #[getter]
    fn readers(&self) -> usize {
        self.inner.progress().readers
    }

    /// Readers that have read everything written and wait for more.
    #[getter]
    fn waiting(&self) -> usize {
        self.inner.progress().waiting
    }

    /// Whether the writer is done (committed, or broken off).
    #[getter]
    fn ended(&self) -> bool {
        self.inner.progress().ended
    }

    /// Make the readers fail with `reason` (Aborted); the writer goes on.
    fn cancel(&self, reason: &str) {
        self.inner.cancel(reason)
    }

    fn __repr__(&self) -> String {
        let p = self.inner.progress();
        format!(
            "IngestWatch(reference={:?}, written={}, read={}, readers={}, ended={})",
            self.inner.reference(),
            p.written,
            p.read,
            p.readers,
            p.ended
        )
    }
}

/// Remove the ingest for a ref (NotFound if none, Unavailable if a writer holds it).
#[pyfunction]
pub fn abort_ingest(py: Python<'_>, root: PathBuf, reference: String) -> PyResult<()> {
    py.detach(|| core::abort(&root, &reference)).py()
}

/// Whether a writer holds the ingest directory `path` right now.
#[pyfunction]
pub fn ingest_in_use(path: PathBuf) -> PyResult<bool> {
    core::ingest_in_use(&path).py()
}

/// The ingest directory for a ref under a content store root.
#[pyfunction]
pub fn ingest_dir(root: PathBuf, reference: &str) -> PathBuf {
    core::ingest_dir(&root, reference)
}

/// The blob path for a digest under a content store root.
#[pyfunction]
pub fn blob_path(root: PathBuf, digest: &str) -> PyResult<PathBuf> {
    let d = digest.parse::<Digest>().py()?;
    Ok(core::blob_path(&root, &d))
}

// -- reading the store -------------------------------------------------------------------------

/// A `datetime` in UTC, to the microsecond (truncated), as Python's own times are.
fn to_datetime(py: Python<'_>, t: SystemTime) -> PyResult<Py<PyAny>> {
    static UTC: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    static FROMTIMESTAMP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let utc = UTC.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import("datetime")?.getattr("UTC")?.unbind())
    })?;
    let from = FROMTIMESTAMP.get_or_try_init(py, || -> PyResult<_> {
        Ok(py
            .import("datetime")?
            .getattr("datetime")?
            .getattr("fromtimestamp")?
            .unbind())
    })?;
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let dt = from.bind(py).call1((d.as_secs(), utc.bind(py)))?;
    let kw = PyDict::new(py);
    kw.set_item("microsecond", d.subsec_micros())?;
    Ok(dt.call_method("replace", (), Some(&kw))?.unbind())
}

/// A committed blob: its digest, size and when it was committed (the file's mtime).
#[pyclass(module = "ctrstore._core", frozen, get_all)]
pub struct BlobInfo {
    digest: String,
    size: u64,
    modified: Py<PyAny>,
}

impl BlobInfo {
    fn new(py: Python<'_>, b: core::BlobInfo) -> PyResult<Self> {
        Ok(BlobInfo {
            digest: b.digest.to_string(),
            size: b.size,
            modified: to_datetime(py, b.modified)?,
        })
    }
}

#[pymethods]
impl BlobInfo {
    fn __repr__(&self) -> String {
        format!("BlobInfo(digest={:?}, size={})", self.digest, self.size)
    }
}

/// What an ingest directory's files say about one write in progress.
#[pyclass(module = "ctrstore._core", frozen, get_all)]
pub struct IngestStatus {
    reference: String,
    offset: u64,
    total: Option<u64>,
    started_at: Py<PyAny>,
    updated_at: Py<PyAny>,
}

impl IngestStatus {
    fn new(py: Python<'_>, s: core::IngestStatus) -> PyResult<Self> {
        Ok(IngestStatus {
            reference: s.reference,
            offset: s.offset,
            total: s.total,
            started_at: to_datetime(py, s.started_at)?,
            updated_at: to_datetime(py, s.updated_at)?,
        })
    }
}

#[pymethods]
impl IngestStatus {
    fn __repr__(&self) -> String {
        format!(
            "IngestStatus(reference={:?}, offset={}, total={:?})",
            self.reference, self.offset, self.total
        )
    }
}

/// One directory (or stray file) under `ingest/`, as `list_ingests` finds it.
#[pyclass(module = "ctrstore._core", frozen, get_all)]
pub struct IngestEntry {
    name: String,
    path: PathBuf,
    reference: Option<String>,
    status: Option<Py<IngestStatus>>,
    in_use: Option<bool>,
}

#[pymethods]
impl IngestEntry {
    fn __repr__(&self) -> String {
        format!(
            "IngestEntry(name={:?}, reference={:?}, in_use={:?})",
            self.name, self.reference, self.in_use
        )
    }
}

/// Make `blobs/sha256/` and `ingest/` under a content store root if they are missing.
#[pyfunction]
pub fn create_content_layout(py: Python<'_>, root: PathBuf) -> PyResult<()> {
    py.detach(|| core::create_layout(&root)).py()
}

/// The blob for a digest (NotFound if the store does not hold it).
#[pyfunction]
pub fn blob_info(py: Python<'_>, root: PathBuf, digest: &str) -> PyResult<BlobInfo> {
    let d = digest.parse::<Digest>().py()?;
    let b = py.detach(|| core::blob_info(&root, &d)).py()?;
    BlobInfo::new(py, b)
}

/// Every blob under `blobs/sha256/`, by digest.
#[pyfunction]
pub fn walk_blobs(py: Python<'_>, root: PathBuf) -> PyResult<Vec<BlobInfo>> {
    let blobs = py.detach(|| core::walk_blobs(&root)).py()?;
    blobs.into_iter().map(|b| BlobInfo::new(py, b)).collect()
}

/// Remove the blob for a digest (NotFound if there is none).
#[pyfunction]
pub fn delete_blob(py: Python<'_>, root: PathBuf, digest: &str) -> PyResult<()> {
    let d = digest.parse::<Digest>().py()?;
    py.detach(|| core::delete_blob(&root, &d)).py()
}

/// The status of the ingest for a ref (NotFound if there is none, or it is unreadable).
#[pyfunction]
pub fn ingest_status(py: Python<'_>, root: PathBuf, reference: String) -> PyResult<IngestStatus> {
    let st = py.detach(|| core::ingest_status(&root, &reference)).py()?;
    IngestStatus::new(py, st)
}

/// Every directory under `ingest/`, by name; with `probe_locks`, whether a writer holds each.
#[pyfunction]
#[pyo3(signature = (root, probe_locks=true))]
pub fn list_ingests(
    py: Python<'_>,
    root: PathBuf,
    probe_locks: bool,
) -> PyResult<Vec<IngestEntry>> {
    let entries = py.detach(|| core::list_ingests(&root, probe_locks)).py()?;
    entries
        .into_iter()
        .map(|e| {
            let status = match e.status {
                Some(s) => Some(Py::new(py, IngestStatus::new(py, s)?)?),
                None => None,
            };
            Ok(IngestEntry {
                name: e.name,
                path: e.path,
                reference: e.reference,
                status,
                in_use: e.in_use,
            })
        })
        .collect()
}

/// Remove `ingest/<name>` unless a writer holds it: True if it is gone, False if held.
#[pyfunction]
pub fn remove_ingest(py: Python<'_>, root: PathBuf, name: String) -> PyResult<bool> {
    py.detach(|| core::remove_ingest(&root, &name)).py()
}
