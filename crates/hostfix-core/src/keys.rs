//! `keys`: the key inventory by path segment that replaces seed 003's
//! `etcdctl get / --prefix --keys-only | sed | cut | sort | uniq -c | sort -rn`.
//!
//! The grouping rule and the key arithmetic are here; the paging through etcd is in the
//! playbooks. Memory is one counter per group, never the key list.

use std::collections::BTreeMap;

use serde::Serialize;

/// The group a key counts in: its first `depth` path segments (`/registry/pods` at depth 2
/// for `/registry/pods/default/web-0`). `subtree` is true when the key lies below the
/// group (it has more segments), false when the key is the group's own label (a leaf at or
/// above the depth). A key without a leading `/` is split the same way, without one.
pub fn group_of(key: &[u8], depth: usize) -> (Vec<u8>, bool) {
    let depth = depth.max(1);
    let lead = usize::from(key.first() == Some(&b'/'));
    let mut seen = 0;
    for (i, b) in key.iter().enumerate().skip(lead) {
        if *b == b'/' {
            seen += 1;
            if seen == depth {
                // More after this slash makes it a subtree key; a trailing slash alone is
                // still below the group (`/a/` at depth 1 is under `/a`).
                return (key[..i].to_vec(), true);
            }
        }
    }
    (key.to_vec(), false)
}

/// The first key after every key that starts with `prefix` (etcd's `GetPrefixRangeEnd`):
/// the last byte below 0xff incremented, the rest dropped. `[0]` (all keys) when there is
/// none, as etcd reads it.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Whether `key` lies before a range end as etcd reads one: `[0]` is "no end".
pub fn before_end(key: &[u8], end: &[u8]) -> bool {
    end == [0] || key < end
}

/// The key right after `key` in etcd's byte order.
pub fn next_key(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// Range ends to probe for the first key at or after `cursor`, smallest range first, ending
/// with `end` itself. etcd 3.4 and 3.5 walk the whole `[key, range_end)` of a request in their
/// index even with a limit (to count it), so "the next key" asked over the rest of the
/// keyspace costs the rest of the keyspace. Probing ranges that grow from the cursor (the
/// last byte incremented by 1, 2, 4 … 128, then the byte before it) finds the next key at a
/// cost of about the keys up to it, with an empty probe costing almost nothing.
pub fn gallop_ends(cursor: &[u8], end: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![];
    for m in (1..=cursor.len()).rev() {
        let b = cursor[m - 1];
        let mut step: u16 = 1;
        while b as u16 + step <= 0xff {
            let mut e = cursor[..m - 1].to_vec();
            e.push((b as u16 + step) as u8);
            if !before_end(&e, end) {
                out.push(end.to_vec());
                return out;
            }
            if out.last().is_none_or(|l| *l < e) {
                out.push(e);
            }
            step *= 2;
        }
    }
    out.push(end.to_vec());
    out
}

/// One row of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub group: String,
    pub keys: u64,
    /// `None` when counted without reading values (`--count-only`).
    pub value_bytes: Option<u64>,
}

/// Counters per group, in key order until `rows` sorts them.
#[derive(Debug, Default)]
pub struct Inventory {
    groups: BTreeMap<Vec<u8>, (u64, u64)>,
    pub with_bytes: bool,
}

impl Inventory {
    pub fn new(with_bytes: bool) -> Self {
        Inventory { groups: BTreeMap::new(), with_bytes }
    }

    pub fn add(&mut self, group: &[u8], keys: u64, value_bytes: u64) {
        let e = self.groups.entry(group.to_vec()).or_default();
        e.0 += keys;
        e.1 += value_bytes;
    }

    pub fn total_keys(&self) -> u64 {
        self.groups.values().map(|g| g.0).sum()
    }

    pub fn total_bytes(&self) -> Option<u64> {
        self.with_bytes.then(|| self.groups.values().map(|g| g.1).sum())
    }

