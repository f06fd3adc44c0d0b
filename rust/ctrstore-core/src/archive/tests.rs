//! Tests for layer application; they need root (chown, mknod, trusted.* xattrs) and a file
//! system with xattr support (ext4 under /tmp here).

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::apply::apply_layer_with;
use super::*;
use crate::error::ErrorKind;

// ---------------------------------------------------------------------------------------------
// A tiny tar writer that can write anything (including `..` names that tar::Builder refuses).

#[derive(Clone)]
struct H {
    name: Vec<u8>,
    typ: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Vec<u8>,
    dev: (u32, u32),
    pax: Vec<(Vec<u8>, Vec<u8>)>,
    gnu_long: bool,
}

fn h(name: &str, typ: u8, mode: u32) -> H {
    H {
        name: name.as_bytes().to_vec(),
        typ,
        mode,
        uid: 0,
        gid: 0,
        mtime: 1_600_000_000,
        link: vec![],
        dev: (0, 0),
        pax: vec![],
        gnu_long: false,
    }
}

#[derive(Default)]
struct Tar {
    out: Vec<u8>,
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}", v, width = field.len() - 1);
    assert!(s.len() < field.len(), "value {v} too large for tar field");
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[s.len()] = 0;
}

impl Tar {
    fn raw_header(&mut self, name: &[u8], typ: u8, mode: u32, size: u64, h: &H, link: &[u8]) {
        let mut b = [0u8; 512];
        let n = name.len().min(100);
        b[..n].copy_from_slice(&name[..n]);
        octal(&mut b[100..108], mode as u64);
        octal(&mut b[108..116], h.uid);
        octal(&mut b[116..124], h.gid);
        octal(&mut b[124..136], size);
        octal(&mut b[136..148], h.mtime);
        b[156] = typ;
        let l = link.len().min(100);
        b[157..157 + l].copy_from_slice(&link[..l]);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        octal(&mut b[329..337], h.dev.0 as u64);
        octal(&mut b[337..345], h.dev.1 as u64);
        b[148..156].copy_from_slice(b"        ");
        let sum: u32 = b.iter().map(|x| *x as u32).sum();
        let s = format!("{sum:06o}\0 ");
        b[148..156].copy_from_slice(s.as_bytes());
        self.out.extend_from_slice(&b);
    }

    fn data(&mut self, data: &[u8]) {
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.resize(self.out.len() + pad, 0);
    }

    fn entry(&mut self, mut e: H, data: &[u8]) -> &mut Self {
        let long_name = e.name.len() > 100;
        let long_link = e.link.len() > 100;
        if e.gnu_long {
            if long_name {
                let mut n = e.name.clone();
                n.push(0);
                self.raw_header(b"././@LongLink", b'L', 0, n.len() as u64, &e, b"");
                self.data(&n);
            }
            if long_link {
                let mut n = e.link.clone();
                n.push(0);
                self.raw_header(b"././@LongLink", b'K', 0, n.len() as u64, &e, b"");
                self.data(&n);
            }
        } else {
            if long_name {
                e.pax.push((b"path".to_vec(), e.name.clone()));
            }
            if long_link {
                e.pax.push((b"linkpath".to_vec(), e.link.clone()));
            }
        }
        if !e.pax.is_empty() {
            let mut recs = Vec::new();
            for (k, v) in &e.pax {
                let body_len = k.len() + v.len() + 3; // ' ', '=', '\n'
                let mut len = body_len + 1;
                while format!("{len}").len() + body_len != len {
                    len = format!("{len}").len() + body_len;
                }
                recs.extend_from_slice(format!("{len} ").as_bytes());
                recs.extend_from_slice(k);
                recs.push(b'=');
                recs.extend_from_slice(v);
                recs.push(b'\n');
            }
            self.raw_header(b"PaxHeaders/x", b'x', 0o644, recs.len() as u64, &e, b"");
            self.data(&recs);
        }
        let (name, link) = (e.name.clone(), e.link.clone());
        self.raw_header(&name, e.typ, e.mode, data.len() as u64, &e, &link);
        self.data(data);
        self
    }

    fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        self.entry(h(name, b'0', mode), data)
    }
    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.entry(h(name, b'5', mode), b"")
    }
    /// A symlink at `name` pointing to `target` (note: containerd's tc.Symlink(old, new) order
    /// is reversed).
    fn symlink(&mut self, target: &str, name: &str) -> &mut Self {
        let mut e = h(name, b'2', 0o777);
        e.link = target.as_bytes().to_vec();
        self.entry(e, b"")
    }
    /// A hard link at `name` to `target`.
    fn link(&mut self, target: &str, name: &str) -> &mut Self {
        let mut e = h(name, b'1', 0o644);
        e.link = target.as_bytes().to_vec();
        self.entry(e, b"")
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.out);
        out.extend_from_slice(&[0u8; 1024]);
        out
    }
}

fn sha256_hex(data: &[u8]) -> String {
    crate::digest::Digest::of_bytes(data).to_string()
}

fn apply(root: &Path, tar: &[u8], opts: &ApplyOptions) -> crate::error::Result<ApplyStats> {
    // Alternate between the sequential and the pipelined path so both are exercised.
    // (The pipelined run goes to a fresh directory: the checks look at the sequential one.)
    let a = apply_layer_with(root, tar, opts, Some(false));
    let b_root = tempfile::tempdir_in(root.parent().unwrap()).unwrap();
    let b = apply_layer_with(b_root.path(), tar, opts, Some(true));
    if let Ok(a) = &a {
        assert_eq!(
            a,
            &b.expect("pipelined apply"),
            "pipelined and sequential stats differ"
        );
    }
    a
}

