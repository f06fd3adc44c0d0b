use std::fs;
use std::path::{Path, PathBuf};

use super::*;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: needs root");
    }
    root
}

/// Unmounts everything under the directory when dropped, so a failing test leaves no mounts.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Self {
        Scratch(tempfile::tempdir().unwrap())
    }
    fn dir(&self, name: &str) -> PathBuf {
        let p = self.0.path().join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = unmount_recursive(self.0.path(), MNT_DETACH);
    }
}

fn opts(s: &[&str]) -> Vec<String> {
    s.iter().map(|o| o.to_string()).collect()
}

fn mounted(p: &Path) -> bool {
    is_mountpoint(p).unwrap()
}

#[test]
fn mount_options_become_flags_and_data() {
    let o = parse_options(&[
        "ro", "rbind", "nosuid", "nodev", "rprivate", "size=1m", "mode=755",
    ])
    .unwrap();
    assert_eq!(
        o.flags,
        libc::MS_RDONLY | libc::MS_BIND | libc::MS_REC | libc::MS_NOSUID | libc::MS_NODEV
    );
    assert_eq!(o.propagation, libc::MS_PRIVATE | libc::MS_REC);
    assert_eq!(o.data_string(), "size=1m,mode=755");

    // Later options win; clearing options clear.
    let o = parse_options(&["ro", "noexec", "rw", "exec", "defaults", "sync", "async"]).unwrap();
    assert_eq!(o.flags, 0);
    assert!(o.data.is_empty());

    let o = parse_options(&[
        "remount",
        "bind",
        "noatime",
        "relatime",
        "strictatime",
        "dirsync",
    ])
    .unwrap();
    assert_eq!(
        o.flags,
        libc::MS_REMOUNT
            | libc::MS_BIND
            | libc::MS_NOATIME
            | libc::MS_RELATIME
            | libc::MS_STRICTATIME
            | libc::MS_DIRSYNC
    );

    let e = parse_options(&["X-containerd.mkdir.path=/x"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = parse_options(&["loop"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotImplemented);
}

#[test]
fn mount_compact_lowerdir_like_containerd() {
    let none = |o: &[&str]| assert_eq!(compact_lowerdir(&opts(o)), None, "{o:?}");
    none(&["workdir=a"]);
    none(&["workdir=a", "lowerdir=b"]);
    none(&["lowerdir=/snapshots/1/fs:/other_snapshots/1/fs"]);
    none(&["lowerdir=a:aaa"]);

    let (dir, o) = compact_lowerdir(&opts(&["lowerdir=/snapshots/1/fs:/snapshots/10/fs"])).unwrap();
    assert_eq!(
        (dir.as_str(), o),
        ("/snapshots/", opts(&["lowerdir=1/fs:10/fs"]))
    );

    let (dir, o) = compact_lowerdir(&opts(&[
        "workdir=/s/3/work",
        "lowerdir=/s/1/fs:/s/10/fs:/s/2/fs",
        "upperdir=/s/3/fs",
        "index=off",
    ]))
    .unwrap();
    assert_eq!(dir, "/s/");
    assert_eq!(
        o,
        opts(&[
            "workdir=/s/3/work",
            "upperdir=/s/3/fs",
            "index=off",
            "lowerdir=1/fs:10/fs:2/fs"
        ])
    );
}

#[test]
fn mount_volatile_dropped_for_overlay_only() {
    let m = Mount::new(
        "overlay",
        "overlay",
        ["lowerdir=/a:/b", "volatile", "fsync=volatile"],
    );
    assert_eq!(without_volatile(&m).options, opts(&["lowerdir=/a:/b"]));
    let b = Mount::new("bind", "/x", ["volatile"]);
    assert!(matches!(without_volatile(&b), Cow::Borrowed(_)));
}

#[test]
fn mountinfo_parses_escapes_and_optional_fields() {
    let sample = b"22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard\n\
36 22 0:32 /sub\\040dir /mnt/with\\040space\\011tab rw,nosuid shared:5 master:2 - tmpfs my\\134src rw,size=1024k\n\
\n\
40 36 0:33 / /mnt/o rw - overlay overlay rw,lowerdir=/a:/b,upperdir=/u,workdir=/w\n";
    let m = parse_mountinfo(sample).unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(
        (m[0].id, m[0].parent, m[0].major, m[0].minor),
        (22, 1, 253, 0)
    );
    assert_eq!(m[0].mount_point, PathBuf::from("/"));
    assert_eq!(
        (m[0].fstype.as_str(), m[0].source.as_str()),
        ("ext4", "/dev/vda")
    );
    assert_eq!(m[0].optional, vec!["shared:1"]);

    assert_eq!(m[1].root, PathBuf::from("/sub dir"));
    assert_eq!(m[1].mount_point, PathBuf::from("/mnt/with space\ttab"));
    assert_eq!(m[1].options, "rw,nosuid");
    assert_eq!(m[1].optional, vec!["shared:5", "master:2"]);
    assert_eq!(m[1].source, "my\\src");
    assert_eq!(m[1].super_options, "rw,size=1024k");

    assert!(m[2].optional.is_empty());
    assert_eq!(m[2].fstype, "overlay");
    assert_eq!(
        m[2].super_options,
        "rw,lowerdir=/a:/b,upperdir=/u,workdir=/w"
    );

    let e = parse_mountinfo(b"1 2 3:4 / /x rw shared:1 ext4 /dev/x rw\n").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("line 1"), "{e}");
}

#[test]
fn mountinfo_of_this_process() {
    let all = mountinfo().unwrap();
    assert!(all.iter().any(|m| m.mount_point == Path::new("/")));
    assert!(is_mountpoint(Path::new("/")).unwrap());
    assert!(!is_mountpoint(Path::new("/no/such/dir")).unwrap());
}

#[test]
fn mount_tmpfs_and_unmount() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    let t = s.dir("t");
    let name = s.dir("with space");
    Mount::new("tmpfs", "ctrstore-test", ["size=1m", "nosuid"])
        .mount(&t)
        .unwrap();
    Mount::new("tmpfs", "tmpfs", ["size=1m"])
        .mount(&name)
        .unwrap();
    let info: Vec<_> = mountinfo().unwrap();
    let m = info
        .iter()
        .find(|m| m.mount_point == t.canonicalize().unwrap())
        .expect("tmpfs in mountinfo");
    assert_eq!(
        (m.fstype.as_str(), m.source.as_str()),
        ("tmpfs", "ctrstore-test")
    );
    assert!(m.options.split(',').any(|o| o == "nosuid"), "{}", m.options);
    assert!(mounted(&name), "escaped mount point found");
    unmount(&t, 0).unwrap();
    unmount(&name, MNT_DETACH).unwrap();
    assert!(!mounted(&t) && !mounted(&name));
    // Not a mount point any more: unmounting again is fine, as in containerd.
    unmount(&t, 0).unwrap();
    unmount_all(&s.0.path().join("missing"), 0).unwrap();
}

#[test]
fn mount_bind_and_read_only_bind() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    let src = s.dir("src");
    fs::write(src.join("f"), b"hello").unwrap();
    let (rw, ro) = (s.dir("rw"), s.dir("ro"));
    let srcs = src.to_str().unwrap();
    Mount::new("bind", srcs, ["rbind", "rw"])
        .mount(&rw)
        .unwrap();
    Mount::new("bind", srcs, ["rbind", "ro"])
        .mount(&ro)
        .unwrap();
    assert_eq!(fs::read(ro.join("f")).unwrap(), b"hello");
    fs::write(rw.join("g"), b"via rw").unwrap();
    assert_eq!(fs::read(src.join("g")).unwrap(), b"via rw");
    let e = fs::write(ro.join("h"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    unmount_all(&rw, 0).unwrap();
    unmount_all(&ro, 0).unwrap();
    assert!(!mounted(&rw) && !mounted(&ro));
}

#[test]
fn mount_overlay_two_lowers() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    let (l1, l2, up, work, merged) = (
        s.dir("l1"),
        s.dir("l2"),
        s.dir("up"),
        s.dir("work"),
        s.dir("merged"),
    );
    fs::write(l1.join("a"), b"top").unwrap();
    fs::write(l2.join("a"), b"bottom").unwrap();
    fs::write(l2.join("b"), b"only-bottom").unwrap();
    let m = Mount::new(
        "overlay",
        "overlay",
        [
            format!("workdir={}", work.display()),
            format!("upperdir={}", up.display()),
            format!("lowerdir={}:{}", l1.display(), l2.display()),
            "index=off".to_owned(),
        ],
    );
    m.mount(&merged).unwrap();
    assert_eq!(fs::read(merged.join("a")).unwrap(), b"top");
    assert_eq!(fs::read(merged.join("b")).unwrap(), b"only-bottom");
    fs::write(merged.join("new"), b"n").unwrap();
    assert_eq!(fs::read(up.join("new")).unwrap(), b"n");
    unmount(&merged, 0).unwrap();
    assert!(!mounted(&merged));
}

#[test]
fn mount_overlay_128_long_lowerdirs() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    // A ~100-byte prefix like <root>/io.containerd.snapshotter.v1.overlayfs/snapshots.
    let base = s.dir(&format!(
        "{}/io.containerd.snapshotter.v1.overlayfs",
        "p".repeat(60)
    ));
    let snaps = base.join("snapshots");
    let mut lowers = Vec::new();
    for i in (1..=128).rev() {
        let fs_dir = snaps.join(i.to_string()).join("fs");
        fs::create_dir_all(&fs_dir).unwrap();
        lowers.push(fs_dir.display().to_string());
    }
    fs::write(snaps.join("1/fs/bottom"), b"1").unwrap();
    fs::write(snaps.join("128/fs/top"), b"128").unwrap();
    fs::write(snaps.join("1/fs/top"), b"hidden").unwrap();
    let (up, work, merged) = (s.dir("129/fs"), s.dir("129/work"), s.dir("merged"));
    let m = Mount::new(
        "overlay",
        "overlay",
        [
            format!("workdir={}", work.display()),
            format!("upperdir={}", up.display()),
            format!("lowerdir={}", lowers.join(":")),
            "index=off".to_owned(),
        ],
    );
    assert!(
        options_size(&m.options) > page_size(),
        "the case is meant to exceed a page"
    );
    assert!(needs_compaction(&m.kind, &m.options));
    m.mount(&merged).unwrap();
    assert_eq!(fs::read(merged.join("top")).unwrap(), b"128");
    assert_eq!(fs::read(merged.join("bottom")).unwrap(), b"1");
    fs::write(merged.join("new"), b"n").unwrap();
    assert!(up.join("new").exists());
    // This process's working directory is untouched.
    assert_ne!(std::env::current_dir().unwrap(), snaps);
    unmount(&merged, 0).unwrap();

    // A relative target works too, even though the mount runs elsewhere.
    let cwd = std::env::current_dir().unwrap();
    let rel = pathdiff(&merged, &cwd);
    m.mount(&rel).unwrap();
    assert!(mounted(&merged));
    unmount(&merged, 0).unwrap();

    // Errors from the forked mount come back with their errno and the directory.
    fs::remove_dir(snaps.join("77/fs")).unwrap();
    let e = m.mount(&merged).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let msg = e.to_string();
    assert!(
        msg.contains("relative to") && msg.contains("bytes)"),
        "{msg}"
    );
    assert!(!mounted(&merged));
}

