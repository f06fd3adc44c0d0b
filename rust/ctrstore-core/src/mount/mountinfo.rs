//! `/proc/self/mountinfo` (proc(5)):
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)
//! ```
//!
//! The kernel escapes space, tab, newline and backslash as `\ooo` octal in the root, mount
//! point, source and type; those are decoded here. The option fields are kept as printed.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use crate::error::{invalid_argument, Error, Result};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Unique id of the mount.
    pub id: u32,
    /// Id of the parent mount (itself for the root of the tree).
    pub parent: u32,
    pub major: u32,
    pub minor: u32,
    /// The directory of the file system that forms this mount's root.
    pub root: PathBuf,
    /// Where it is mounted, relative to the process's root.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,relatime`).
    pub options: String,
    /// Optional fields (`shared:1`, `master:2`, ...).
    pub optional: Vec<String>,
    /// The file system type (`ext4`, `overlay`, `fuse.sshfs`, ...).
    pub fstype: String,
    /// The mount source (`/dev/vda`, `overlay`, `none`, ...).
    pub source: String,
    /// Per-superblock options (`rw,lowerdir=...`).
    pub super_options: String,
}

/// Decode the kernel's `\ooo` octal escapes; anything else is kept as is.
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 3 < s.len() {
            let oct = &s[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn text(s: &[u8]) -> String {
    String::from_utf8_lossy(&unescape(s)).into_owned()
}

fn path(s: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(s)))
}

fn parse_line(line: &[u8]) -> std::result::Result<MountInfo, String> {
    let fields: Vec<&[u8]> = line.split(|&c| c == b' ').collect();
    let sep = fields
        .iter()
        .skip(6)
        .position(|f| *f == b"-")
        .map(|p| p + 6)
        .ok_or("no \" - \" separator after the optional fields")?;
    if fields.len() < sep + 4 {
        return Err(format!(
            "{} fields after the separator, want 3",
            fields.len() - sep - 1
        ));
    }
    let num = |f: &[u8], what: &str| -> std::result::Result<u32, String> {
        std::str::from_utf8(f)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad {what} {:?}", String::from_utf8_lossy(f)))
    };
    let dev = fields[2];
    let colon = dev
        .iter()
        .position(|&c| c == b':')
        .ok_or_else(|| format!("bad device {:?}", String::from_utf8_lossy(dev)))?;
    Ok(MountInfo {
        id: num(fields[0], "mount id")?,
        parent: num(fields[1], "parent id")?,
        major: num(&dev[..colon], "major")?,
        minor: num(&dev[colon + 1..], "minor")?,
        root: path(fields[3]),
        mount_point: path(fields[4]),
        options: String::from_utf8_lossy(fields[5]).into_owned(),
        optional: fields[6..sep]
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect(),
        fstype: text(fields[sep + 1]),
        source: text(fields[sep + 2]),
        super_options: String::from_utf8_lossy(&fields[sep + 3..].join(&b' ')).into_owned(),
    })
}

/// Parse mountinfo text; empty lines are skipped, a malformed line is InvalidArgument.
pub fn parse_mountinfo(data: &[u8]) -> Result<Vec<MountInfo>> {
    data.split(|&c| c == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            parse_line(l).map_err(|e| {
                invalid_argument(format!(
                    "mountinfo line {}: {e}: {:?}",
                    i + 1,
                    String::from_utf8_lossy(l)
                ))
            })
        })
        .collect()
}

/// The mounts of this process's mount namespace, in the kernel's order (parents first).
pub fn mountinfo() -> Result<Vec<MountInfo>> {
    const PATH: &str = "/proc/self/mountinfo";
    let data = std::fs::read(PATH).map_err(|e| Error::io(e, PATH))?;
    parse_mountinfo(&data)
}

/// Whether `path` (symlinks resolved) is a mount point. A path that does not exist is not.
pub fn is_mountpoint(path: &Path) -> Result<bool> {
    let p = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(e, path.display())),
    };
    Ok(mountinfo()?.iter().any(|m| m.mount_point == p))
}