fn delete() -> ApplyOptions {
    ApplyOptions {
        whiteouts: WhiteoutMode::Delete,
        ..Default::default()
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn root_of(t: &tempfile::TempDir) -> PathBuf {
    let r = t.path().join("root");
    fs::create_dir(&r).unwrap();
    r
}

fn lgetxattr(p: &Path, key: &str) -> Option<Vec<u8>> {
    let cp = CString::new(p.as_os_str().as_bytes()).unwrap();
    let ck = CString::new(key).unwrap();
    let mut buf = vec![0u8; 4096];
    let n =
        unsafe { libc::lgetxattr(cp.as_ptr(), ck.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

// ---------------------------------------------------------------------------------------------

#[test]
fn every_entry_type() {
    let t = tmp();
    let root = root_of(&t);
    let mut tar = Tar::default();
    let mut d = h("usr/", b'5', 0o1775);
    d.uid = 12;
    d.gid = 34;
    d.mtime = 1_500_000_000;
    tar.entry(d, b"");
    let mut f = h("usr/bin/prog", b'0', 0o4755);
    f.uid = 1000;
    f.gid = 2000;
    f.mtime = 1_234_567_890;
    tar.entry(f, b"#!/bin/sh\necho hi\n");
    tar.entry(h("usr/nul-type", 0, 0o640), b"old style");
    tar.entry(h("usr/contig", b'7', 0o600), b"contiguous");
    tar.entry(h("olddir/", 0, 0o750), b"");
    let mut s = h("usr/link", b'2', 0o777);
    s.link = b"../some/where/../odd//target".to_vec();
    s.uid = 5;
    s.mtime = 1_000_000_000;
    tar.entry(s, b"");
    // A hard link's header metadata applies to the shared inode (as in containerd).
    let mut hl = h("usr/hard", b'1', 0o4755);
    hl.link = b"usr/bin/prog".to_vec();
    hl.uid = 1000;
    hl.gid = 2000;
    hl.mtime = 1_234_567_890;
    tar.entry(hl, b"");
    let mut c = h("dev/null", b'3', 0o666);
    c.dev = (1, 3);
    tar.entry(c, b"");
    let mut b = h("dev/loop7", b'4', 0o660);
    b.dev = (7, 7);
    b.gid = 6;
    tar.entry(b, b"");
    tar.entry(h("run/fifo", b'6', 0o2644), b"");
    let mut g = h("pax_global_header", b'g', 0o644);
    g.pax.clear();
    tar.entry(g, b"20 comment=ignored\n");
    let data = tar.finish();

    let st = apply(&root, &data, &ApplyOptions::default()).unwrap();
    assert_eq!(st.entries, 11);
    assert_eq!(st.uncompressed_bytes, data.len() as u64);
    assert_eq!(st.compressed_bytes, data.len() as u64);
    assert_eq!(st.compression, Compression::None);
    assert_eq!(st.diff_id.to_string(), sha256_hex(&data));

    let m = fs::symlink_metadata(root.join("usr")).unwrap();
    assert!(m.is_dir());
    assert_eq!(m.mode() & 0o7777, 0o1775);
    assert_eq!((m.uid(), m.gid()), (12, 34));
    assert_eq!(
        m.mtime(),
        1_500_000_000,
        "dir mtime re-applied after children"
    );

    let m = fs::symlink_metadata(root.join("usr/bin")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o755, "implied parent is 0755");

    let p = root.join("usr/bin/prog");
    let m = fs::symlink_metadata(&p).unwrap();
    assert!(m.is_file());
    assert_eq!(m.mode() & 0o7777, 0o4755, "setuid kept (chmod after chown)");
    assert_eq!((m.uid(), m.gid()), (1000, 2000));
    assert_eq!(m.mtime(), 1_234_567_890);
    assert_eq!(fs::read(&p).unwrap(), b"#!/bin/sh\necho hi\n");
    assert_eq!(m.nlink(), 2);
    assert_eq!(
        fs::symlink_metadata(root.join("usr/hard")).unwrap().ino(),
        m.ino()
    );

    assert_eq!(fs::read(root.join("usr/nul-type")).unwrap(), b"old style");
    assert_eq!(
        fs::metadata(root.join("usr/nul-type")).unwrap().mode() & 0o7777,
        0o640
    );
    assert_eq!(fs::read(root.join("usr/contig")).unwrap(), b"contiguous");
    assert!(fs::metadata(root.join("olddir")).unwrap().is_dir());

    let l = root.join("usr/link");
    assert_eq!(
        fs::read_link(&l).unwrap().as_os_str().as_bytes(),
        b"../some/where/../odd//target"
    );
    let m = fs::symlink_metadata(&l).unwrap();
    assert_eq!(m.uid(), 5);
    assert_eq!(
        m.mtime(),
        1_000_000_000,
        "symlink time set without following"
    );

    let m = fs::symlink_metadata(root.join("dev/null")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), libc::makedev(1, 3));
    assert_eq!(m.mode() & 0o7777, 0o666);
    let m = fs::symlink_metadata(root.join("dev/loop7")).unwrap();
    assert!(m.file_type().is_block_device());
    assert_eq!(m.rdev(), libc::makedev(7, 7));
    assert_eq!(m.gid(), 6);
    let m = fs::symlink_metadata(root.join("run/fifo")).unwrap();
    assert!(m.file_type().is_fifo());
    assert_eq!(m.mode() & 0o7777, 0o2644);
    assert!(!root.join("pax_global_header").exists());
}

#[test]
fn replaces_existing_and_merges_dirs() {
    let t = tmp();
    let root = root_of(&t);
    fs::create_dir_all(root.join("a/keep")).unwrap();
    fs::write(root.join("a/keep/x"), b"x").unwrap();
    fs::create_dir_all(root.join("dir-becomes-file/sub")).unwrap();
    fs::write(root.join("file-becomes-dir"), b"f").unwrap();
    fs::write(root.join("shared"), b"old").unwrap();
    fs::hard_link(root.join("shared"), root.join("shared2")).unwrap();
    let data = Tar::default()
        .dir("a", 0o700)
        .file("dir-becomes-file", b"now a file", 0o644)
        .dir("file-becomes-dir", 0o755)
        .file("file-becomes-dir/y", b"y", 0o644)
        .file("shared", b"new", 0o644)
        .finish();
    apply(&root, &data, &ApplyOptions::default()).unwrap();
    assert_eq!(
        fs::read(root.join("a/keep/x")).unwrap(),
        b"x",
        "dir merged, not replaced"
    );
    assert_eq!(fs::metadata(root.join("a")).unwrap().mode() & 0o777, 0o700);
    assert_eq!(
        fs::read(root.join("dir-becomes-file")).unwrap(),
        b"now a file"
    );
    assert_eq!(fs::read(root.join("file-becomes-dir/y")).unwrap(), b"y");
    assert_eq!(fs::read(root.join("shared")).unwrap(), b"new");
    assert_eq!(
        fs::read(root.join("shared2")).unwrap(),
        b"old",
        "replaced, not truncated in place"
    );
}

#[test]
fn long_names_gnu_and_pax() {
    let t = tmp();
    let root = root_of(&t);
    let long_dir = "d".repeat(150);
    let long_name = format!("{long_dir}/{}", "f".repeat(200));
    let long_target = format!("/{}", "t".repeat(180));
    let mut tar = Tar::default();
    let mut e = h(&long_name, b'0', 0o644);
    e.gnu_long = true;
    tar.entry(e, b"gnu");
    let mut e = h(&format!("{long_dir}/gnulink"), b'2', 0o777);
    e.gnu_long = true;
    e.link = long_target.as_bytes().to_vec();
    tar.entry(e, b"");
    tar.entry(
        h(&format!("{long_dir}/{}", "p".repeat(180)), b'0', 0o600),
        b"pax",
    );
    let mut e = h(&format!("{long_dir}/paxlink"), b'2', 0o777);
    e.link = long_target.as_bytes().to_vec();
    tar.entry(e, b"");
    let mut e = h(&format!("{long_dir}/paxhard"), b'1', 0o777);
    e.link = long_name.as_bytes().to_vec();
    tar.entry(e, b"");
    let data = tar.finish();
    let st = apply(&root, &data, &ApplyOptions::default()).unwrap();
    assert_eq!(st.entries, 5);
    assert_eq!(fs::read(root.join(&long_name)).unwrap(), b"gnu");
    assert_eq!(
        fs::read(root.join(&long_dir).join("p".repeat(180))).unwrap(),
        b"pax"
    );
    assert_eq!(
        fs::read_link(root.join(&long_dir).join("gnulink")).unwrap(),
        Path::new(&long_target)
    );
    assert_eq!(
        fs::read_link(root.join(&long_dir).join("paxlink")).unwrap(),
        Path::new(&long_target)
    );
    assert_eq!(
        fs::read(root.join(&long_dir).join("paxhard")).unwrap(),
        b"gnu"
    );
}

#[test]
fn pax_times_ids_and_xattrs() {
    let t = tmp();
    let root = root_of(&t);
    let mut tar = Tar::default();
    let mut e = h("f", b'0', 0o644);
    e.pax = vec![
        (b"mtime".to_vec(), b"1700000000.123456789".to_vec()),
        (b"atime".to_vec(), b"1800000000.5".to_vec()),
        (b"uid".to_vec(), b"3000000".to_vec()),
        (b"gid".to_vec(), b"3000001".to_vec()),
        (
            b"SCHILY.xattr.user.test".to_vec(),
            b"hello\0binary".to_vec(),
        ),
        (
            b"SCHILY.xattr.security.capability".to_vec(),
            vec![
                1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        ),
        (b"SCHILY.xattr.trusted.evil".to_vec(), b"no".to_vec()),
    ];
    tar.entry(e, b"data");
    let mut e = h("d", b'5', 0o755);
    e.pax = vec![
        (b"SCHILY.xattr.user.dir".to_vec(), b"yes".to_vec()),
        (b"mtime".to_vec(), b"-5.5".to_vec()),
    ];
    tar.entry(e, b"");
    let mut e = h("l", b'2', 0o777);
    e.link = b"f".to_vec();
    // user.* xattrs cannot be set on symlinks: skipped, not an error.
    e.pax = vec![(b"SCHILY.xattr.user.link".to_vec(), b"x".to_vec())];
    tar.entry(e, b"");
    let data = tar.finish();
    apply(&root, &data, &ApplyOptions::default()).unwrap();
    let m = fs::symlink_metadata(root.join("f")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 123_456_789));
    assert_eq!((m.atime(), m.atime_nsec()), (1_800_000_000, 500_000_000));
    assert_eq!((m.uid(), m.gid()), (3_000_000, 3_000_001));
    assert_eq!(
        lgetxattr(&root.join("f"), "user.test").unwrap(),
        b"hello\0binary"
    );
    assert!(lgetxattr(&root.join("f"), "security.capability").is_some());
    assert!(
        lgetxattr(&root.join("f"), "trusted.evil").is_none(),
        "trusted.* from the tar refused"
    );
    assert_eq!(lgetxattr(&root.join("d"), "user.dir").unwrap(), b"yes");
    assert_eq!(
        fs::symlink_metadata(root.join("d")).unwrap().mtime(),
        0,
        "pre-1970 time becomes epoch"
    );
    assert!(fs::symlink_metadata(root.join("l"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn no_same_owner_keeps_our_ids() {
    let t = tmp();
    let root = root_of(&t);
    let mut e = h("f", b'0', 0o640);
    e.uid = 4321;
    e.gid = 4321;
    let data = Tar::default().entry(e, b"x").finish();
    apply(
        &root,
        &data,
        &ApplyOptions {
            no_same_owner: true,
            ..Default::default()
        },
    )
    .unwrap();
    let m = fs::metadata(root.join("f")).unwrap();
    assert_eq!(m.uid(), unsafe { libc::geteuid() });
    assert_eq!(m.mode() & 0o777, 0o640);
}

#[test]
fn overlay_whiteouts() {
    for userxattr in [false, true] {
        let t = tmp();
        let root = root_of(&t);
        let mut tar = Tar::default();
        tar.dir("etc", 0o755);
        let mut w = h("etc/.wh.passwd", b'0', 0o644);
        w.uid = 7;
        w.gid = 8;
        tar.entry(w, b"");
        tar.file("opaque/.wh..wh..opq", b"", 0o644);
        tar.file("opaque/new", b"n", 0o644);
        tar.file("deep/missing/.wh.gone", b"", 0o644);
        let data = tar.finish();
        apply(
            &root,
            &data,
            &ApplyOptions {
                userxattr,
                ..Default::default()
            },
        )
        .unwrap();
        let m = fs::symlink_metadata(root.join("etc/passwd")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), 0);
        assert_eq!((m.uid(), m.gid()), (7, 8));
        assert!(!root.join("etc/.wh.passwd").exists());
        let (key, other) = if userxattr {
            ("user.overlay.opaque", "trusted.overlay.opaque")
        } else {
            ("trusted.overlay.opaque", "user.overlay.opaque")
        };
        assert_eq!(lgetxattr(&root.join("opaque"), key).unwrap(), b"y");
        assert!(lgetxattr(&root.join("opaque"), other).is_none());
        assert!(!root.join("opaque/.wh..wh..opq").exists());
        assert_eq!(fs::read(root.join("opaque/new")).unwrap(), b"n");
        assert!(fs::symlink_metadata(root.join("deep/missing/gone"))
            .unwrap()
            .file_type()
            .is_char_device());
        assert_eq!(
            fs::metadata(root.join("deep/missing")).unwrap().mode() & 0o7777,
            0o755
        );
    }
}

#[test]
fn delete_whiteouts_and_opaque() {
    let t = tmp();
    let root = root_of(&t);
    for d in ["etc", "opq/old/sub", "opq/merged/oldchild", "var/lib"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("etc/passwd"), b"p").unwrap();
    fs::write(root.join("etc/group"), b"g").unwrap();
    fs::write(root.join("opq/oldfile"), b"o").unwrap();
    fs::write(root.join("var/lib/target"), b"t").unwrap();
    std::os::unix::fs::symlink("/var/lib/target", root.join("etc/alias")).unwrap();
    let data = Tar::default()
        .file("etc/.wh.passwd", b"", 0o644)
        .file("etc/.wh.alias", b"", 0o644)
        .file("etc/.wh.does-not-exist", b"", 0o644)
        .file("opq/newfile", b"n", 0o644)
        .dir("opq/merged", 0o755)
        .file("opq/.wh..wh..opq", b"", 0o644)
        .file("opq/after", b"a", 0o644)
        .finish();
    apply(&root, &data, &delete()).unwrap();
    assert!(!root.join("etc/passwd").exists());
    assert!(root.join("etc/group").exists());
    assert!(
        fs::symlink_metadata(root.join("etc/alias")).is_err(),
        "symlink itself removed"
    );
    assert_eq!(
        fs::read(root.join("var/lib/target")).unwrap(),
        b"t",
        "not its target"
    );
    assert!(!root.join("etc/.wh.passwd").exists());
    let mut names: Vec<_> = fs::read_dir(root.join("opq"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["after", "merged", "newfile"]);
    assert_eq!(
        fs::read_dir(root.join("opq/merged")).unwrap().count(),
        0,
        "old children of a kept dir removed"
    );
}

#[test]
fn whiteout_dot_names_fail_whole_apply() {
    for name in [".wh..", ".wh...", "etc/.wh..", "etc/.wh...", "etc/.wh."] {
        for opts in [ApplyOptions::default(), delete()] {
            let t = tmp();
            let root = root_of(&t);
            fs::create_dir(root.join("etc")).unwrap();
            fs::write(root.join("etc/passwd"), b"inside").unwrap();
            let data = Tar::default().file(name, b"", 0o644).finish();
            let err = apply_layer(&root, &data[..], &opts).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{name}: {err}");
            assert!(
                err.to_string().contains(&format!("layer entry {name:?}")),
                "{err}"
            );
            assert_eq!(fs::read(root.join("etc/passwd")).unwrap(), b"inside");
        }
    }
}

#[test]
fn errors_name_the_entry() {
    let t = tmp();
    let root = root_of(&t);
    let data = Tar::default()
        .entry(h("../weird", b'V', 0o644), b"")
        .finish();
    let err = apply_layer(&root, &data[..], &ApplyOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.to_string().starts_with("layer entry \"../weird\": "),
        "{err}"
    );

    let data = Tar::default()
        .file("f", b"x", 0o644)
        .file("f/g", b"y", 0o644)
        .finish();
    let err = apply_layer(&root, &data[..], &ApplyOptions::default()).unwrap_err();
    assert!(
        err.to_string().starts_with("layer entry \"f/g\": "),
        "{err}"
    );
    assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR));

    let data = Tar::default().link("missing", "l").finish();
    let err = apply_layer(&root, &data[..], &ApplyOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    let mut bad = Tar::default().file("x", b"1234", 0o644).finish();
    bad[148] ^= 1; // checksum
    let err = apply_layer(&root, &bad[..], &ApplyOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");

    // Truncated data.
    let good = Tar::default().file("y", &[1u8; 3000], 0o644).finish();
    let err = apply_layer(&root, &good[..1200], &ApplyOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

#[test]
fn device_numbers_must_fit() {
    let t = tmp();
    let root = root_of(&t);
    let mut data = Tar::default()
        .entry(h("dev/big", b'3', 0o600), b"")
        .finish();
    // GNU base-256 major of 2^32 + 1 (would truncate to 1).
    let major = &mut data[329..337];
    major.copy_from_slice(&[0x80, 0, 0, 1, 0, 0, 0, 1]);
    let sum: u32 = data[..512]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u32
            }
        })
        .sum();
    data[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let err = apply_layer(&root, &data[..], &ApplyOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("out of range"), "{err}");
    assert!(!root.join("dev/big").exists());
}

#[test]
fn root_entries_ignored() {
    let t = tmp();
    let root = root_of(&t);
    fs::set_permissions(&root, fs::Permissions::from_mode(0o711)).unwrap();
    let data = Tar::default()
        .dir("./", 0o700)
        .dir("/", 0o700)
        .dir("..", 0o700)
        .file("ok", b"", 0o644)
        .finish();
    let st = apply(&root, &data, &ApplyOptions::default()).unwrap();
    assert_eq!(st.entries, 4);
    assert_eq!(fs::metadata(&root).unwrap().mode() & 0o777, 0o711);
    assert!(root.join("ok").exists());
}

#[test]
fn parents_metadata_copied_to_implied_dirs() {
    let t = tmp();
    let lower1 = t.path().join("lower1");
    let lower2 = t.path().join("lower2");
    fs::create_dir_all(lower2.join("usr/share")).unwrap();
    fs::create_dir_all(lower1.join("usr")).unwrap();
    let chown = |p: &Path, u: u32, g: u32| std::os::unix::fs::lchown(p, Some(u), Some(g)).unwrap();
    chown(&lower1.join("usr"), 11, 12);
    fs::set_permissions(lower1.join("usr"), fs::Permissions::from_mode(0o750)).unwrap();
    chown(&lower2.join("usr/share"), 21, 22);
    fs::set_permissions(lower2.join("usr/share"), fs::Permissions::from_mode(0o2775)).unwrap();
    let c = CString::new(lower2.join("usr/share").as_os_str().as_bytes()).unwrap();
    unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            c"user.copied".as_ptr(),
            b"1".as_ptr().cast(),
            1,
            0,
        );
        libc::lsetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            b"y".as_ptr().cast(),
            1,
            0,
        );
    }
    let ts = [
        libc::timespec {
            tv_sec: 1_111,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: 2_222,
            tv_nsec: 0,
        },
    ];
    unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), 0) };
    let root = root_of(&t);
    let data = Tar::default().file("usr/share/doc/f", b"f", 0o644).finish();
    let opts = ApplyOptions {
        parents: vec![lower1.clone(), lower2.clone()],
        ..Default::default()
    };
    apply(&root, &data, &opts).unwrap();
    let m = fs::metadata(root.join("usr")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (11, 12, 0o750));
    let m = fs::metadata(root.join("usr/share")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (21, 22, 0o2775));
    assert_eq!(
        lgetxattr(&root.join("usr/share"), "user.copied").unwrap(),
        b"1"
    );
    assert!(lgetxattr(&root.join("usr/share"), "trusted.overlay.opaque").is_none());
    let m = fs::metadata(root.join("usr/share/doc")).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o755));
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn big_tar() -> Vec<u8> {
    let mut tar = Tar::default();
    for i in 0..200u32 {
        let body: Vec<u8> = (0..(i * 997) % 70_000)
            .map(|j| (j * 31 + i) as u8)
            .collect();
        tar.file(&format!("d{}/f{i}", i % 7), &body, 0o644);
    }
    tar.file("big", &vec![0xabu8; 3 << 20], 0o644);
    tar.finish()
}

#[test]
fn gzip_multi_member_and_diff_id() {
    let t = tmp();
    let root = root_of(&t);
    let data = big_tar();
    let cut = 512 * 301;
    let mut gz = gzip(&data[..cut]);
    gz.extend(gzip(&data[cut..]));
    for pipelined in [false, true] {
        let r = t.path().join(format!("r{pipelined}"));
        fs::create_dir(&r).unwrap();
        let st = apply_layer_with(&r, &gz[..], &ApplyOptions::default(), Some(pipelined)).unwrap();
        assert_eq!(st.compression, Compression::Gzip);
        assert_eq!(st.diff_id.to_string(), sha256_hex(&data));
        assert_eq!(st.uncompressed_bytes, data.len() as u64);
        assert_eq!(st.compressed_bytes, gz.len() as u64);
        assert_eq!(st.entries, 201);
        assert_eq!(fs::read(r.join("big")).unwrap(), vec![0xabu8; 3 << 20]);
        let f = fs::read(r.join("d3/f199")).unwrap();
        assert_eq!(f.len(), (199 * 997) % 70_000);
    }
    let _ = root;
}

#[test]
fn zstd_layer() {
    let t = tmp();
    let data = big_tar();
    let mut z = zstd::stream::encode_all(&data[..], 3).unwrap();
    // A trailing skippable frame must be fine too.
    z.extend_from_slice(&0x184D2A5Fu32.to_le_bytes());
    z.extend_from_slice(&2u32.to_le_bytes());
    z.extend_from_slice(b"hi");
    for pipelined in [false, true] {
        let r = t.path().join(format!("r{pipelined}"));
        fs::create_dir(&r).unwrap();
        let st = apply_layer_with(&r, &z[..], &ApplyOptions::default(), Some(pipelined)).unwrap();
        assert_eq!(st.compression, Compression::Zstd);
        assert_eq!(st.diff_id.to_string(), sha256_hex(&data));
        assert_eq!(st.compressed_bytes, z.len() as u64);
        assert_eq!(fs::read(r.join("big")).unwrap().len(), 3 << 20);
    }
}

#[test]
fn trailing_bytes_after_end_blocks_are_hashed() {
    let t = tmp();
    let root = root_of(&t);
    let mut data = Tar::default().file("a", b"a", 0o644).finish();
    data.extend_from_slice(&[0u8; 8192]);
    data.extend_from_slice(b"trailing garbage that is not a tar");
    let st = apply(&root, &data, &ApplyOptions::default()).unwrap();
    assert_eq!(st.diff_id.to_string(), sha256_hex(&data));
    assert_eq!(st.uncompressed_bytes, data.len() as u64);
    let gz = gzip(&data);
    let st = apply_layer(&root, &gz[..], &ApplyOptions::default()).unwrap();
    assert_eq!(st.diff_id.to_string(), sha256_hex(&data));
    // An empty stream is an empty layer.
    let st = apply_layer(&root, &b""[..], &ApplyOptions::default()).unwrap();
    assert_eq!(st.entries, 0);
    assert_eq!(st.diff_id.to_string(), sha256_hex(b""));
}

#[test]
fn corrupt_gzip_fails_in_both_modes() {
    let t = tmp();
    let mut gz = gzip(&big_tar());
    let n = gz.len();
    gz[n / 2] ^= 0x55;
    gz[n / 2 + 1] ^= 0x55;
    for pipelined in [false, true] {
        let r = t.path().join(format!("r{pipelined}"));
        fs::create_dir(&r).unwrap();
        let err =
            apply_layer_with(&r, &gz[..], &ApplyOptions::default(), Some(pipelined)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    }
}

#[test]
fn a_layer_decoded_ahead_applies_the_same() {
    let t = tmp();
    let data = big_tar();
    let gz = gzip(&data);
    let r = t.path().join("ahead");
    fs::create_dir(&r).unwrap();
    // More decoded chunks than the queue holds (4 here): the decoder waits, then goes on.
    let mut big = Tar::default();
    big.file("huge", &vec![7u8; 5 << 20], 0o600);
    let huge = big.finish();
    for (layer, want, tar) in [
        (gz.clone(), Compression::Gzip, &data),
        (huge.clone(), Compression::None, &huge),
    ] {
        let decoding =
            DecodingLayer::start_with_depth(std::io::Cursor::new(layer.clone()), 4).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50)); // let it run ahead
        let st = decoding.apply(&r, &ApplyOptions::default()).unwrap();
        assert_eq!(st.compression, want);
        assert_eq!(st.diff_id.to_string(), sha256_hex(tar));
        assert_eq!(st.uncompressed_bytes, tar.len() as u64);
        assert_eq!(st.compressed_bytes, layer.len() as u64);
    }
    assert_eq!(fs::read(r.join("big")).unwrap(), vec![0xabu8; 3 << 20]);
    assert_eq!(fs::metadata(r.join("huge")).unwrap().len(), 5 << 20);
    // Dropped unapplied, it stops (its thread must not hang on the full queue).
    drop(DecodingLayer::start_with_depth(std::io::Cursor::new(huge), 4).unwrap());
    // A corrupt layer fails at apply, as apply_layer does.
    let mut bad = gz;
    let n = bad.len();
    bad[n / 2] ^= 0x55;
    bad[n / 2 + 1] ^= 0x55;
    let r2 = t.path().join("bad");
    fs::create_dir(&r2).unwrap();
    let err = DecodingLayer::start(std::io::Cursor::new(bad))
        .unwrap()
        .apply(&r2, &ApplyOptions::default())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

// ---------------------------------------------------------------------------------------------
// containerd pkg/archive/tar_test.go TestBreakouts, ported. Tar::symlink(target, name) and
// Tar::link(target, name) take the same (old, new) order as containerd's tc.Symlink/tc.Link.

type Check = Box<dyn Fn(&Path) -> Result<(), String>>;

/// Resolve `p` inside `root` following symlinks as if root were `/` (for the checks only).
fn root_path(root: &Path, p: &str) -> PathBuf {
    let mut cur = PathBuf::new();
    let mut todo: Vec<String> = p.split('/').rev().map(str::to_owned).collect();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "" | "." => {}
            ".." => {
                cur.pop();
            }
            _ => {
                let next = cur.join(&c);
                match fs::read_link(root.join(&next)) {
                    Ok(t) => {
                        links += 1;
                        assert!(links < 255);
                        let t = t.to_string_lossy().into_owned();
                        if t.starts_with('/') {
                            cur = PathBuf::new();
                        }
                        todo.extend(t.split('/').rev().map(str::to_owned));
                    }
                    Err(_) => cur = next,
                }
            }
        }
    }
    root.join(cur)
}

