//! `ctrstore._core`: a thin PyO3 layer over `ctrstore-core`. No logic lives here; each file
//! mirrors one core module, and `errors.rs` holds the single error mapping.

use pyo3::prelude::*;

mod archive;
mod buffer;
mod content;
mod digest;
mod errors;
mod mount;

#[pymodule(gil_used = false)]
mod _core {
    #[pymodule_export]
    use super::archive::{
        apply_layer_fd, apply_layer_path, apply_layer_watch, open_in_root, rootless_owner,
        whiteout_path, write_diff, DiffStats, LayerDecoder, Stats,
    };
    #[pymodule_export]
    use super::content::{
        abort_ingest, blob_info, blob_path, create_content_layout, delete_blob, ingest_dir,
        ingest_in_use, ingest_status, list_ingests, remove_ingest, walk_blobs, BlobInfo,
        IngestEntry, IngestStatus, IngestWatch, IngestWriter,
    };
    #[pymodule_export]
    use super::digest::{parse_digest, sha256_bytes, sha256_file, Digester};
    #[pymodule_export]
    use super::errors::{errno_kind, errno_kinds};
    #[pymodule_export]
    use super::mount::{mount, mountinfo, unmount, unmount_all, MountInfo};

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        let key = ctrstore_core::archive::rootlesscontainers::KEY;
        m.add("ROOTLESS_OWNER_XATTR", key.to_str().expect("an ASCII name"))
    }
}
