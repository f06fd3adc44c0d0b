//! A tar writer in the shape of Go's `archive/tar` with `Format: FormatPAX`, which containerd's
//! diff writer (`pkg/archive` `ChangeWriter`) uses: ustar headers; a PAX extended header
//! (`x`) before an entry whose name or link target is longer than 100 bytes or not ASCII,
//! whose size, owner or time does not fit the octal fields, or that has xattrs
//! (`SCHILY.xattr.<name>`); no user or group names; two zero blocks at the end.

use std::io::{self, Read, Write};

pub const BLOCK: usize = 512;
const COPY_BUF: usize = 1 << 20;

/// The entry types a layer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryType {
    File,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

impl EntryType {
    fn flag(self) -> u8 {
        match self {
            EntryType::File => b'0',
            EntryType::HardLink => b'1',
            EntryType::Symlink => b'2',
            EntryType::Char => b'3',
            EntryType::Block => b'4',
            EntryType::Dir => b'5',
            EntryType::Fifo => b'6',
        }
    }
}

/// One entry's header. `name` is relative (directories end in `/`); `size` is the data's
/// length for a regular file and 0 otherwise.
#[derive(Clone, Debug)]
pub struct Header {
    pub name: Vec<u8>,
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    pub link: Vec<u8>,
    pub dev: (u64, u64),
    /// Sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Header {
    pub fn new(name: Vec<u8>, kind: EntryType) -> Self {
        Header {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            link: Vec::new(),
            dev: (0, 0),
            xattrs: Vec::new(),
        }
    }
}

/// Whether `v` fits an octal field of `len` bytes (`len - 1` digits and a NUL).
fn fits_octal(v: u64, len: usize) -> bool {
    v < 1u64 << (3 * (len - 1))
}

/// Zero-padded octal with a trailing NUL, as Go's `formatOctal`.
fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}", v, width = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[s.len()] = 0;
}

/// Base-256 (GNU) for a number no octal field holds (only device numbers end up here).
fn base256(field: &mut [u8], v: u64) {
    field.fill(0);
    let n = field.len();
    for (i, b) in v.to_be_bytes().iter().rev().enumerate() {
        if i < n {
            field[n - 1 - i] = *b;
        }
    }
    field[0] |= 0x80;
}

/// The header field's text: ASCII only (as Go's `toASCII`), cut to the field.
fn put_str(field: &mut [u8], s: &[u8]) {
    let mut i = 0;
    for &b in s {
        if i == field.len() {
            break;
        }
        if b.is_ascii() && b != 0 {
            field[i] = b;
            i += 1;
        }
    }
}

fn needs_pax(s: &[u8], len: usize) -> bool {
    s.len() > len || !s.iter().all(|b| b.is_ascii() && *b != 0)
}

/// One PAX record: `"<len> <key>=<value>\n"`, where `<len>` counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while base + len.to_string().len() != len {
        len = base + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

