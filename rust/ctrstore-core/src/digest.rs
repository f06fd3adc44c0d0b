//! Content digests: parsing `sha256:<hex>` strings and a streaming SHA-256 whose state can be
//! saved to disk and restored, so that a resumed ingest does not re-hash what it already wrote.
//!
//! Compression uses `sha2::compress256`, which picks the CPU's SHA extensions at run time.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use sha2::digest::consts::U64;
use sha2::digest::generic_array::GenericArray;

use crate::error::{invalid_argument, Error, Result};

/// The only algorithm ctrstore stores content under (as containerd does by default).
pub const SHA256: &str = "sha256";

/// A parsed, validated `algorithm:hex` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    pub fn from_sha256_bytes(bytes: &[u8; 32]) -> Self {
        Digest {
            hex: hex::encode(bytes),
        }
    }

    pub fn algorithm(&self) -> &'static str {
        SHA256
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Digest of a byte string (used for ingest directory names and chain ids).
    pub fn of_bytes(data: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(data);
        h.finish()
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (alg, hex) = s.split_once(':').ok_or_else(|| {
            invalid_argument(format!("invalid digest {s:?}: expected <algorithm>:<hex>"))
        })?;
        match alg {
            SHA256 => {}
            "sha384" | "sha512" => {
                return Err(invalid_argument(format!(
                    "invalid digest {s:?}: algorithm {alg} is not supported, only sha256"
                )))
            }
            _ => {
                return Err(invalid_argument(format!(
                    "invalid digest {s:?}: unknown algorithm {alg:?}"
                )))
            }
        }
        if hex.len() != 64 {
            return Err(invalid_argument(format!(
                "invalid digest {s:?}: sha256 needs 64 hex characters, got {}",
                hex.len()
            )));
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid_argument(format!(
                "invalid digest {s:?}: hex part must be lowercase [0-9a-f]"
            )));
        }
        Ok(Digest {
            hex: hex.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHA256}:{}", self.hex)
    }
}

const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Magic that starts a saved hash state, so a stray or foreign file is never mistaken for one.
const STATE_MAGIC: &[u8; 16] = b"ctrstore-sha256\x01";
/// Size of a saved state: magic, 8 state words, 8-byte length, 1-byte buffer fill, 64-byte buffer.
pub const STATE_LEN: usize = 16 + 32 + 8 + 1 + 64;

