//! ctrstore-core: the parts of ctrstore that move bytes.
//!
//! - [`digest`]: `sha256:<hex>` digests and a streaming SHA-256 with a saveable state.
//! - [`content`]: the content store's blobs and resumable, verifying, cross-process-locked ingests.
//! - [`tail`]: reading an ingest's bytes back while they are written (apply while downloading).
//! - [`error`]: one error type whose kinds mirror containerd's errdefs.
//!
//! Nothing here knows about Python; the `ctrstore-py` crate is a thin binding over it.

pub mod archive;
pub mod content;
pub mod digest;
pub mod error;
pub mod mount;
pub mod tail;
pub mod timefmt;

pub use digest::Digest;
pub use error::{kind_of_errno, Error, ErrorKind, Result, ERRNO_KINDS};