fn unbroken() -> Check {
    Box::new(|root| {
        let b = fs::read(root.join("etc/unbroken")).map_err(|e| format!("read unbroken: {e}"))?;
        (b == b"unbroken")
            .then_some(())
            .ok_or("unbroken has wrong content".into())
    })
}

fn same_file(a: &'static str, b: &'static str) -> Check {
    Box::new(move |root| {
        let ma = fs::metadata(root_path(root, a)).map_err(|e| format!("{a}: {e}"))?;
        let mb = fs::metadata(root_path(root, b)).map_err(|e| format!("{b}: {e}"))?;
        (ma.ino() == mb.ino() && ma.dev() == mb.dev())
            .then_some(())
            .ok_or(format!("{a} and {b} differ"))
    })
}

fn not_same_file(a: &'static str, b: &'static str) -> Check {
    Box::new(move |root| match same_file(a, b)(root) {
        Ok(()) => Err(format!("{a} and {b} are the same file")),
        Err(e) if e.contains("differ") => Ok(()),
        Err(e) => Err(e),
    })
}

fn same_symlink(a: &'static str, b: &'static str) -> Check {
    Box::new(move |root| {
        let ta =
            fs::read_link(root.join(a.trim_start_matches('/'))).map_err(|e| format!("{a}: {e}"))?;
        let tb =
            fs::read_link(root.join(b.trim_start_matches('/'))).map_err(|e| format!("{b}: {e}"))?;
        (ta == tb)
            .then_some(())
            .ok_or(format!("{a} and {b} differ"))
    })
}

