//! Bindings for `ctrstore_core::digest`.

use std::path::PathBuf;

use ctrstore_core::digest::{self, Digest, Sha256};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::buffer::Bytes;
use crate::errors::ToPyResult;

/// Streaming SHA-256. Large updates release the GIL.
#[pyclass(module = "ctrstore._core")]
pub struct Digester {
    inner: Sha256,
}

/// Updates at least this long are hashed with the GIL released.
const DETACH_AT: usize = 64 * 1024;

#[pymethods]
impl Digester {
    #[new]
    fn new() -> Self {
        Digester {
            inner: Sha256::new(),
        }
    }

    fn update(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let held = Bytes::new(data)?;
        let data = held.as_slice();
        if data.len() >= DETACH_AT {
            let h = &mut self.inner;
            py.detach(|| h.update(data));
        } else {
            self.inner.update(data);
        }
        Ok(())
    }

    /// `sha256:<hex>` of everything so far.
    fn digest(&self) -> String {
        self.inner.finish().to_string()
    }

    fn hexdigest(&self) -> String {
        self.inner.finish().hex().to_owned()
    }

    #[getter]
    fn size(&self) -> u64 {
        self.inner.len()
    }

    /// The saveable state, for resuming later with `Digester.from_state`.
    fn state<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.export())
    }

    #[staticmethod]
    fn from_state(state: &[u8]) -> PyResult<Self> {
        Sha256::import(state)
            .map(|inner| Digester { inner })
            .ok_or_else(|| {
                crate::errors::InvalidArgument::new_err("not a saved ctrstore sha256 state")
            })
    }
}

/// Validate a digest string and return it normalised.
#[pyfunction]
pub fn parse_digest(s: &str) -> PyResult<String> {
    s.parse::<Digest>().py().map(|d| d.to_string())
}

/// `sha256:<hex>` of a byte string.
#[pyfunction]
pub fn sha256_bytes(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<String> {
    let held = Bytes::new(data)?;
    let data = held.as_slice();
    Ok(py.detach(|| Digest::of_bytes(data).to_string()))
}

/// Hash a whole file, returning `(digest, size)`; the GIL is released while reading.
#[pyfunction]
pub fn sha256_file(py: Python<'_>, path: PathBuf) -> PyResult<(String, u64)> {
    let (d, n) = py.detach(|| digest::hash_file(&path)).py()?;
    Ok((d.to_string(), n))
}
