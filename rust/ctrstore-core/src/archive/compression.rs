//! Layer compression: detection by magic bytes and a decompressing reader.
//!
//! - gzip: `1f 8b 08`; every member of a multi-member stream is decoded (zlib-rs inflater).
//! - zstd: frame magic `28 b5 2f fd`, or a skippable frame `0x184D2A50..=0x184D2A5F` first;
//!   all frames are decoded, skippable ones skipped.
//! - anything else is passed through as an uncompressed tar.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

use crate::digest::Sha256;

/// Size of the buffer between a raw (compressed) reader and the decoder.
const INPUT_BUF: usize = 256 * 1024;

/// How a layer stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Detect from the first bytes of a stream (4 are enough; fewer means "not compressed"
    /// unless they already match a full magic).
    pub fn detect(prefix: &[u8]) -> Compression {
        if prefix.len() >= 3 && prefix[..3] == [0x1f, 0x8b, 0x08] {
            return Compression::Gzip;
        }
        if prefix.len() >= 4 {
            if prefix[..4] == [0x28, 0xb5, 0x2f, 0xfd] {
                return Compression::Zstd;
            }
            let magic = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
            if (0x184D2A50..=0x184D2A5F).contains(&magic) {
                return Compression::Zstd;
            }
        }
        Compression::None
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reader that first yields some already-read bytes, then the rest of `inner`.
pub struct Peeked<R> {
    head: [u8; 4],
    pos: usize,
    len: usize,
    inner: R,
}

impl<R: Read> Read for Peeked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.len {
            let n = (self.len - self.pos).min(buf.len());
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

enum Inner<R: Read> {
    Plain(Peeked<R>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<Peeked<R>>>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<Peeked<R>>>>),
}

/// Decompresses a layer stream of whichever compression its magic bytes announce.
pub struct Decompress<R: Read> {
    inner: Inner<R>,
    compression: Compression,
}

impl<R: Read> Decompress<R> {
    /// Peek at the first bytes of `reader` and set up the matching decoder.
    pub fn new(mut reader: R) -> io::Result<Self> {
        let mut head = [0u8; 4];
        let mut len = 0;
        while len < head.len() {
            match reader.read(&mut head[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let compression = Compression::detect(&head[..len]);
        let peeked = Peeked {
            head,
            pos: 0,
            len,
            inner: reader,
        };
        let inner = match compression {
            Compression::None => Inner::Plain(peeked),
            Compression::Gzip => Inner::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(
                BufReader::with_capacity(INPUT_BUF, peeked),
            ))),
            Compression::Zstd => Inner::Zstd(Box::new(zstd::stream::read::Decoder::with_buffer(
                BufReader::with_capacity(INPUT_BUF, peeked),
            )?)),
        };
        Ok(Decompress { inner, compression })
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }
}

impl<R: Read> Read for Decompress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(r) => r.read(buf),
            Inner::Gzip(r) => r.read(buf),
            Inner::Zstd(r) => r.read(buf),
        }
    }
}

/// Counts the bytes read through it.
pub struct CountingReader<'a, R> {
    pub inner: R,
    pub count: &'a std::cell::Cell<u64>,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Hashes (SHA-256) and counts the bytes read through it.
pub struct HashingReader<R> {
    pub inner: R,
    pub hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Read until EOF, discarding (used to consume what follows a tar's end blocks).
pub fn drain<R: BufRead>(r: &mut R) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = match r.fill_buf() {
            Ok([]) => return Ok(total),
            Ok(b) => b.len(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        r.consume(n);
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(data: &[u8]) -> (Compression, Vec<u8>) {
        let mut d = Decompress::new(data).unwrap();
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        (d.compression(), out)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn detects_magic() {
        assert_eq!(
            Compression::detect(&[0x1f, 0x8b, 0x08, 0]),
            Compression::Gzip
        );
        assert_eq!(
            Compression::detect(&[0x1f, 0x8b, 0x07, 0]),
            Compression::None
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect(&[0x50, 0x2a, 0x4d, 0x18]),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect(&[0x5f, 0x2a, 0x4d, 0x18]),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect(&[0x60, 0x2a, 0x4d, 0x18]),
            Compression::None
        );
        assert_eq!(Compression::detect(b"usr/"), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
        assert_eq!(Compression::detect(&[0x1f, 0x8b]), Compression::None);
    }

    #[test]
    fn plain_short_and_empty() {
        assert_eq!(read_all(b""), (Compression::None, vec![]));
        assert_eq!(read_all(b"ab"), (Compression::None, b"ab".to_vec()));
        assert_eq!(
            read_all(b"hello world"),
            (Compression::None, b"hello world".to_vec())
        );
    }

    #[test]
    fn gzip_multi_member() {
        let mut data = gzip(b"first member, ");
        data.extend(gzip(b"second member"));
        data.extend(gzip(b""));
        assert_eq!(
            read_all(&data),
            (Compression::Gzip, b"first member, second member".to_vec())
        );
    }

    #[test]
    fn zstd_frames_and_skippable() {
        let mut data = Vec::new();
        // A skippable frame first: magic 0x184D2A53, 4-byte length, payload.
        data.extend_from_slice(&0x184D2A53u32.to_le_bytes());
        data.extend_from_slice(&3u32.to_le_bytes());
        data.extend_from_slice(b"xyz");
        data.extend(zstd::stream::encode_all(&b"frame one "[..], 3).unwrap());
        data.extend_from_slice(&0x184D2A50u32.to_le_bytes());
        data.extend_from_slice(&0u32.to_le_bytes());
        data.extend(zstd::stream::encode_all(&b"frame two"[..], 3).unwrap());
        assert_eq!(
            read_all(&data),
            (Compression::Zstd, b"frame one frame two".to_vec())
        );
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let mut data = gzip(&vec![7u8; 100_000]);
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        data.truncate(data.len() - 4);
        let mut d = Decompress::new(&data[..]).unwrap();
        let mut out = Vec::new();
        assert!(d.read_to_end(&mut out).is_err());
    }
}
