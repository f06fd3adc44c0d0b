//! The one mapping from core errors to Python exceptions, and the errno table Python uses.
//!
//! The exception classes are defined in Python (`ctrstore.errdefs`) and imported here, so both
//! languages raise the very same classes. An error that came from the OS keeps it: the
//! exception's `errno` and `filename` attributes are set and its `__cause__` is the `OSError`.

use ctrstore_core::{kind_of_errno, Error, ErrorKind, ERRNO_KINDS};
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::PyErr;

pyo3::import_exception!(ctrstore.errdefs, NotFound);
pyo3::import_exception!(ctrstore.errdefs, AlreadyExists);
pyo3::import_exception!(ctrstore.errdefs, InvalidArgument);
pyo3::import_exception!(ctrstore.errdefs, FailedPrecondition);
pyo3::import_exception!(ctrstore.errdefs, PermissionDenied);
pyo3::import_exception!(ctrstore.errdefs, Unavailable);
pyo3::import_exception!(ctrstore.errdefs, Unimplemented);
pyo3::import_exception!(ctrstore.errdefs, Aborted);
pyo3::import_exception!(ctrstore.errdefs, ResourceExhausted);
pyo3::import_exception!(ctrstore.errdefs, Internal);
pyo3::import_exception!(ctrstore.errdefs, Unknown);

/// Convert a core error into the matching `ctrstore.errdefs` exception.
pub fn to_py(mut err: Error) -> PyErr {
    let msg = err.to_string();
    let path = err.path().map(|p| p.to_owned());
    let source = err.take_source();
    let e = match err.kind() {
        ErrorKind::NotFound => NotFound::new_err(msg),
        ErrorKind::AlreadyExists => AlreadyExists::new_err(msg),
        ErrorKind::InvalidArgument => InvalidArgument::new_err(msg),
        ErrorKind::FailedPrecondition => FailedPrecondition::new_err(msg),
        ErrorKind::PermissionDenied => PermissionDenied::new_err(msg),
        ErrorKind::Unavailable => Unavailable::new_err(msg),
        ErrorKind::NotImplemented => Unimplemented::new_err(msg),
        ErrorKind::Aborted => Aborted::new_err(msg),
        ErrorKind::ResourceExhausted => ResourceExhausted::new_err(msg),
        ErrorKind::Internal => Internal::new_err(msg),
        ErrorKind::Unknown => Unknown::new_err(msg),
    };
    let Some(source) = source else { return e };
    Python::attach(|py| {
        let errno = source.raw_os_error();
        let value = e.value(py);
        // Attribute errors cannot happen on these plain exception instances; ignore them.
        if let Some(n) = errno {
            let _ = value.setattr("errno", n);
        }
        if let Some(p) = &path {
            let _ = value.setattr("filename", p.to_string_lossy().into_owned());
        }
        let cause = match errno {
            Some(n) => {
                // OSError(errno, strerror[, filename]) picks the subclass (FileNotFoundError, ...).
                let text = source.to_string();
                let strerror = text
                    .strip_suffix(&format!(" (os error {n})"))
                    .unwrap_or(&text)
                    .to_owned();
                match &path {
                    Some(p) => PyOSError::new_err((n, strerror, p.to_string_lossy().into_owned())),
                    None => PyOSError::new_err((n, strerror)),
                }
            }
            None => PyErr::from(source),
        };
        e.set_cause(py, Some(cause));
    });
    e
}

/// `?`-friendly conversion at the boundary: `core_call().map_err(to_py)?` reads as `.py()?`.
pub trait ToPyResult<T> {
    fn py(self) -> pyo3::PyResult<T>;
}

impl<T> ToPyResult<T> for Result<T, Error> {
    fn py(self) -> pyo3::PyResult<T> {
        self.map_err(to_py)
    }
}

/// The errdefs kind (e.g. ``"not found"``) of an OS error number, from the core's one table.
#[pyfunction]
pub fn errno_kind(errno: i32) -> &'static str {
    kind_of_errno(errno).as_str()
}

/// The whole table: errno -> kind, for every errno that is not ``"unknown"``.
#[pyfunction]
pub fn errno_kinds() -> Vec<(i32, &'static str)> {
    ERRNO_KINDS.iter().map(|(n, k)| (*n, k.as_str())).collect()
}
