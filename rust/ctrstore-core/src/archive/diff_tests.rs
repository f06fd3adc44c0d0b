//! Tests for the diff writer: round trips (`apply(diff(lower, upper))` onto `lower` gives
//! `upper`), through a real overlay mount and by comparing two trees, and the format details.
//! They need root (chown, mknod, trusted.* xattrs, mount).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::content::IngestWriter;
use crate::mount::{self, Mount};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: needs root");
    }
    root
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn setxattr(p: &Path, key: &str, value: &[u8]) {
    let k = CString::new(key).unwrap();
    let rc = unsafe {
        libc::lsetxattr(
            c(p).as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr {key} on {}", p.display());
}

fn mknod(p: &Path, mode: u32, major: u32, minor: u32) {
    let rc = unsafe { libc::mknod(c(p).as_ptr(), mode, libc::makedev(major, minor)) };
    assert_eq!(rc, 0, "mknod {}", p.display());
}

fn set_time(p: &Path, secs: i64, nsec: i64) {
    let ts = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        },
    ];
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c(p).as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", p.display());
}

fn chown(p: &Path, uid: u32, gid: u32) {
    let rc = unsafe { libc::lchown(c(p).as_ptr(), uid, gid) };
    assert_eq!(rc, 0);
}

fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let cp = c(p);
    let mut names = vec![0u8; 4096];
    let n = unsafe { libc::llistxattr(cp.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for k in names.split(|b| *b == 0).filter(|k| !k.is_empty()) {
        let key = String::from_utf8(k.to_vec()).unwrap();
        let keep = key.starts_with("user.")
            || key == "security.capability"
            || key == "trusted.overlay.opaque";
        if !keep {
            continue;
        }
        let ck = CString::new(k).unwrap();
        let mut v = vec![0u8; 4096];
        let n =
            unsafe { libc::lgetxattr(cp.as_ptr(), ck.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert!(n >= 0);
        v.truncate(n as usize);
        out.push((key, v));
    }
    out.sort();
    out
}

/// What a tree holds, path by path: type, mode, owner, mtime (seconds), content (sha256,
/// link target or device), the xattrs a layer carries, and the other names of its inode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    owner: (u32, u32),
    mtime: i64,
    data: String,
    xattrs: Vec<(String, Vec<u8>)>,
    links: Vec<String>,
}

fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (Node, (u64, u64))>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            use std::os::unix::fs::FileTypeExt;
            let (kind, data) = if ft.is_dir() {
                ("dir", String::new())
            } else if ft.is_symlink() {
                ("symlink", fs::read_link(&p).unwrap().display().to_string())
            } else if ft.is_file() {
                ("file", Digest::of_bytes(&fs::read(&p).unwrap()).to_string())
            } else if ft.is_char_device() {
                ("char", format!("{:x}", m.rdev()))
            } else if ft.is_block_device() {
                ("block", format!("{:x}", m.rdev()))
            } else if ft.is_fifo() {
                ("fifo", String::new())
            } else {
                ("socket", String::new())
            };
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            // An overlay whiteout's time is not the layer's (nor kept by an apply), and overlay
            // links its whiteouts to one shared inode: neither is compared.
            let whiteout = kind == "char" && m.rdev() == 0;
            let node = Node {
                kind,
                mode: m.mode() & 0o7777,
                owner: (m.uid(), m.gid()),
                mtime: if whiteout { 0 } else { m.mtime() },
                data,
                xattrs: xattrs(&p),
                links: Vec::new(),
            };
            let inode = if whiteout { (0, 0) } else { (m.dev(), m.ino()) };
            out.insert(rel, (node, inode));
            if ft.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut raw = BTreeMap::new();
    walk(root, root, &mut raw);
    let mut by_inode: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    for (p, (n, key)) in &raw {
        if n.kind != "dir" && *key != (0, 0) {
            by_inode.entry(*key).or_default().push(p.clone());
        }
    }
    raw.into_iter()
        .map(|(p, (mut n, key))| {
            if n.kind != "dir" && key != (0, 0) {
                n.links = by_inode[&key]
                    .iter()
                    .filter(|o| **o != p)
                    .cloned()
                    .collect();
            }
            (p, n)
        })
        .collect()
}

fn assert_same_trees(got: &BTreeMap<String, Node>, want: &BTreeMap<String, Node>) {
    for (p, w) in want {
        assert_eq!(got.get(p), Some(w), "{p}");
    }
    for p in got.keys() {
        assert!(want.contains_key(p), "{p} should not be there");
    }
}

const T0: i64 = 1_600_000_000;

/// The lower tree: every kind of entry, whole-second times.
fn build_lower(root: &Path) {
    let w = |p: &str, data: &[u8], mode: u32| {
        let path = root.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    };
    fs::create_dir_all(root).unwrap();
    w("etc/hosts", b"127.0.0.1 localhost\n", 0o644);
    w("etc/removed", b"gone soon", 0o600);
    w("etc/samesize", b"aaaa", 0o644);
    w("etc/xattr", b"x", 0o644);
    w("etc/f2d", b"file becoming a dir", 0o644);
    w("etc/d2f/child", b"c", 0o644);
    w("etc/d2f/sub/deeper", b"d", 0o644);
    w("bin/tool", b"#!/bin/sh\n", 0o4755);
    w("bin/cap", b"cap", 0o755);
    w("var/cache/a", b"a", 0o644);
    w("var/cache/sub/b", b"b", 0o644);
    w("var/keep", b"k", 0o644);
    w("usr/share/doc/x/README", b"readme", 0o644);
    w("usr/share/doc/x/unchanged", b"same", 0o644);
    w("hl/a", b"linked", 0o644);
    w("hl/c", b"also linked", 0o644);
    w("opq/one", b"1", 0o644);
    w("opq/sub/two", b"2", 0o644);
    fs::hard_link(root.join("hl/a"), root.join("hl/b")).unwrap();
    fs::hard_link(root.join("hl/c"), root.join("hl/d")).unwrap();
    symlink("etc/hosts", root.join("link")).unwrap();
    symlink("/nowhere", root.join("dangling")).unwrap();
    fs::create_dir_all(root.join("dev")).unwrap();
    mknod(&root.join("dev/null"), libc::S_IFCHR | 0o666, 1, 3);
    mknod(&root.join("dev/loop0"), libc::S_IFBLK | 0o660, 7, 0);
    mknod(&root.join("dev/fifo"), libc::S_IFIFO | 0o644, 0, 0);
    chown(&root.join("var/keep"), 1000, 1001);
    setxattr(&root.join("etc/xattr"), "user.k", b"v1");
    setxattr(
        &root.join("bin/cap"),
        "security.capability",
        &[
            1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    // Whole-second times everywhere, directories last.
    let mut all: Vec<PathBuf> = Vec::new();
    fn collect(d: &Path, all: &mut Vec<PathBuf>) {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                collect(&p, all);
            }
            all.push(p);
        }
    }
    collect(root, &mut all);
    for p in all {
        set_time(&p, T0, 0);
    }
}

/// What a container does to its tree (through `root`: the overlay mount, or a copy).
fn mutate(root: &Path) {
    let now_write = |p: &str, data: &[u8]| {
        let path = root.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap();
    };
    now_write("etc/hosts", b"127.0.0.1 localhost changed\n");
    fs::remove_file(root.join("etc/removed")).unwrap();
    // Same size, same whole-second mtime: only the content tells.
    now_write("etc/samesize", b"bbbb");
    set_time(&root.join("etc/samesize"), T0, 0);
    setxattr(&root.join("etc/xattr"), "user.k", b"v2");
    setxattr(&root.join("etc/xattr"), "user.new", b"n");
    fs::remove_file(root.join("etc/f2d")).unwrap();
    now_write("etc/f2d/inside", b"now a dir");
    fs::remove_dir_all(root.join("etc/d2f")).unwrap();
    now_write("etc/d2f", b"now a file");
    fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::remove_dir_all(root.join("var/cache")).unwrap();
    now_write("usr/share/doc/x/README", b"readme, edited");
    now_write("new/dir/file", b"new");
    fs::hard_link(root.join("new/dir/file"), root.join("new/link-to-file")).unwrap();
    symlink("../etc/hosts", root.join("new/sym")).unwrap();
    fs::remove_file(root.join("link")).unwrap();
    symlink("etc/samesize", root.join("link")).unwrap();
    // Appending through one name of a linked pair changes both.
    fs::OpenOptions::new()
        .append(true)
        .open(root.join("hl/a"))
        .unwrap()
        .write_all(b" more")
        .unwrap();
    // A directory emptied and refilled: opaque in an overlay upper dir.
    fs::remove_dir_all(root.join("opq")).unwrap();
    now_write("opq/fresh", b"f");
    mknod(&root.join("dev/zero"), libc::S_IFCHR | 0o666, 1, 5);
    chown(&root.join("new/dir/file"), 33, 44);
    fs::set_permissions(root.join("new/dir"), fs::Permissions::from_mode(0o2750)).unwrap();
}

fn entry_names(tar: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .collect()
}

fn decompress(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Decompress::new(data)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn apply_delete(target: &Path, layer: &[u8]) -> ApplyStats {
    apply_layer(
        target,
        layer,
        &ApplyOptions {
            whiteouts: WhiteoutMode::Delete,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn compare_round_trip() {
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (lower, upper, target) = (t.path().join("l"), t.path().join("u"), t.path().join("t"));
    build_lower(&lower);
    build_lower(&upper);
    build_lower(&target);
    mutate(&upper);
    // A socket is left out of a layer.
    let _sock = std::os::unix::net::UnixListener::bind(upper.join("var/sock")).unwrap();

    let (stats, tar) = write_diff(
        DiffSource::Compare {
            lower: &lower,
            upper: &upper,
        },
        Vec::new(),
        Compression::None,
    )
    .unwrap();
    assert_eq!(stats.diff_id, Digest::of_bytes(&tar));
    assert_eq!(stats.digest, stats.diff_id);
    assert_eq!(stats.size, tar.len() as u64);
    let names = entry_names(&tar);
    assert_eq!(stats.entries, names.len() as u64);
    // Unchanged files (whole-second times, the same content) and directories are not written;
    // an unchanged directory above a change is.
    for absent in [
        "usr/share/doc/x/unchanged",
        "hl/c",
        "hl/d",
        "var/keep",
        "dev/null",
        "var/sock",
    ] {
        assert!(!names.iter().any(|n| n == absent), "{absent} in {names:?}");
    }
    for present in [
        "usr/",
        "usr/share/",
        "usr/share/doc/",
        "usr/share/doc/x/",
        "usr/share/doc/x/README",
        "etc/samesize",
        "etc/xattr",
        "bin/tool",
        "etc/.wh.removed",
        "var/.wh.cache",
        "etc/f2d/",
        "etc/f2d/inside",
        "etc/d2f",
        "opq/.wh.one",
        "opq/.wh.sub",
        "opq/fresh",
    ] {
        assert!(
            names.iter().any(|n| n == present),
            "{present} not in {names:?}"
        );
    }
    // Nothing under a deleted directory, or a directory replaced by a file, is named.
    assert!(!names
        .iter()
        .any(|n| n.starts_with("var/cache/") || n.starts_with("etc/d2f/")));

    apply_delete(&target, &tar);
    let mut want = snapshot(&upper);
    want.retain(|_, n| n.kind != "socket");
    assert_same_trees(&snapshot(&target), &want);
}

/// A scratch directory whose mounts go when it is dropped.
struct Scratch(tempfile::TempDir);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = mount::unmount_recursive(self.0.path(), mount::MNT_DETACH);
    }
}

#[test]
fn overlay_round_trip() {
    if !is_root() {
        return;
    }
    let s = Scratch(tempfile::tempdir().unwrap());
    let d = |n: &str| {
        let p = s.0.path().join(n);
        fs::create_dir_all(&p).unwrap();
        p
    };
    let (lower, upper, work, merged) = (d("l"), d("u"), d("w"), d("m"));
    build_lower(&lower);
    Mount::new(
        "overlay",
        "overlay",
        [
            format!("lowerdir={}", lower.display()),
            format!("upperdir={}", upper.display()),
            format!("workdir={}", work.display()),
        ],
    )
    .mount(&merged)
    .unwrap();
    mutate(&merged);
    let want = snapshot(&merged);
    mount::unmount(&merged, 0).unwrap();
    // What overlay made of it: whiteout devices and an opaque directory.
    assert_eq!(
        fs::symlink_metadata(upper.join("etc/removed"))
            .unwrap()
            .rdev(),
        0
    );
    assert_eq!(
        xattrs(&upper.join("opq")),
        vec![("trusted.overlay.opaque".to_owned(), b"y".to_vec())]
    );

    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let (stats, blob) =
            write_diff(DiffSource::OverlayUpper(&upper), Vec::new(), compression).unwrap();
        assert_eq!(stats.digest, Digest::of_bytes(&blob));
        assert_eq!(stats.size, blob.len() as u64);
        assert_eq!(Compression::detect(&blob), compression);
        let tar = decompress(&blob);
        assert_eq!(stats.diff_id, Digest::of_bytes(&tar));
        assert_eq!(stats.uncompressed_bytes, tar.len() as u64);
        let names = entry_names(&tar);
        let opq = names.iter().position(|n| n == "opq/").unwrap();
        assert_eq!(names[opq + 1], "opq/.wh..wh..opq");
        assert!(names.iter().any(|n| n == "etc/.wh.removed"));
        assert!(names.iter().any(|n| n == "var/.wh.cache"));

        // Onto the lower tree (a native snapshot): the merged view comes out.
        let t = tempfile::tempdir_in(s.0.path()).unwrap();
        let copy = t.path().join("t");
        build_lower(&copy);
        let applied = apply_delete(&copy, &blob);
        assert_eq!(applied.diff_id, stats.diff_id);
        assert_eq!(applied.compression, compression);
        assert_same_trees(&snapshot(&copy), &want);
        // Into an empty directory as an overlay upper dir: the upper dir comes out.
        let up2 = t.path().join("u2");
        fs::create_dir(&up2).unwrap();
        apply_layer(&up2, &blob[..], &ApplyOptions::default()).unwrap();
        let mut want_upper = snapshot(&upper);
        // (overlay's own xattrs on the upper dir, such as trusted.overlay.origin, are not carried)
        for n in want_upper.values_mut() {
            n.xattrs
                .retain(|(k, _)| !k.starts_with("trusted.") || k == "trusted.overlay.opaque");
        }
        assert_same_trees(&snapshot(&up2), &want_upper);
    }
}

#[test]
fn entries_are_written_as_containerd_writes_them() {
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("u");
    fs::create_dir_all(up.join("a/b")).unwrap();
    fs::write(up.join("a/b/f"), b"data").unwrap();
    set_time(&up.join("a/b/f"), T0, 999_999_999);
    mknod(&up.join("a/gone"), libc::S_IFCHR, 0, 0);
    chown(&up.join("a/gone"), 5, 6);
    setxattr(&up.join("a"), "trusted.overlay.opaque", b"y");
    setxattr(&up.join("a/b"), "user.overlay.origin", b"o");
    setxattr(&up.join("a/b"), "user.keep", b"k");
    setxattr(&up.join("a/b"), "trusted.other", b"t");
    let long = "n".repeat(120);
    fs::write(up.join(&long), b"").unwrap();

    let (stats, tar) =
        write_diff(DiffSource::OverlayUpper(&up), Vec::new(), Compression::None).unwrap();
    assert_eq!(stats.compression, Compression::None);
    let mut a = tar::Archive::new(&tar[..]);
    let mut seen = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let mut pax = Vec::new();
        if let Some(x) = e.pax_extensions().unwrap() {
            for r in x {
                let r = r.unwrap();
                pax.push(r.key().unwrap().to_owned());
            }
        }
        seen.push((name, h, pax));
    }
    let names: Vec<_> = seen.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "a/",
            "a/.wh..wh..opq",
            "a/b/",
            "a/b/f",
            "a/.wh.gone",
            long.as_str()
        ]
    );
    let (_, dir, _) = &seen[0];
    assert_eq!(dir.entry_type(), tar::EntryType::Directory);
    assert_eq!(dir.as_ustar().map(|u| u.magic), Some(*b"ustar\0"));
    assert_eq!(dir.username_bytes(), Some(&b""[..]));
    for i in [1, 4] {
        let (_, wh, _) = &seen[i];
        assert_eq!(wh.entry_type(), tar::EntryType::Regular);
        assert_eq!(
            (wh.mode().unwrap(), wh.uid().unwrap(), wh.gid().unwrap()),
            (0, 0, 0)
        );
        assert_eq!((wh.mtime().unwrap(), wh.size().unwrap()), (0, 0));
    }
    // Only user.* (not overlay's own) crosses; times are whole seconds, cut.
    assert_eq!(seen[2].2, ["SCHILY.xattr.user.keep"]);
    assert_eq!(seen[3].1.mtime().unwrap(), T0 as u64);
    assert_eq!(seen[5].2, ["path"]);
}