/// Streaming SHA-256 with an exportable state.
#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    len: u64,
    buf: [u8; 64],
    buf_len: usize,
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    pub fn new() -> Self {
        Sha256 {
            state: IV,
            len: 0,
            buf: [0; 64],
            buf_len: 0,
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn compress(&mut self, blocks: &[u8]) {
        debug_assert_eq!(blocks.len() % 64, 0);
        let n = blocks.len() / 64;
        // SAFETY: GenericArray<u8, U64> is a transparent [u8; 64] with alignment 1, and
        // `blocks` holds exactly `n` of them.
        let blocks: &[GenericArray<u8, U64>] = unsafe {
            std::slice::from_raw_parts(blocks.as_ptr() as *const GenericArray<u8, U64>, n)
        };
        sha2::compress256(&mut self.state, blocks);
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.buf_len > 0 {
            let take = (64 - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&data[..take]);
            self.buf_len += take;
            data = &data[take..];
            if self.buf_len < 64 {
                return;
            }
            let block = self.buf;
            self.compress(&block);
            self.buf_len = 0;
        }
        let whole = data.len() - data.len() % 64;
        if whole > 0 {
            self.compress(&data[..whole]);
        }
        let rest = &data[whole..];
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
    }

    /// The digest of everything hashed so far; the hasher itself is left untouched.
    pub fn finish(&self) -> Digest {
        let mut h = self.clone();
        let bit_len = h.len.wrapping_mul(8);
        let mut pad = [0u8; 72];
        pad[0] = 0x80;
        let pad_len = if h.buf_len < 56 {
            56 - h.buf_len
        } else {
            120 - h.buf_len
        };
        let len_bytes = bit_len.to_be_bytes();
        let total_len = h.len;
        h.update(&pad[..pad_len]);
        h.update(&len_bytes);
        h.len = total_len;
        debug_assert_eq!(h.buf_len, 0);
        let mut out = [0u8; 32];
        for (i, w) in h.state.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        Digest::from_sha256_bytes(&out)
    }

    /// Serialise the state (see [`STATE_LEN`]).
    pub fn export(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(STATE_LEN);
        v.extend_from_slice(STATE_MAGIC);
        for w in self.state {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v.extend_from_slice(&self.len.to_be_bytes());
        v.push(self.buf_len as u8);
        v.extend_from_slice(&self.buf);
        v
    }

    /// Restore a state written by [`Sha256::export`]; `None` if the bytes are not one.
    pub fn import(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != STATE_LEN || &bytes[..16] != STATE_MAGIC {
            return None;
        }
        let mut state = [0u32; 8];
        for (i, w) in state.iter_mut().enumerate() {
            *w = u32::from_be_bytes(bytes[16 + i * 4..20 + i * 4].try_into().ok()?);
        }
        let len = u64::from_be_bytes(bytes[48..56].try_into().ok()?);
        let buf_len = bytes[56] as usize;
        if buf_len >= 64 || (len % 64) as usize != buf_len {
            return None;
        }
        let mut buf = [0u8; 64];
        buf.copy_from_slice(&bytes[57..121]);
        Some(Sha256 {
            state,
            len,
            buf,
            buf_len,
        })
    }
}

/// Read size used by every streaming loop in the core.
pub const CHUNK: usize = 1 << 20;

/// Hash everything a reader yields. Returns the digest and the byte count.
pub fn hash_reader<R: Read>(mut r: R) -> Result<(Digest, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        h.update(&buf[..n]);
    }
    Ok((h.finish(), h.len()))
}

/// Hash a file by path.
pub fn hash_file(path: &Path) -> Result<(Digest, u64)> {
    let f = File::open(path).map_err(|e| Error::io(e, path.display()))?;
    hash_reader(f).map_err(|e| e.context(path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    fn reference(data: &[u8]) -> String {
        hex::encode(sha2::Sha256::digest(data))
    }

    #[test]
    fn known_vectors() {
        assert_eq!(
            Digest::of_bytes(b"").hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            Digest::of_bytes(b"abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn every_split_matches_reference() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in [0usize, 1, 55, 56, 63, 64, 65, 119, 120, 128, 999, 1000] {
            let want = reference(&data[..len]);
            for split in [0, 1, 17, 63, 64, len / 2, len] {
                let split = split.min(len);
                let mut h = Sha256::new();
                h.update(&data[..split]);
                h.update(&data[split..len]);
                assert_eq!(h.finish().hex(), want, "len {len} split {split}");
            }
        }
    }

    #[test]
    fn export_import_roundtrip_resumes() {
        let data = vec![42u8; 777];
        let mut h = Sha256::new();
        h.update(&data[..333]);
        let saved = h.export();
        assert_eq!(saved.len(), STATE_LEN);
        let mut r = Sha256::import(&saved).expect("valid state");
        r.update(&data[333..]);
        assert_eq!(r.finish().hex(), reference(&data));
        assert!(Sha256::import(&saved[1..]).is_none());
        let mut bad = saved.clone();
        bad[56] = 3; // buffer fill disagrees with length
        assert!(Sha256::import(&bad).is_none());
    }

    #[test]
    fn parse_rejects_bad_digests() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert!(good.parse::<Digest>().is_ok());
        for bad in [
            "sha256",
            "sha256:abc",
            &format!("sha256:{}", "A".repeat(64)),
            &format!("md5:{}", "a".repeat(64)),
            &format!("sha256:{}g", "a".repeat(63)),
        ] {
            let e = bad.parse::<Digest>().unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::InvalidArgument, "{bad}");
            assert!(e.to_string().contains("invalid digest"), "{e}");
        }
    }
}
