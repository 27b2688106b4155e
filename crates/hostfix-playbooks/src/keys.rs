//! `keys`: a key inventory by path segment, read at one revision, page by page. Memory is
//! one counter per group and one page, whatever the key count.

use anyhow::Result;
use hostfix_adapters::etcd::Endpoint;
use hostfix_core::keys::{before_end, gallop_ends, group_of, next_key, prefix_end, Inventory};

pub struct KeysOptions {
    pub prefix: Vec<u8>,
    pub depth: usize,
    /// 0: the current revision, pinned by the first request.
    pub revision: i64,
    /// Count from etcd's index alone (two small requests per group); no value bytes.
    pub count_only: bool,
    /// Keys per page when values are read; `None` sizes each page to about 4 MiB from the
    /// previous page's average.
    pub page: Option<i64>,
}

pub struct KeysReport {
    pub endpoint: String,
    pub revision: i64,
    pub inventory: Inventory,
    pub requests: u64,
    /// Values were read with etcd 3.7's `RangeStream`, one call per group, not in pages.
    pub streamed: bool,
}


/// The target size of one page of values, and its bounds in keys.
const PAGE_BYTES: u64 = 4 << 20;
const MIN_PAGE: i64 = 100;
const MAX_PAGE: i64 = 20_000;

struct Walk<'a> {
    ep: &'a mut Endpoint,
    rev: i64,
    requests: u64,
    /// Whether the server has `RangeStream` (3.7 and later): unknown until the first try.
    stream: Option<bool>,
}

impl Walk<'_> {
    async fn page(&mut self, from: &[u8], to: &[u8], limit: i64, keys_only: bool) -> Result<hostfix_adapters::etcd::Page> {
        let p = self.ep.range_page(from, to, limit, self.rev, keys_only).await?;
        self.requests += 1;
        if self.rev == 0 {
            self.rev = p.revision;
        }
        Ok(p)
    }

    /// The first key at or after `cursor` (below `end`), with its value size, probing
    /// ranges that grow from the cursor (see `gallop_ends`).
    async fn next(&mut self, cursor: &[u8], end: &[u8], keys_only: bool) -> Result<Option<(Vec<u8>, u64)>> {
        for e in gallop_ends(cursor, end) {
            let p = self.page(cursor, &e, 1, keys_only).await?;
            if let Some(kv) = p.kvs.into_iter().next() {
                return Ok(Some(kv));
            }
        }
        Ok(None)
    }
}

/// Walk the keyspace group by group: find the next key, then count its group's subtree in
/// one request (`count_only`), or read it in pages bounded to the subtree, so that no
/// request makes etcd walk more than one group.
pub async fn inventory(ep: &mut Endpoint, o: &KeysOptions) -> Result<KeysReport> {
    let start = if o.prefix.is_empty() { vec![0] } else { o.prefix.clone() };
    let end = prefix_end(&o.prefix);
    let mut inv = Inventory::new(!o.count_only);
    let mut w = Walk { ep, rev: o.revision, requests: 0, stream: None };
    let mut cursor = start;
    let mut limit = o.page.unwrap_or(1000).max(1);
    while before_end(&cursor, &end) {
        let Some((k, n)) = w.next(&cursor, &end, o.count_only).await? else { break };
        let (group, subtree) = group_of(&k, o.depth);
        if !subtree {
            inv.add(&group, 1, n);
            cursor = next_key(&k);
            continue;
        }
        let mut below = group.clone();
        below.push(b'/');
        let from = if cursor > below { cursor.clone() } else { below.clone() };
        let sub_end = prefix_end(&below);
        let to = if before_end(&sub_end, &end) { sub_end } else { end.clone() };
        if o.count_only {
            let (n, _) = w.ep.count_range(&from, &to, w.rev).await?;
            w.requests += 1;
            inv.add(&group, n, 0);
        } else {
            // etcd 3.7: the whole group in one streamed call (the revision is pinned by the
            // first request). An explicit --page asks for pages.
            let mut streamed = false;
            if w.stream != Some(false) && o.page.is_none() {
                w.requests += 1;
                streamed = w.ep.range_stream(&from, &to, w.rev, false, |_, n| inv.add(&group, 1, n)).await?;
                w.stream = Some(streamed);
            }
            if !streamed {
                let mut c = from;
                loop {
                    let page = match w.page(&c, &to, limit, false).await {
                        Ok(p) => p,
                        // A page of very large values: halve the page rather than fail.
                        Err(e) if limit > 1 && e.to_string().contains("message length too large") => {
                            limit = (limit / 2).max(1);
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let mut bytes = 0;
                    for (k, n) in &page.kvs {
                        inv.add(&group, 1, *n);
                        bytes += *n + k.len() as u64;
                    }
                    // The next page holds about PAGE_BYTES, whatever the values weigh.
                    if !page.kvs.is_empty() && o.page.is_none() {
                        let per = (bytes / page.kvs.len() as u64).max(1);
                        limit = ((PAGE_BYTES / per) as i64).clamp(MIN_PAGE, MAX_PAGE);
                    }
                    match page.kvs.last() {
                        Some((k, _)) if page.more => c = next_key(k),
                        _ => break,
                    }
                }
            }
        }
        if to == [0] {
            break;
        }
        cursor = to;
    }
    Ok(KeysReport { endpoint: w.ep.url.clone(), revision: w.rev, inventory: inv, requests: w.requests, streamed: w.stream == Some(true) })
}