/// What fuse-overlayfs (1.10) leaves in an upper dir when it runs unprivileged: an opaque
/// directory is `user.fuseoverlayfs.opaque=y` plus a `.wh..wh..opq` file and a 0:0 device
/// `.wh..opq`; a deleted name is a `.wh.<name>` file where mknod fails; a copied-up file
/// carries `user.fuseoverlayfs.origin`. The layer gets the OCI markers, once, and none of
/// fuse-overlayfs's own xattrs.
#[test]
fn fuse_overlayfs_upper_dir() {
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("u");
    fs::create_dir_all(up.join("o")).unwrap();
    setxattr(&up.join("o"), "user.fuseoverlayfs.opaque", b"y");
    fs::write(up.join("o/.wh..wh..opq"), b"").unwrap();
    mknod(&up.join("o/.wh..opq"), libc::S_IFCHR, 0, 0);
    fs::write(up.join("o/new"), b"n").unwrap();
    fs::create_dir_all(up.join("p")).unwrap();
    fs::write(up.join("p/.wh..wh..opq"), b"").unwrap(); // the file alone marks it opaque too
    fs::write(up.join(".wh.gone"), b"").unwrap();
    fs::write(up.join("copied"), b"c").unwrap();
    setxattr(&up.join("copied"), "user.fuseoverlayfs.origin", b"copied\0");
    setxattr(&up.join("copied"), "user.keep", b"k");
    mknod(&up.join("dev-gone"), libc::S_IFCHR, 0, 0);

    let (_, tar) =
        write_diff(DiffSource::OverlayUpper(&up), Vec::new(), Compression::None).unwrap();
    assert_eq!(
        entry_names(&tar),
        [
            ".wh.gone",
            "copied",
            ".wh.dev-gone",
            "o/",
            "o/.wh..wh..opq",
            "o/new",
            "p/",
            "p/.wh..wh..opq"
        ]
    );
    let mut a = tar::Archive::new(&tar[..]);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let keys: Vec<String> = match e.pax_extensions().unwrap() {
            Some(x) => x.map(|r| r.unwrap().key().unwrap().to_owned()).collect(),
            None => Vec::new(),
        };
        let want: &[&str] = if name == "copied" {
            &["SCHILY.xattr.user.keep"]
        } else {
            &[]
        };
        assert_eq!(keys, want, "{name}");
    }
}

