//! One error type for the core, with kinds that mirror containerd's `errdefs`.
//!
//! Every fallible function in the core returns [`Result`]. The binding crate maps
//! [`ErrorKind`] to exactly one Python exception class each (see `ctrstore.errdefs`).
//!
//! [`ERRNO_KINDS`] is the one table from OS error numbers to kinds: the Rust core uses it for
//! every `io::Error`, and Python's `ctrstore.errdefs.from_oserror` reads the same table through
//! the binding, so one failure raises one class whichever language hit it.

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
    /// Out of a resource: disk space or quota (ENOSPC, EDQUOT), descriptors, memory.
    ResourceExhausted,
    Internal,
    /// An OS error this table does not know.
    Unknown,
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
            ErrorKind::ResourceExhausted => "resource exhausted",
            ErrorKind::Internal => "internal",
            ErrorKind::Unknown => "unknown",
        }
    }
}

/// OS error numbers and the kind each one is. An errno not listed is [`ErrorKind::Unknown`].
pub const ERRNO_KINDS: &[(i32, ErrorKind)] = &[
    (libc::ENOENT, ErrorKind::NotFound),
    (libc::EEXIST, ErrorKind::AlreadyExists),
    (libc::ENOTEMPTY, ErrorKind::FailedPrecondition),
    (libc::EXDEV, ErrorKind::FailedPrecondition),
    (libc::EACCES, ErrorKind::PermissionDenied),
    (libc::EPERM, ErrorKind::PermissionDenied),
    (libc::EROFS, ErrorKind::PermissionDenied),
    (libc::EWOULDBLOCK, ErrorKind::Unavailable),
    (libc::EBUSY, ErrorKind::Unavailable),
    (libc::ETXTBSY, ErrorKind::Unavailable),
    (libc::ECONNREFUSED, ErrorKind::Unavailable),
    (libc::ECONNRESET, ErrorKind::Unavailable),
    (libc::ETIMEDOUT, ErrorKind::Unavailable),
    (libc::EHOSTUNREACH, ErrorKind::Unavailable),
    (libc::ENETUNREACH, ErrorKind::Unavailable),
    (libc::ENOSYS, ErrorKind::NotImplemented),
    (libc::EOPNOTSUPP, ErrorKind::NotImplemented),
    (libc::EINVAL, ErrorKind::InvalidArgument),
    (libc::ENOTDIR, ErrorKind::InvalidArgument),
    (libc::EISDIR, ErrorKind::InvalidArgument),
    (libc::ENAMETOOLONG, ErrorKind::InvalidArgument),
    (libc::ELOOP, ErrorKind::InvalidArgument),
    (libc::EINTR, ErrorKind::Aborted),
    (libc::ENOSPC, ErrorKind::ResourceExhausted),
    (libc::EDQUOT, ErrorKind::ResourceExhausted),
    (libc::EMFILE, ErrorKind::ResourceExhausted),
    (libc::ENFILE, ErrorKind::ResourceExhausted),
    (libc::ENOMEM, ErrorKind::ResourceExhausted),
    (libc::EFBIG, ErrorKind::ResourceExhausted),
];

/// The kind of an OS error number (see [`ERRNO_KINDS`]).
pub fn kind_of_errno(errno: i32) -> ErrorKind {
    ERRNO_KINDS
        .iter()
        .find(|(n, _)| *n == errno)
        .map_or(ErrorKind::Unknown, |(_, k)| *k)
}

/// An error with a kind, a message that names what was wrong, and an optional source.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<io::Error>,
    path: Option<std::path::PathBuf>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
            path: None,
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

    /// The file the OS error happened on, when known (for "N MB free on ..." messages).
    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// Name the file the error happened on.
    pub fn with_path(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Take the OS error behind this error (the binding makes it the Python `__cause__`).
    pub fn take_source(&mut self) -> Option<io::Error> {
        self.source.take()
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
            path: None,
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
        Some(errno) => kind_of_errno(errno),
        None => match err.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => ErrorKind::InvalidArgument,
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                ErrorKind::ResourceExhausted
            }
            _ => ErrorKind::Unknown,
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
            path: None,
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
            (libc::ENOTEMPTY, ErrorKind::FailedPrecondition),
            (libc::EBUSY, ErrorKind::Unavailable),
            (libc::EROFS, ErrorKind::PermissionDenied),
            (libc::ENAMETOOLONG, ErrorKind::InvalidArgument),
            (libc::ENOSPC, ErrorKind::ResourceExhausted),
            (libc::EDQUOT, ErrorKind::ResourceExhausted),
            (libc::EIO, ErrorKind::Unknown),
        ];
        for (errno, kind) in cases {
            let e = Error::io(io::Error::from_raw_os_error(errno), "/x");
            assert_eq!(e.kind(), kind, "errno {errno}");
            assert!(e.to_string().starts_with("/x: "));
            assert_eq!(e.raw_os_error(), Some(errno));
        }
    }

    #[test]
    fn every_table_entry_is_what_io_errors_get() {
        let mut seen = std::collections::HashSet::new();
        for (errno, kind) in ERRNO_KINDS {
            assert!(seen.insert(*errno), "errno {errno} is listed twice");
            let e = Error::from(io::Error::from_raw_os_error(*errno));
            assert_eq!(e.kind(), *kind, "errno {errno}");
        }
    }

    #[test]
    fn context_keeps_kind() {
        let e = not_found("blob sha256:00").context("reading");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.to_string(), "reading: blob sha256:00");
    }
}