    /// Largest first: by value bytes when they were read, else by key count; ties in key
    /// order, so the output is stable.
    pub fn rows(&self) -> Vec<Group> {
        let mut rows: Vec<Group> = self
            .groups
            .iter()
            .map(|(k, (n, b))| Group { group: String::from_utf8_lossy(k).into_owned(), keys: *n, value_bytes: self.with_bytes.then_some(*b) })
            .collect();
        rows.sort_by(|a, b| b.value_bytes.cmp(&a.value_bytes).then(b.keys.cmp(&a.keys)));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(k: &str, d: usize) -> (String, bool) {
        let (l, s) = group_of(k.as_bytes(), d);
        (String::from_utf8(l).unwrap(), s)
    }

    #[test]
    fn groups_by_leading_segments() {
        assert_eq!(g("/registry/pods/default/web-0", 2), ("/registry/pods".into(), true));
        assert_eq!(g("/registry/pods/default/web-0", 1), ("/registry".into(), true));
        assert_eq!(g("/registry/pods/default/web-0", 3), ("/registry/pods/default".into(), true));
        // At or above the depth, a key is its own group.
        assert_eq!(g("/registry/pods", 2), ("/registry/pods".into(), false));
        assert_eq!(g("/registry", 2), ("/registry".into(), false));
        assert_eq!(g("/a/", 1), ("/a".into(), true));
        // Without a leading slash the same rule, without one.
        assert_eq!(g("health", 2), ("health".into(), false));
        assert_eq!(g("compact_rev_key/x/y", 1), ("compact_rev_key".into(), true));
        // Depth 0 is taken as 1.
        assert_eq!(g("/a/b", 0), ("/a".into(), true));
        assert_eq!(g("", 2), ("".into(), false));
    }

    #[test]
    fn prefix_end_is_etcds() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
        assert_eq!(next_key(b"/a"), b"/a\0".to_vec());
    }

    #[test]
    fn gallop_grows_from_the_cursor_and_ends_at_the_end() {
        let e = gallop_ends(b"/a0", &[0]);
        assert_eq!(e[0], b"/a1".to_vec());
        assert_eq!(e[1], b"/a2".to_vec());
        assert_eq!(e[2], b"/a4".to_vec());
        assert!(e.windows(2).all(|w| w[0] < w[1] || w[1] == [0]), "{e:?}");
        assert!(e.contains(&b"/b".to_vec()) && e.contains(&b"0".to_vec()));
        assert_eq!(e.last(), Some(&vec![0]));
        // Never past a real end.
        let e = gallop_ends(b"/a0", b"/a3");
        assert_eq!(e, vec![b"/a1".to_vec(), b"/a2".to_vec(), b"/a3".to_vec()]);
        // Every key at or after the cursor is below one of the ends.
        let e = gallop_ends(b"/registry/events0", &[0]);
        for k in [&b"/registry/events0x"[..], b"/registry/leases/a", b"/registry0", b"zzz", b"\xff\xff"] {
            assert!(e.iter().any(|end| end == &[0] || k < end.as_slice()), "{k:?}");
        }
    }

    #[test]
    fn rows_are_largest_first_and_stable() {
        let mut inv = Inventory::new(true);
        inv.add(b"/registry/events", 10, 500);
        inv.add(b"/registry/pods", 3, 9000);
        inv.add(b"/registry/pods", 1, 1000);
        inv.add(b"/registry/leases", 10, 500);
        let rows = inv.rows();
        assert_eq!(rows[0], Group { group: "/registry/pods".into(), keys: 4, value_bytes: Some(10_000) });
        assert_eq!(rows[1].group, "/registry/events");
        assert_eq!(rows[2].group, "/registry/leases");
        assert_eq!((inv.total_keys(), inv.total_bytes()), (24, Some(11_000)));

        let mut counted = Inventory::new(false);
        counted.add(b"/b", 2, 0);
        counted.add(b"/a", 5, 0);
        assert_eq!(counted.rows()[0], Group { group: "/a".into(), keys: 5, value_bytes: None });
        assert_eq!(counted.total_bytes(), None);
    }
}