#[test]
fn into_an_ingest_writer() {
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("u");
    fs::create_dir_all(up.join("d")).unwrap();
    fs::write(up.join("d/f"), vec![7u8; 3 << 20]).unwrap();
    let store = t.path().join("store");
    let mut w = IngestWriter::open(&store, "layer", None, None).unwrap();
    let (stats, w2) = write_diff(DiffSource::OverlayUpper(&up), &mut w, Compression::Gzip).unwrap();
    let _ = w2;
    assert_eq!(w.offset(), stats.size);
    assert_eq!(w.digest(), stats.digest);
    let d = w.commit(stats.size, Some(stats.digest.clone())).unwrap();
    let blob = fs::read(crate::content::blob_path(&store, &d)).unwrap();
    assert_eq!(Digest::of_bytes(&decompress(&blob)), stats.diff_id);
    // A missing source names itself.
    let e = write_diff(
        DiffSource::OverlayUpper(&t.path().join("nope")),
        Vec::new(),
        Compression::None,
    )
    .unwrap_err();
    assert_eq!(e.kind(), crate::error::ErrorKind::NotFound);
    assert!(e.to_string().contains("nope"), "{e}");
}

#[test]
fn whiteout_paths() {
    assert_eq!(whiteout_path(b"etc/passwd", false), b"etc/.wh.passwd");
    assert_eq!(whiteout_path(b"top", false), b".wh.top");
    assert_eq!(whiteout_path(b"a/b", true), b"a/b/.wh..wh..opq");
    assert_eq!(whiteout_path(b"a", true), b"a/.wh..wh..opq");
}