/// `target` relative to `base` (both absolute), with `..` steps.
fn pathdiff(target: &Path, base: &Path) -> PathBuf {
    let t: Vec<_> = target.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

#[test]
fn mount_errors_name_target_and_type() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    let t = s.dir("t");
    let e = Mount::new("nosuchfs", "none", Vec::<String>::new())
        .mount(&t)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotImplemented);
    let msg = e.to_string();
    assert!(
        msg.contains("nosuchfs") && msg.contains(&t.display().to_string()),
        "{msg}"
    );

    let e = Mount::new("bind", "/no/such/source", ["rbind"])
        .mount(&t)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    let e = Mount::new("overlay", "overlay", ["lowerdir=/no/such/a:/no/such/b"])
        .mount(&t)
        .unwrap_err();
    assert!(e.to_string().contains("overlay"), "{e}");
    assert!(e.raw_os_error().is_some(), "{e}");

    let e = Mount::new("tmpfs", "tmpfs", ["size=bogus"])
        .mount(&t)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("Invalid argument"), "{e}");
    assert!(!mounted(&t));
}

#[test]
fn mount_nested_then_unmount_recursive() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    let top = s.dir("top");
    let tmpfs = || Mount::new("tmpfs", "tmpfs", ["size=1m"]);
    tmpfs().mount(&top).unwrap();
    tmpfs().mount(&top).unwrap(); // stacked
    fs::create_dir_all(top.join("a/b")).unwrap();
    tmpfs().mount(&top.join("a")).unwrap();
    fs::create_dir_all(top.join("a/b")).unwrap();
    tmpfs().mount(&top.join("a/b")).unwrap();
    let under = |p: &Path| {
        mountinfo()
            .unwrap()
            .iter()
            .filter(|m| m.mount_point.starts_with(p))
            .count()
    };
    assert_eq!(under(&top), 4);
    unmount_recursive(&top, 0).unwrap();
    assert_eq!(under(&top), 0);
    unmount_recursive(&s.0.path().join("missing"), 0).unwrap();
}
