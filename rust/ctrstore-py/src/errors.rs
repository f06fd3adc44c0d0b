//! The one mapping from core errors to Python exceptions.
//!
//! The exception classes are defined in Python (`ctrstore.errdefs`) and imported here, so both
//! languages raise the very same classes.

use ctrstore_core::{Error, ErrorKind};
use pyo3::PyErr;

pyo3::import_exception!(ctrstore.errdefs, NotFound);
pyo3::import_exception!(ctrstore.errdefs, AlreadyExists);
pyo3::import_exception!(ctrstore.errdefs, InvalidArgument);
pyo3::import_exception!(ctrstore.errdefs, FailedPrecondition);
pyo3::import_exception!(ctrstore.errdefs, PermissionDenied);
pyo3::import_exception!(ctrstore.errdefs, Unavailable);
pyo3::import_exception!(ctrstore.errdefs, Unimplemented);
pyo3::import_exception!(ctrstore.errdefs, Aborted);
pyo3::import_exception!(ctrstore.errdefs, Internal);

/// Convert a core error into the matching `ctrstore.errdefs` exception.
pub fn to_py(err: Error) -> PyErr {
    let msg = err.to_string();
    match err.kind() {
        ErrorKind::NotFound => NotFound::new_err(msg),
        ErrorKind::AlreadyExists => AlreadyExists::new_err(msg),
        ErrorKind::InvalidArgument => InvalidArgument::new_err(msg),
        ErrorKind::FailedPrecondition => FailedPrecondition::new_err(msg),
        ErrorKind::PermissionDenied => PermissionDenied::new_err(msg),
        ErrorKind::Unavailable => Unavailable::new_err(msg),
        ErrorKind::NotImplemented => Unimplemented::new_err(msg),
        ErrorKind::Aborted => Aborted::new_err(msg),
        ErrorKind::Internal => Internal::new_err(msg),
    }
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
