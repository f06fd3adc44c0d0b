//! Read-only access to any Python object with the buffer protocol (bytes, bytearray,
//! memoryview, mmap...), so callers need not copy into `bytes` first.

use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;

/// A held buffer export; `as_slice` stays valid while this lives.
pub struct Bytes {
    buf: PyBuffer<u8>,
}

impl Bytes {
    pub fn new(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let buf = PyBuffer::<u8>::get(obj)?;
        if !buf.is_c_contiguous() {
            return Err(crate::errors::InvalidArgument::new_err(
                "buffer must be C-contiguous bytes",
            ));
        }
        Ok(Bytes { buf })
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the export is C-contiguous, of u8, and held by `self.buf` for our lifetime.
        // Like hashlib, we accept that another thread mutating a bytearray meanwhile would
        // change what is hashed; it cannot make us read out of bounds.
        unsafe { std::slice::from_raw_parts(self.buf.buf_ptr() as *const u8, self.buf.len_bytes()) }
    }
}