fn file_value(f: &'static str, v: &'static [u8]) -> Check {
    Box::new(move |root| {
        let b = fs::read(root.join(f)).map_err(|e| format!("{f}: {e}"))?;
        (b == v).then_some(()).ok_or(format!("{f}: content {b:?}"))
    })
}

fn not_exists(f: &'static str) -> Check {
    Box::new(move |root| match fs::symlink_metadata(root.join(f)) {
        Ok(_) => Err(format!("{f} exists")),
        Err(_) => Ok(()),
    })
}

fn all(checks: Vec<Check>) -> Check {
    Box::new(move |root| checks.iter().try_for_each(|c| c(root)))
}

struct Breakout {
    name: &'static str,
    pre: fn(&Path),
    tar: Vec<u8>,
    check: Option<Check>,
    invalid: bool,
}

fn nothing(_: &Path) {}

fn etc_passwd(root: &Path, content: &[u8]) {
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/passwd"), content).unwrap();
}

fn breakouts(outside: &Path) -> Vec<Breakout> {
    let t = || Tar::default();
    let b = |name, tar: &mut Tar, check: Check| Breakout {
        name,
        pre: nothing,
        tar: tar.finish(),
        check: Some(check),
        invalid: false,
    };
    let with = |name, pre: fn(&Path), tar: &mut Tar, check: Check| Breakout {
        name,
        pre,
        tar: tar.finish(),
        check: Some(check),
        invalid: false,
    };
    let invalid = |name, pre: fn(&Path), tar: &mut Tar| Breakout {
        name,
        pre,
        tar: tar.finish(),
        check: None,
        invalid: true,
    };
    let outside_name = outside.file_name().unwrap().to_str().unwrap().to_owned();
    let breakout_file: &'static str =
        Box::leak(format!("foo/tmp/breakout-{outside_name}").into_boxed_str());
    let perm400 = outside.join("perm400");
    fs::write(&perm400, b"...").unwrap();
    fs::set_permissions(&perm400, fs::Permissions::from_mode(0o400)).unwrap();
    let also = outside.join("also-exists-outside-root");
    fs::write(&also, b"...").unwrap();
    fs::set_permissions(&also, fs::Permissions::from_mode(0o640)).unwrap();
    let (perm400, also) = (
        perm400.to_str().unwrap().to_owned(),
        also.to_str().unwrap().to_owned(),
    );

    vec![
        b(
            "SymlinkAbsolute",
            t().dir("etc", 0o755).symlink("/etc", "localetc").file(
                "/localetc/unbroken",
                b"unbroken",
                0o644,
            ),
            unbroken(),
        ),
        b(
            "SymlinkUpAndOut",
            t().dir("etc", 0o755)
                .dir("dummy", 0o755)
                .symlink("/dummy/../etc", "localetc")
                .file("/localetc/unbroken", b"unbroken", 0o644),
            unbroken(),
        ),
        b(
            "SymlinkMultipleAbsolute",
            t().dir("etc", 0o755)
                .dir("dummy", 0o755)
                .symlink("/etc", "/dummy/etc")
                .symlink("/dummy/etc", "localetc")
                .file("/dummy/etc/unbroken", b"unbroken", 0o644),
            unbroken(),
        ),
        b(
            "SymlinkMultipleRelative",
            t().dir("etc", 0o755)
                .dir("dummy", 0o755)
                .symlink("/etc", "/dummy/etc")
                .symlink("./dummy/etc", "localetc")
                .file("/dummy/etc/unbroken", b"unbroken", 0o644),
            unbroken(),
        ),
        b(
            "SymlinkEmptyFile",
            t().dir("etc", 0o755)
                .file("etc/emptied", b"notempty", 0o644)
                .symlink("/etc", "localetc")
                .file("/localetc/emptied", b"", 0o644),
            file_value("etc/emptied", b""),
        ),
        b(
            "HardlinkRelative",
            t().dir("etc", 0o770)
                .file("/etc/passwd", b"inside", 0o644)
                .dir("breakouts", 0o755)
                .symlink("../../etc", "breakouts/d1")
                .link("/breakouts/d1/passwd", "breakouts/mypasswd"),
            same_file("/breakouts/mypasswd", "/etc/passwd"),
        ),
        b(
            "HardlinkDownAndOut",
            t().dir("etc", 0o770)
                .file("/etc/passwd", b"inside", 0o644)
                .dir("breakouts", 0o755)
                .dir("downandout", 0o755)
                .symlink("../downandout/../../etc", "breakouts/d1")
                .link("/breakouts/d1/passwd", "breakouts/mypasswd"),
            same_file("/breakouts/mypasswd", "/etc/passwd"),
        ),
        b(
            "HardlinkAbsolute",
            t().dir("etc", 0o770)
                .file("/etc/passwd", b"inside", 0o644)
                .symlink("/etc", "localetc")
                .link("/localetc/passwd", "localpasswd"),
            same_file("localpasswd", "/etc/passwd"),
        ),
        b(
            "HardlinkRelativeLong",
            t().dir("etc", 0o770)
                .file("/etc/passwd", b"inside", 0o644)
                .symlink("../../../../../../../etc", "localetc")
                .link("/localetc/passwd", "localpasswd"),
            same_file("localpasswd", "/etc/passwd"),
        ),
        b(
            "HardlinkRelativeUpAndOut",
            t().dir("etc", 0o770)
                .file("/etc/passwd", b"inside", 0o644)
                .symlink("upandout/../../../etc", "localetc")
                .link("/localetc/passwd", "localpasswd"),
            same_file("localpasswd", "/etc/passwd"),
        ),
        b(
            "HardlinkDirectRelative",
            t().dir("etc", 0o770)
                .file("/etc/passwd", b"inside", 0o644)
                .link("../../../../../etc/passwd", "localpasswd"),
            same_file("localpasswd", "/etc/passwd"),
        ),
        b(
            "HardlinkDirectAbsolute",
            t().dir("etc", 0o770)
                .file("/etc/passwd", b"inside", 0o644)
                .link("/etc/passwd", "localpasswd"),
            same_file("localpasswd", "/etc/passwd"),
        ),
        b(
            "SymlinkParentDirectory",
            t().dir("etc", 0o770)
                .file("/etc/passwd", b"inside", 0o644)
                .symlink("/etc/", "..")
                .link("/etc/passwd", "localpasswd"),
            same_file("/localpasswd", "/etc/passwd"),
        ),
        b(
            "SymlinkEmptyFilename",
            t().dir("etc", 0o770)
                .file("/etc/passwd", b"inside", 0o644)
                .symlink("/etc/", "")
                .link("/etc/passwd", "localpasswd"),
            same_file("/localpasswd", "/etc/passwd"),
        ),
        b(
            "SymlinkParentRelative",
            t().dir("etc", 0o770)
                .file("/etc/passwd", b"inside", 0o644)
                .symlink("/etc/", "localetc/sub/..")
                .link("/etc/passwd", "/localetc/localpasswd"),
            same_file("/localetc/localpasswd", "/etc/passwd"),
        ),
        b(
            "SymlinkSlashEnded",
            t().dir("etc", 0o770)
                .file("/etc/passwd", b"inside", 0o644)
                .dir("localetc/", 0o770)
                .link("/etc/passwd", "/localetc/localpasswd"),
            same_file("/localetc/localpasswd", "/etc/passwd"),
        ),
        with(
            "SymlinkOverrideDirectory",
            |r| {
                etc_passwd(r, b"inside");
                fs::create_dir(r.join("localetc")).unwrap();
            },
            t().symlink("/etc", "localetc")
                .link("/etc/passwd", "/localetc/localpasswd"),
            same_file("/localetc/localpasswd", "/etc/passwd"),
        ),
        with(
            "SymlinkOverrideDirectoryRelative",
            |r| {
                etc_passwd(r, b"inside");
                fs::create_dir(r.join("localetc")).unwrap();
            },
            t().symlink("../../etc", "localetc")
                .link("/etc/passwd", "/localetc/localpasswd"),
            same_file("/localetc/localpasswd", "/etc/passwd"),
        ),
        with(
            "DirectoryOverrideSymlink",
            |r| {
                etc_passwd(r, b"inside");
                std::os::unix::fs::symlink("/etc", r.join("localetc")).unwrap();
            },
            t().dir("/localetc/", 0o755)
                .link("/etc/passwd", "/localetc/localpasswd"),
            same_file("/localetc/localpasswd", "/etc/passwd"),
        ),
        with(
            "DirectoryOverrideSymlinkAndHardlink",
            |r| {
                etc_passwd(r, b"inside");
                std::os::unix::fs::symlink("etc", r.join("localetc")).unwrap();
                fs::hard_link(r.join("etc/passwd"), r.join("etc/localpasswd")).unwrap();
            },
            t().dir("/localetc/", 0o755)
                .file("/localetc/localpasswd", b"different", 0o644),
            not_same_file("/localetc/localpasswd", "/etc/passwd"),
        ),
        invalid(
            "WhiteoutRootParent",
            |r| etc_passwd(r, b"inside"),
            t().file(".wh...", b"", 0o644),
        ),
        invalid(
            "WhiteoutParent",
            |r| etc_passwd(r, b"inside"),
            t().file("etc/.wh...", b"", 0o644),
        ),
        invalid(
            "WhiteoutRoot",
            |r| etc_passwd(r, b"inside"),
            t().file(".wh..", b"", 0o644),
        ),
        invalid(
            "WhiteoutCurrentDirectory",
            |r| etc_passwd(r, b"inside"),
            t().file("etc/.wh..", b"", 0o644),
        ),
        with(
            "WhiteoutSymlink",
            |r| {
                etc_passwd(r, b"all users");
                std::os::unix::fs::symlink("/etc", r.join("localetc")).unwrap();
            },
            t().file(".wh.localetc", b"", 0o644),
            all(vec![
                file_value("etc/passwd", b"all users"),
                not_exists("localetc"),
            ]),
        ),
        with(
            "WhiteoutSymlinkPath",
            |r| {
                etc_passwd(r, b"all users");
                fs::write(r.join("etc/whitedout"), b"ahhhh whiteout").unwrap();
                std::os::unix::fs::symlink("/etc", r.join("localetc")).unwrap();
            },
            t().file("localetc/.wh.whitedout", b"", 0o644),
            all(vec![
                file_value("etc/passwd", b"all users"),
                not_exists("etc/whitedout"),
            ]),
        ),
        with(
            "WhiteoutDirectoryName",
            |r| {
                etc_passwd(r, b"all users");
                fs::write(r.join("etc/whitedout"), b"ahhhh whiteout").unwrap();
                std::os::unix::fs::symlink("/etc", r.join("localetc")).unwrap();
            },
            t().file(".wh.etc/somefile", b"non-empty", 0o644),
            all(vec![
                file_value("etc/passwd", b"all users"),
                file_value(".wh.etc/somefile", b"non-empty"),
            ]),
        ),
        with(
            "WhiteoutDeadSymlinkParent",
            |r| {
                etc_passwd(r, b"all users");
                std::os::unix::fs::symlink("/dne", r.join("localetc")).unwrap();
            },
            t().file("localetc/.wh.etc", b"", 0o644),
            file_value("etc/passwd", b"all users"),
        ),
        with(
            "WhiteoutRelativePath",
            |r| {
                etc_passwd(r, b"all users");
                std::os::unix::fs::symlink("/dne", r.join("localetc")).unwrap();
            },
            t().file("dne/../.wh.etc", b"", 0o644),
            not_exists("etc/passwd"),
        ),
        b(
            "SymlinkOverridePath",
            t().dir("foo", 0o755)
                .dir("foo/tmp", 0o755)
                .file(breakout_file, &[0, 1, 2], 0o644)
                .symlink("/", "foo")
                .file(breakout_file, &[3, 4, 5], 0o644)
                .dir("foo", 0o755)
                .dir("foo/tmp", 0o755)
                .file(breakout_file, &[6, 7, 8], 0o644),
            {
                let real = PathBuf::from("/tmp").join(breakout_file.trim_start_matches("foo/tmp/"));
                all(vec![
                    Box::new(move |_: &Path| match fs::read(&real) {
                        Ok(b) if b == [3, 4, 5] => Err("file written outside of root".to_owned()),
                        _ => Ok(()),
                    }),
                    file_value(breakout_file, &[6, 7, 8]),
                ])
            },
        ),
        b(
            "HardlinkSymlinkBeforeCreateTarget",
            t().dir("etc", 0o770)
                .symlink("/etc/passwd", "localpasswd")
                .link("localpasswd", "localpasswd-dup")
                .file("/etc/passwd", b"after", 0o644),
            same_file("localpasswd-dup", "/etc/passwd"),
        ),
        b(
            "HardlinkSymlinkRelative",
            t().dir("etc", 0o770)
                .file("/etc/passwd", b"inside", 0o644)
                .symlink("../../../../../etc/passwd", "passwdlink")
                .link("/passwdlink", "localpasswd"),
            all(vec![
                same_symlink("/localpasswd", "/passwdlink"),
                same_file("/localpasswd", "/etc/passwd"),
            ]),
        ),
        b(
            "HardlinkSymlinkAbsolute",
            t().dir("etc", 0o770)
                .file("/etc/passwd", b"inside", 0o644)
                .symlink("/etc/passwd", "passwdlink")
                .link("/passwdlink", "localpasswd"),
            all(vec![
                same_symlink("/localpasswd", "/passwdlink"),
                same_file("/localpasswd", "/etc/passwd"),
            ]),
        ),
        b(
            "HardlinkSymlinkChmod",
            t().symlink(&perm400, &also).link(&also, "sketchylink"),
            {
                let p = PathBuf::from(&perm400);
                Box::new(move |_| {
                    let m = fs::symlink_metadata(&p).map_err(|e| e.to_string())?;
                    (m.mode() & 0o777 == 0o400)
                        .then_some(())
                        .ok_or(format!("perm changed to {:o}", m.mode() & 0o777))
                })
            },
        ),
    ]
}

