//! Bindings for `ctrstore_core::content`.

use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::unix::io::FromRawFd;
use std::path::PathBuf;

use ctrstore_core::content::{self as core, IngestWriter as CoreWriter};
use ctrstore_core::Digest;
use pyo3::prelude::*;

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
