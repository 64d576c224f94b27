//! The node map's key: a path with its first bytes kept inline.

use std::cmp::Ordering;
use std::sync::Arc;

/// Bytes of a path kept inline in its key.
const HEAD: usize = 16;

/// A path as the node map's key. A lookup compares keys at every level of
/// the B-tree, and each comparison that has to read the path's own
/// allocation is a likely cache miss; with the first bytes inline most
/// comparisons stop at the key itself. Order is the paths' byte order:
/// heads differ only at a byte one of the paths really has, and equal
/// heads fall back to the whole paths.
#[derive(Clone)]
pub(crate) struct PathKey {
    head: [u8; HEAD],
    path: Arc<str>,
}

impl PathKey {
    pub(crate) fn new(path: Arc<str>) -> PathKey {
        PathKey {
            head: head(&path),
            path,
        }
    }

    pub(crate) fn path(&self) -> &Arc<str> {
        &self.path
    }
}

impl Ord for PathKey {
    fn cmp(&self, other: &PathKey) -> Ordering {
        compare(&self.head, &self.path, &other.head, &other.path)
    }
}

impl PartialOrd for PathKey {
    fn partial_cmp(&self, other: &PathKey) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathKey {
    fn eq(&self, other: &PathKey) -> bool {
        self.head == other.head && self.path == other.path
    }
}

impl Eq for PathKey {}

/// A path to look up or to start a range at, its head worked out once.
pub(crate) struct Probe<'a> {
    head: [u8; HEAD],
    path: &'a str,
}

impl<'a> Probe<'a> {
    pub(crate) fn new(path: &'a str) -> Probe<'a> {
        Probe {
            head: head(path),
            path,
        }
    }
}

impl equivalent::Equivalent<PathKey> for Probe<'_> {
    fn equivalent(&self, key: &PathKey) -> bool {
        self.head == key.head && self.path == &*key.path
    }
}

impl equivalent::Comparable<PathKey> for Probe<'_> {
    fn compare(&self, key: &PathKey) -> Ordering {
        compare(&self.head, self.path, &key.head, &key.path)
    }
}

fn head(path: &str) -> [u8; HEAD] {
    let mut head = [0; HEAD];
    let n = path.len().min(HEAD);
    head[..n].copy_from_slice(&path.as_bytes()[..n]);
    head
}

fn compare(a_head: &[u8; HEAD], a: &str, b_head: &[u8; HEAD], b: &str) -> Ordering {
    a_head
        .cmp(b_head)
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_as_their_paths_do() {
        let paths = [
            "/",
            "/a",
            "/a\0",
            "/a/b",
            "/a-b",
            "/a0",
            "/abcdefghijklmno",
            "/abcdefghijklmnop",
            "/abcdefghijklmnop/q",
            "/abcdefghijklmnoq",
            "/abcdefghijklmn\0\0",
            "/b",
        ];
        for a in paths {
            for b in paths {
                let (ka, kb) = (PathKey::new(a.into()), PathKey::new(b.into()));
                assert_eq!(ka.cmp(&kb), a.cmp(b), "{a:?} vs {b:?}");
                let probe = Probe::new(a);
                assert_eq!(equivalent::Comparable::compare(&probe, &kb), a.cmp(b));
                assert_eq!(equivalent::Equivalent::equivalent(&probe, &kb), a == b);
            }
        }
    }
}
