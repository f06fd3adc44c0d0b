//! The `user.rootlesscontainers` xattr (rootless-containers/proto): the owner a file has in
//! the image, kept beside a file that a single-id user namespace could not chown (every file
//! is owned by the one mapped id, 0 inside). umoci writes and reads it so (`oci/layer`
//! `unmapHeader`/`mapHeader`), and so do we in single-id mode:
//!
//! - the value is the protobuf encoding of `message Resource { uint32 uid = 1; uint32 gid = 2; }`;
//! - an id of 0 is written as [`NOOP_ID`] (`uint32(-1)`: "as the file is", which is 0 in the
//!   namespace), and no xattr at all is written for 0:0 (umoci: a waste of space otherwise);
//! - reading, a field equal to [`NOOP_ID`] leaves the file's own id; an absent field is 0
//!   (proto3's default); the xattr is never carried into a layer.

use std::ffi::CStr;

use crate::error::{invalid_argument, Result};

/// The xattr's name.
pub const KEY: &CStr = c"user.rootlesscontainers";
/// "No change": the id the file has on disk.
pub const NOOP_ID: u32 = u32::MAX;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The xattr value for an entry owned by `uid:gid` in the image, or None for 0:0 (no xattr).
pub fn encode(uid: u32, gid: u32) -> Option<Vec<u8>> {
    if uid == 0 && gid == 0 {
        return None;
    }
    let noop = |id: u32| if id == 0 { NOOP_ID } else { id };
    let mut out = Vec::with_capacity(12);
    // proto3 leaves out fields equal to 0; after the NOOP_ID substitution none is.
    out.push(0x08); // field 1, varint
    put_varint(&mut out, u64::from(noop(uid)));
    out.push(0x10); // field 2, varint
    put_varint(&mut out, u64::from(noop(gid)));
    Some(out)
}

fn varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The `(uid, gid)` a value records (each [`NOOP_ID`] where it says "no change"). Unknown
/// fields are skipped, as protobuf readers do; a malformed value is an error.
pub fn decode(value: &[u8]) -> Result<(u32, u32)> {
    let bad = || {
        invalid_argument(format!(
            "malformed {} xattr value {:02x?}",
            KEY.to_string_lossy(),
            value
        ))
    };
    let (mut uid, mut gid) = (0u32, 0u32);
    let mut at = 0;
    while at < value.len() {
        let tag = varint(value, &mut at).ok_or_else(bad)?;
        match (tag >> 3, tag & 7) {
            (field @ (1 | 2), 0) => {
                let v = varint(value, &mut at).ok_or_else(bad)?;
                // A uint32 field written as a wider varint keeps its low 32 bits.
                if field == 1 {
                    uid = v as u32;
                } else {
                    gid = v as u32;
                }
            }
            (_, 0) => {
                varint(value, &mut at).ok_or_else(bad)?;
            }
            (_, 1) => at += 8,
            (_, 5) => at += 4,
            (_, 2) => {
                let n = varint(value, &mut at).ok_or_else(bad)?;
                at = at
                    .checked_add(usize::try_from(n).map_err(|_| bad())?)
                    .ok_or_else(bad)?;
            }
            _ => return Err(bad()),
        }
        if at > value.len() {
            return Err(bad());
        }
    }
    Ok((uid, gid))
}

/// The owner to write into a layer for a file owned by `st_uid:st_gid` that carries `value`.
pub fn owner(value: &[u8], st_uid: u32, st_gid: u32) -> Result<(u32, u32)> {
    let (uid, gid) = decode(value)?;
    Ok((
        if uid == NOOP_ID { st_uid } else { uid },
        if gid == NOOP_ID { st_gid } else { gid },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_umocis() {
        // What Go's proto.Marshal(&Resource{Uid: 1000, Gid: NoopID}) gives.
        assert_eq!(
            encode(1000, 0).unwrap(),
            [0x08, 0xe8, 0x07, 0x10, 0xff, 0xff, 0xff, 0xff, 0x0f]
        );
        assert_eq!(
            encode(0, 5).unwrap(),
            [0x08, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x10, 0x05]
        );
        assert_eq!(encode(1, 1).unwrap(), [0x08, 0x01, 0x10, 0x01]);
        assert_eq!(encode(0, 0), None);
    }

    #[test]
    fn decoding_round_trips_and_tolerates_what_protobuf_allows() {
        for (u, g) in [(1000, 0), (0, 5), (65534, 65534), (1, 1 << 31)] {
            let v = encode(u, g).unwrap();
            let noop = |id: u32| if id == 0 { NOOP_ID } else { id };
            assert_eq!(decode(&v).unwrap(), (noop(u), noop(g)));
            assert_eq!(owner(&v, 0, 0).unwrap(), (u, g));
        }
        // Absent fields are 0; field order is free; unknown fields are skipped.
        assert_eq!(decode(&[]).unwrap(), (0, 0));
        assert_eq!(decode(&[0x10, 0x07, 0x08, 0x03]).unwrap(), (3, 7));
        assert_eq!(
            decode(&[0x1a, 0x02, 0xaa, 0xbb, 0x08, 0x09, 0x25, 1, 2, 3, 4]).unwrap(),
            (9, 0)
        );
        // Truncated or impossible values are errors naming the xattr.
        for bad in [&[0x08][..], &[0x08, 0x80], &[0x1a, 0x05, 0x00], &[0x0b]] {
            let e = decode(bad).unwrap_err().to_string();
            assert!(e.contains("user.rootlesscontainers"), "{e}");
        }
    }
}
