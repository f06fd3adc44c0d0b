//! One error type for the core, with kinds that mirror containerd's `errdefs`.
//!
//! Every fallible function in the core returns [`Result`]. The binding crate maps
//! [`ErrorKind`] to exactly one Python exception class each (see `ctrstore.errdefs`).

use std::fmt;
use std::io;

/// The error kinds, one per containerd errdefs class that the core can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    InvalidArgument,
    FailedPrecondition,
    PermissionDenied,
    Unavailable,
    NotImplemented,
    Aborted,
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::FailedPrecondition => "failed precondition",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::NotImplemented => "not implemented",
            ErrorKind::Aborted => "aborted",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error with a kind, a message that names what was wrong, and an optional source.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<io::Error>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The OS error number behind this error, if it came from the OS.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.as_ref().and_then(|e| e.raw_os_error())
    }

    /// Prefix the message with context, keeping kind and source.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.message = format!("{ctx}: {}", self.message);
        self
    }

    /// Map an io::Error, naming the path or operation it happened on.
    pub fn io(err: io::Error, what: impl fmt::Display) -> Self {
        let kind = kind_of_io(&err);
        Error {
            kind,
            message: format!("{what}: {err}"),
            source: Some(err),
        }
    }
}

pub fn not_found(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::NotFound, msg)
}
pub fn already_exists(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::AlreadyExists, msg)
}
pub fn invalid_argument(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidArgument, msg)
}
pub fn failed_precondition(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::FailedPrecondition, msg)
}
pub fn unavailable(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unavailable, msg)
}

fn kind_of_io(err: &io::Error) -> ErrorKind {
    match err.raw_os_error() {
        Some(libc::ENOENT) => ErrorKind::NotFound,
        Some(libc::EEXIST) | Some(libc::ENOTEMPTY) => ErrorKind::AlreadyExists,
        Some(libc::EACCES) | Some(libc::EPERM) => ErrorKind::PermissionDenied,
        Some(libc::EWOULDBLOCK) => ErrorKind::Unavailable,
        Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => ErrorKind::NotImplemented,
        Some(libc::EINVAL) | Some(libc::ENOTDIR) | Some(libc::ENAMETOOLONG) => {
            ErrorKind::InvalidArgument
        }
        _ => match err.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => ErrorKind::InvalidArgument,
            _ => ErrorKind::Internal,
        },
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        let kind = kind_of_io(&err);
        Error {
            kind,
            message: err.to_string(),
            source: Some(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_kinds() {
        let cases = [
            (libc::ENOENT, ErrorKind::NotFound),
            (libc::EEXIST, ErrorKind::AlreadyExists),
            (libc::EACCES, ErrorKind::PermissionDenied),
            (libc::EWOULDBLOCK, ErrorKind::Unavailable),
            (libc::EIO, ErrorKind::Internal),
        ];
        for (errno, kind) in cases {
            let e = Error::io(io::Error::from_raw_os_error(errno), "/x");
            assert_eq!(e.kind(), kind, "errno {errno}");
            assert!(e.to_string().starts_with("/x: "));
            assert_eq!(e.raw_os_error(), Some(errno));
        }
    }

    #[test]
    fn context_keeps_kind() {
        let e = not_found("blob sha256:00").context("reading");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.to_string(), "reading: blob sha256:00");
    }
}