/// `(name, uid, gid, xattr keys)` of every entry of an uncompressed layer.
fn owners(tar: &[u8]) -> Vec<(String, u64, u64, Vec<String>)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let (uid, gid) = (e.header().uid().unwrap(), e.header().gid().unwrap());
            let keys = e
                .pax_extensions()
                .unwrap()
                .into_iter()
                .flatten()
                .map(|x| {
                    x.unwrap()
                        .key()
                        .unwrap()
                        .trim_start_matches("SCHILY.xattr.")
                        .to_string()
                })
                .filter(|k| k.starts_with("user."))
                .collect::<Vec<_>>();
            (name, uid, gid, keys)
        })
        .collect()
}

#[test]
fn owner_xattr_round_trip() {
    // A tree unpacked in single-id mode (every file ours, owners in user.rootlesscontainers)
    // gives back a layer with the image's owners and without the xattr; without the option,
    // the on-disk owners and the xattr (as any user.* one).
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (empty, tree) = (t.path().join("empty"), t.path().join("tree"));
    fs::create_dir(&empty).unwrap();
    fs::create_dir(&tree).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (name, uid, gid, kind) in [
        ("app", 1000, 1000, tar::EntryType::Directory),
        ("app/run", 0, 50, tar::EntryType::Regular),
        ("app/mine", 1000, 0, tar::EntryType::Regular),
        ("plain", 0, 0, tar::EntryType::Regular),
    ] {
        let mut hd = tar::Header::new_gnu();
        hd.set_entry_type(kind);
        hd.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o4755
        });
        hd.set_uid(uid);
        hd.set_gid(gid);
        hd.set_size(0);
        hd.set_mtime(1_600_000_000);
        b.append_data(&mut hd, name, std::io::empty()).unwrap();
    }
    let layer = b.into_inner().unwrap();
    apply_layer(
        &tree,
        &layer[..],
        &ApplyOptions {
            whiteouts: WhiteoutMode::Delete,
            owner_xattr: true,
            ..Default::default()
        },
    )
    .unwrap();
    let diff = |owner_xattr: bool| {
        let source = DiffSource::Compare {
            lower: &empty,
            upper: &tree,
        };
        let opts = DiffOptions { owner_xattr };
        write_diff_with(source, Vec::new(), Compression::None, opts)
            .unwrap()
            .1
    };
    assert_eq!(
        owners(&diff(true)),
        [
            ("app/".to_string(), 1000, 1000, vec![]),
            ("app/mine".to_string(), 1000, 0, vec![]),
            ("app/run".to_string(), 0, 50, vec![]),
            ("plain".to_string(), 0, 0, vec![]),
        ]
    );
    let key = || vec!["user.rootlesscontainers".to_string()];
    assert_eq!(
        owners(&diff(false)),
        [
            ("app/".to_string(), 0, 0, key()),
            ("app/mine".to_string(), 0, 0, key()),
            ("app/run".to_string(), 0, 0, key()),
            ("plain".to_string(), 0, 0, vec![]),
        ]
    );
    // Applied again in single-id mode, the layer records the same owners.
    let again = t.path().join("again");
    fs::create_dir(&again).unwrap();
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::Delete,
        owner_xattr: true,
        ..Default::default()
    };
    apply_layer(&again, &diff(true)[..], &opts).unwrap();
    for p in ["app", "app/run", "app/mine", "plain"] {
        assert_eq!(xattrs(&again.join(p)), xattrs(&tree.join(p)), "{p}");
    }
}
