//! Lexical path handling for layer entries: every name is cleaned as if it were rooted at `/`,
//! so `..` can never climb above the root (the same as Go's `filepath.Clean("/" + name)`).

/// Clean `name` as a rooted path and return it without the leading `/`: components joined by
/// single `/`, no `.`/`..`/empty components. The root itself is the empty string.
pub fn clean(name: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(name.len());
    for comp in name.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                let cut = out.iter().rposition(|b| *b == b'/').unwrap_or(0);
                out.truncate(cut);
            }
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(comp);
            }
        }
    }
    out
}

/// Join a cleaned base path and a (possibly dirty) relative path, cleaning the result.
pub fn join_clean(base: &[u8], rel: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(base.len() + 1 + rel.len());
    s.extend_from_slice(base);
    s.push(b'/');
    s.extend_from_slice(rel);
    clean(&s)
}

/// Split a cleaned path into (parent, final component). The root has no final component.
pub fn split(clean: &[u8]) -> (&[u8], &[u8]) {
    match clean.iter().rposition(|b| *b == b'/') {
        Some(i) => (&clean[..i], &clean[i + 1..]),
        None => (&[], clean),
    }
}

/// Join a cleaned parent and a single component.
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(parent.len() + 1 + name.len());
    s.extend_from_slice(parent);
    if !parent.is_empty() {
        s.push(b'/');
    }
    s.extend_from_slice(name);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_is_rooted() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("/", ""),
            (".", ""),
            ("..", ""),
            ("../etc/passwd", "etc/passwd"),
            ("/a/b/../c/", "a/c"),
            ("a//b/./c", "a/b/c"),
            ("a/../../../b", "b"),
            ("dne/../.wh.etc", ".wh.etc"),
            ("localetc/sub/..", "localetc"),
            ("./usr/bin/", "usr/bin"),
        ];
        for (i, o) in cases {
            assert_eq!(String::from_utf8(clean(i.as_bytes())).unwrap(), *o, "{i:?}");
        }
    }

    #[test]
    fn split_join() {
        assert_eq!(split(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"c"), (&b""[..], &b"c"[..]));
        assert_eq!(join(b"", b"x"), b"x");
        assert_eq!(join(b"a", b"x"), b"a/x");
        assert_eq!(join_clean(b"a/b", b"../../../x/./y"), b"x/y");
    }
}
