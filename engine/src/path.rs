//! Znode path rules, as ZooKeeper's `PathUtils.validatePath`.
//!
//! ZooKeeper checks UTF-16 code units; a character outside the Basic
//! Multilingual Plane is a surrogate pair there, which its rules reject.

/// Whether `path` is a valid absolute znode path.
pub fn is_valid(path: &str) -> bool {
    let mut chars = path.chars().peekable();
    if chars.next() != Some('/') {
        return false;
    }
    if path.len() == 1 {
        return true;
    }
    if path.ends_with('/') {
        return false;
    }
    let mut before_last = '\0';
    let mut last = '/';
    while let Some(c) = chars.next() {
        let at_component_end = matches!(chars.peek(), None | Some('/'));
        let bad = match c {
            '\0' => true,
            '/' => last == '/',
            // "." or ".." as a whole component.
            '.' => at_component_end && (last == '/' || (last == '.' && before_last == '/')),
            c => is_forbidden(c),
        };
        if bad {
            return false;
        }
        before_last = last;
        last = c;
    }
    true
}

fn is_forbidden(c: char) -> bool {
    matches!(c,
        '\u{1}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{e000}'..='\u{f8ff}'
        | '\u{fff0}'..='\u{ffff}'
        | '\u{10000}'..)
}

/// Splits at the last '/': (parent, child name). The root's parent is "".
/// `None` when there is no '/' at all.
pub fn split(path: &str) -> Option<(&str, &str)> {
    let slash = path.rfind('/')?;
    Some((&path[..slash], &path[slash + 1..]))
}

/// The parent path as ZooKeeper names it in watch events: "" becomes "/".
pub fn parent_for_events(parent: &str) -> &str {
    if parent.is_empty() {
        "/"
    } else {
        parent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_zookeeper_accepts() {
        for p in [
            "/",
            "/a",
            "/a/b",
            "/a.b",
            "/.a",
            "/a..",
            "/...",
            "/a/b.c/d",
            "/zoo keeper",
            "/é",
        ] {
            assert!(is_valid(p), "{p}");
        }
    }

    #[test]
    fn rejects_what_zookeeper_rejects() {
        for p in [
            "",
            "a",
            "/a/",
            "//",
            "/a//b",
            "/.",
            "/..",
            "/a/.",
            "/a/..",
            "/./a",
            "/../a",
            "/a\0b",
            "/a\u{1}",
            "/\u{7f}",
            "/\u{e000}",
            "/\u{fff0}",
            "/\u{1F600}",
        ] {
            assert!(!is_valid(p), "{p:?}");
        }
    }

    #[test]
    fn split_names_parent_and_child() {
        assert_eq!(split("/a/b"), Some(("/a", "b")));
        assert_eq!(split("/a"), Some(("", "a")));
        assert_eq!(split("a"), None);
    }
}
