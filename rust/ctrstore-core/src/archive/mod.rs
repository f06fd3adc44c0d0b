//! Applying image layers (tar streams, optionally gzip- or zstd-compressed) to a directory,
//! the way containerd's `pkg/archive` `Apply` does (see `containerd-reference.md` §7).
//!
//! - [`compression`]: magic-byte detection and a decompressing reader.
//! - [`apply_layer`]: stream a layer into a directory, computing its diff id in the same pass;
//!   [`DecodingLayer`]: the same, its decoding started ahead of its apply.
//! - [`write_diff`]: the other way: a snapshot's changes as a layer, compressed and hashed in
//!   the same pass (the whiteout encoding below is this module's, both ways).
//! - [`open_in_root`]: open a path inside a root as if it were `/`.
//!
//! All path resolution happens inside the target as if it were `/`, with fd-relative system
//! calls (`openat` with `O_NOFOLLOW`, component by component), so an entry or a symlink in the
//! layer can never make the applier touch anything outside the target.

mod apply;
pub mod compression;
mod diff;
mod path;
mod pipeline;
mod resolve;
pub mod rootlesscontainers;
mod sys;
mod tarwriter;

#[cfg(test)]
mod diff_tests;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use crate::digest::Digest;

pub use apply::{apply_layer, DecodingLayer, AHEAD_DEPTH};
pub use compression::{Compression, Decompress};
pub use diff::{write_diff, write_diff_with, DiffOptions, DiffSource, DiffStats};
pub use resolve::open_in_root;

/// A layer entry named `.wh.<name>` deletes `<name>` from the layers below (OCI image spec,
/// "Whiteouts").
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// A layer entry `<dir>/.wh..wh..opq` hides everything the layers below have in `<dir>`.
pub const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";

/// The layer entry that deletes `path` (`dir/.wh.name`), or with `opaque` the one that hides
/// what the layers below have in directory `path` (`path/.wh..wh..opq`). `path` is relative,
/// without a trailing `/`.
pub fn whiteout_path(path: &[u8], opaque: bool) -> Vec<u8> {
    let (dir, name): (&[u8], Vec<u8>) = if opaque {
        (path, WHITEOUT_OPAQUE.to_vec())
    } else {
        let (dir, base) = match path.iter().rposition(|b| *b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&b""[..], path),
        };
        (dir, [WHITEOUT_PREFIX, base].concat())
    };
    if dir.is_empty() {
        return name;
    }
    [dir, b"/", &name].concat()
}

/// What to do with whiteout entries (`.wh.<name>`, `.wh..wh..opq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// Write overlayfs whiteouts: a 0:0 character device for a deleted name and the
    /// `trusted.overlay.opaque=y` (or `user.overlay.opaque`) xattr for an opaque directory.
    /// Used when the target is an overlay upper directory.
    #[default]
    Overlay,
    /// Delete what the whiteouts name from the target (which holds the merged lower layers).
    Delete,
}

/// Options for [`apply_layer`].
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub whiteouts: WhiteoutMode,
    /// Overlay lower directories, nearest first: an implied parent directory that one of them
    /// has gets its owner, mode, times and non-`trusted.*` xattrs.
    pub parents: Vec<PathBuf>,
    /// Do not chown entries to the uid/gid in the archive.
    pub no_same_owner: bool,
    /// Write `user.overlay.*` xattrs instead of `trusted.overlay.*`.
    pub userxattr: bool,
    /// Single-id mode (a user namespace that maps one id): chown nothing, and record an
    /// entry's owner, where it is not 0:0, in the `user.rootlesscontainers` xattr as umoci
    /// does ([`rootlesscontainers`]); such an xattr in the layer itself is dropped.
    pub owner_xattr: bool,
}

/// What [`apply_layer`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyStats {
    /// sha256 of the whole decompressed stream, including anything after the end blocks.
    pub diff_id: Digest,
    pub compression: Compression,
    /// Bytes read from the reader given to [`apply_layer`].
    pub compressed_bytes: u64,
    /// Bytes of the decompressed stream (the diff id's input).
    pub uncompressed_bytes: u64,
    /// Tar entries applied or skipped, PAX global headers included (PAX local and GNU long
    /// name/link headers are part of the entry they describe).
    pub entries: u64,
}