pub struct TarWriter<W: Write> {
    out: W,
    entries: u64,
    buf: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter {
            out,
            entries: 0,
            buf: Vec::new(),
        }
    }

    /// Entries written (PAX extended headers are part of the entry they describe).
    pub fn entries(&self) -> u64 {
        self.entries
    }

    fn block(&mut self, name: &[u8], flag: u8, h: &Header, size: u64, pax: bool) -> io::Result<()> {
        let mut b = [0u8; BLOCK];
        put_str(&mut b[0..100], name);
        octal(&mut b[100..108], u64::from(h.mode & 0o7777));
        let num = |b: &mut [u8], v: u64| {
            if fits_octal(v, b.len()) {
                octal(b, v)
            } else {
                octal(b, 0) // carried by a PAX record
            }
        };
        num(&mut b[108..116], h.uid);
        num(&mut b[116..124], h.gid);
        num(&mut b[124..136], size);
        num(&mut b[136..148], u64::try_from(h.mtime).unwrap_or(0));
        b[156] = flag;
        if !pax {
            put_str(&mut b[157..257], &h.link);
        }
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        for (field, v) in [(329..337, h.dev.0), (337..345, h.dev.1)] {
            if fits_octal(v, 8) {
                octal(&mut b[field], v);
            } else {
                base256(&mut b[field], v);
            }
        }
        b[148..156].fill(b' ');
        let sum: u32 = b.iter().map(|x| u32::from(*x)).sum();
        octal(&mut b[148..155], u64::from(sum));
        self.out.write_all(&b)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// Write an entry; a regular file's `size` bytes are read from `data`, which must yield
    /// exactly that many (a file that shrank meanwhile is an error: the archive would be
    /// corrupt; one that grew is cut at `size`).
    pub fn append(&mut self, h: &Header, data: Option<&mut dyn Read>) -> io::Result<()> {
        let mut recs = Vec::new();
        let mut keyed: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        if needs_pax(&h.name, 100) {
            keyed.push((b"path".to_vec(), h.name.clone()));
        }
        if needs_pax(&h.link, 100) {
            keyed.push((b"linkpath".to_vec(), h.link.clone()));
        }
        if !fits_octal(h.uid, 8) {
            keyed.push((b"uid".to_vec(), h.uid.to_string().into_bytes()));
        }
        if !fits_octal(h.gid, 8) {
            keyed.push((b"gid".to_vec(), h.gid.to_string().into_bytes()));
        }
        if !fits_octal(h.size, 12) {
            keyed.push((b"size".to_vec(), h.size.to_string().into_bytes()));
        }
        if h.mtime < 0 || !fits_octal(h.mtime as u64, 12) {
            keyed.push((b"mtime".to_vec(), h.mtime.to_string().into_bytes()));
        }
        for (k, v) in &h.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            keyed.push((key, v.clone()));
        }
        keyed.sort();
        for (k, v) in &keyed {
            pax_record(&mut recs, k, v);
        }
        if !recs.is_empty() {
            // Go's name for it: <dir>/PaxHeaders.0/<file>.
            let trimmed = h.name.strip_suffix(b"/").unwrap_or(&h.name);
            let (dir, file) = match trimmed.iter().rposition(|c| *c == b'/') {
                Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
                None => (&b""[..], trimmed),
            };
            let mut name = dir.to_vec();
            name.extend_from_slice(b"PaxHeaders.0");
            if !file.is_empty() {
                name.push(b'/');
                name.extend_from_slice(file);
            }
            let pax_h = Header::new(Vec::new(), EntryType::File);
            self.block(&name, b'x', &pax_h, recs.len() as u64, true)?;
            self.out.write_all(&recs)?;
            self.pad(recs.len() as u64)?;
        }
        self.block(&h.name, h.kind.flag(), h, h.size, false)?;
        if h.kind == EntryType::File && h.size > 0 {
            let data = data.ok_or_else(|| io::Error::other("regular file without data"))?;
            if self.buf.is_empty() {
                self.buf = vec![0u8; COPY_BUF];
            }
            let mut left = h.size;
            while left > 0 {
                let want = left.min(COPY_BUF as u64) as usize;
                let n = match data.read(&mut self.buf[..want]) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "file shrank while being read: {} of {} bytes",
                                h.size - left,
                                h.size
                            ),
                        ))
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                self.out.write_all(&self.buf[..n])?;
                left -= n as u64;
            }
            self.pad(h.size)?;
        }
        self.entries += 1;
        Ok(())
    }

    /// Write the two zero blocks that end an archive and hand back the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Seen = (String, tar::EntryType, u64, Vec<u8>, Vec<(String, Vec<u8>)>);

    /// (name, type, size, link target, PAX records) of each entry.
    fn entries(data: &[u8]) -> Vec<Seen> {
        let mut a = tar::Archive::new(data);
        let mut out = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let link = e
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default();
            let mut x = Vec::new();
            if let Some(p) = e.pax_extensions().unwrap() {
                for r in p {
                    let r = r.unwrap();
                    x.push((r.key().unwrap().to_owned(), r.value_bytes().to_vec()));
                }
            }
            let t = e.header().entry_type();
            let size = e.header().size().unwrap();
            out.push((name, t, size, link, x));
        }
        out
    }

    #[test]
    fn ustar_and_pax_headers_read_back() {
        let mut w = TarWriter::new(Vec::new());
        let mut f = Header::new(b"etc/hosts".to_vec(), EntryType::File);
        f.mode = 0o644;
        f.size = 5;
        f.mtime = 1_700_000_000;
        w.append(&f, Some(&mut &b"hello"[..])).unwrap();
        let long = format!("{}/file", "d".repeat(150));
        let mut l = Header::new(long.clone().into_bytes(), EntryType::Symlink);
        l.link = "t".repeat(120).into_bytes();
        l.uid = 1 << 30;
        l.xattrs = vec![(b"user.k".to_vec(), b"v\0w".to_vec())];
        w.append(&l, None).unwrap();
        let mut d = Header::new(b"dir/".to_vec(), EntryType::Dir);
        d.mtime = -5;
        w.append(&d, None).unwrap();
        let mut c = Header::new(b"dev/big".to_vec(), EntryType::Char);
        c.dev = (1 << 22, 3);
        w.append(&c, None).unwrap();
        assert_eq!(w.entries(), 4);
        let out = w.finish().unwrap();
        assert_eq!(out.len() % BLOCK, 0);
        assert!(out.ends_with(&[0u8; 1024]));

        let got = entries(&out);
        assert_eq!(got.len(), 4);
        assert_eq!((got[0].0.as_str(), got[0].2), ("etc/hosts", 5));
        assert!(got[0].4.is_empty());
        assert_eq!(got[1].0, long);
        assert_eq!(got[1].3, "t".repeat(120).into_bytes());
        let keys: Vec<_> = got[1].4.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["SCHILY.xattr.user.k", "linkpath", "path", "uid"]);
        assert_eq!(got[1].4[0].1, b"v\0w");
        assert_eq!(got[2].4[0], ("mtime".to_owned(), b"-5".to_vec()));
        assert_eq!(got[2].1, tar::EntryType::Directory);
        let mut a = tar::Archive::new(&out[..]);
        let dev = a.entries().unwrap().nth(3).unwrap().unwrap();
        assert_eq!(dev.header().device_minor().unwrap(), Some(3));
        // The checksum is what a reader recomputes (tar checks it).
        assert_eq!(
            tar::Header::from_byte_slice(&out[..512]).cksum().unwrap(),
            out[..512]
                .iter()
                .enumerate()
                .map(|(i, b)| if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(*b)
                })
                .sum::<u32>()
        );
    }

    #[test]
    fn pax_record_length_counts_itself() {
        for n in [0, 1, 90, 91, 92, 995, 996, 997, 1000] {
            let mut r = Vec::new();
            let v = vec![b'x'; n];
            pax_record(&mut r, b"path", &v);
            let (len, _) = r.split_at(r.iter().position(|b| *b == b' ').unwrap());
            let len: usize = std::str::from_utf8(len).unwrap().parse().unwrap();
            assert_eq!(len, r.len(), "value of {n} bytes");
        }
    }

    #[test]
    fn short_file_is_an_error() {
        let mut w = TarWriter::new(Vec::new());
        let mut f = Header::new(b"f".to_vec(), EntryType::File);
        f.size = 10;
        let e = w.append(&f, Some(&mut &b"abc"[..])).unwrap_err();
        assert!(e.to_string().contains("shrank"), "{e}");
    }
}