#[test]
fn containerd_breakouts() {
    let outside = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for mode in [WhiteoutMode::Delete, WhiteoutMode::Overlay] {
        for bo in breakouts(outside.path()) {
            // Overlay whiteouts never delete; only check the whiteout cases in delete mode.
            if mode == WhiteoutMode::Overlay && bo.name.starts_with("Whiteout") && !bo.invalid {
                continue;
            }
            let opts = ApplyOptions {
                whiteouts: mode,
                ..Default::default()
            };
            for pipelined in [false, true] {
                let t = tmp();
                let root = root_of(&t);
                (bo.pre)(&root);
                let r = apply_layer_with(&root, &bo.tar[..], &opts, Some(pipelined));
                let outcome = match (&r, bo.invalid, &bo.check) {
                    (Err(e), true, _) if e.kind() == ErrorKind::InvalidArgument => Ok(()),
                    (Err(e), _, _) => Err(format!("apply failed: {e}")),
                    (Ok(_), true, _) => Err("apply succeeded, expected invalid archive".into()),
                    (Ok(_), false, Some(check)) => check(&root),
                    (Ok(_), false, None) => Ok(()),
                };
                if let Err(e) = outcome {
                    failures.push(format!(
                        "{} ({mode:?}, pipelined {pipelined}): {e}",
                        bo.name
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "breakout failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn setgid_parents_and_umask_do_not_leak_into_entries() {
    let t = tmp();
    let root = root_of(&t);
    let mut tar = Tar::default();
    tar.dir("d", 0o755);
    tar.file("d/a", b"a", 0o644);
    // The same directory again, now set-group-ID with another group.
    let mut d = h("d", b'5', 0o2775);
    d.gid = 50;
    tar.entry(d, b"");
    tar.file("d/b", b"b", 0o644); // uid 0, gid 0 asked for
    let mut e = h("d/c", b'0', 0o644);
    e.gid = 50;
    tar.entry(e, b"c");
    tar.file("wide", b"w", 0o666); // more than the usual umask allows
    tar.file("ro", b"r", 0o444);
    let data = tar.finish();
    apply(&root, &data, &ApplyOptions::default()).unwrap();
    let m = |p: &str| fs::symlink_metadata(root.join(p)).unwrap();
    assert_eq!((m("d").gid(), m("d").mode() & 0o7777), (50, 0o2775));
    assert_eq!(m("d/a").gid(), 0);
    assert_eq!(m("d/b").gid(), 0, "not the set-group-ID directory's group");
    assert_eq!(m("d/c").gid(), 50);
    assert_eq!(m("wide").mode() & 0o7777, 0o666);
    assert_eq!(m("ro").mode() & 0o7777, 0o444);
    assert_eq!(fs::read(root.join("ro")).unwrap(), b"r");
}

#[test]
fn symlink_loops_fail_and_chains_resolve() {
    let t = tmp();
    let root = root_of(&t);
    let data = Tar::default()
        .symlink("b", "a")
        .symlink("/a", "b")
        .file("a/x", b"x", 0o644)
        .finish();
    let err = apply_layer(&root, &data[..], &ApplyOptions::default()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
    assert!(err.to_string().starts_with("layer entry \"a/x\""), "{err}");

    // A chain of 100 symlinks (more than the kernel's 40) still resolves inside the root.
    let t = tmp();
    let root = root_of(&t);
    let mut tar = Tar::default();
    tar.dir("real", 0o755);
    tar.symlink("/real", "l0");
    for i in 1..100 {
        tar.symlink(&format!("../l{}", i - 1), &format!("l{i}"));
    }
    tar.file("l99/f", b"deep", 0o644);
    apply(&root, &tar.finish(), &ApplyOptions::default()).unwrap();
    assert_eq!(fs::read(root.join("real/f")).unwrap(), b"deep");
}

#[test]
fn owner_xattr_records_owners_instead_of_chown() {
    // Single-id mode: nothing is chowned; a non-0:0 owner is kept in user.rootlesscontainers
    // (umoci's encoding, 0 as NoopID); an xattr of that name in the layer is dropped; setuid
    // bits stay; symlinks (no user.* xattrs there) are created without one, not an error.
    let t = tmp();
    let root = root_of(&t);
    let mut tar = Tar::default();
    let mut e = h("suid", b'0', 0o4755);
    (e.uid, e.gid) = (1000, 1000);
    tar.entry(e, b"x");
    let mut e = h("d", b'5', 0o2775);
    (e.uid, e.gid) = (0, 5);
    tar.entry(e, b"");
    let mut e = h("d/rootfile", b'0', 0o644);
    e.pax = vec![(
        b"SCHILY.xattr.user.rootlesscontainers".to_vec(),
        vec![0x08, 0x07, 0x10, 0x07],
    )];
    tar.entry(e, b"r");
    let mut e = h("l", b'2', 0o777);
    (e.uid, e.gid) = (7, 7);
    e.link = b"suid".to_vec();
    tar.entry(e, b"");
    let mut e = h("d/.wh.gone", b'0', 0o644);
    (e.uid, e.gid) = (3, 3);
    tar.entry(e, b"");
    let data = tar.finish();
    apply(
        &root,
        &data,
        &ApplyOptions {
            owner_xattr: true,
            ..Default::default()
        },
    )
    .unwrap();
    let key = "user.rootlesscontainers";
    let me = unsafe { (libc::geteuid(), libc::getegid()) };
    for p in ["suid", "d", "d/rootfile", "l", "d/gone"] {
        let m = fs::symlink_metadata(root.join(p)).unwrap();
        assert_eq!((m.uid(), m.gid()), me, "{p} is owned by us");
    }
    let m = fs::metadata(root.join("suid")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o4755);
    assert_eq!(
        fs::metadata(root.join("d")).unwrap().mode() & 0o7777,
        0o2775
    );
    assert_eq!(
        lgetxattr(&root.join("suid"), key).unwrap(),
        [0x08, 0xe8, 0x07, 0x10, 0xe8, 0x07]
    );
    assert_eq!(
        lgetxattr(&root.join("d"), key).unwrap(),
        [0x08, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x10, 0x05]
    );
    assert!(lgetxattr(&root.join("d/rootfile"), key).is_none());
    assert!(lgetxattr(&root.join("l"), key).is_none());
}
