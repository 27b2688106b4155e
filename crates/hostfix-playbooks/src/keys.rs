//! `keys`: a key inventory by path segment, read at one revision, page by page. Memory is
//! one counter per group and one page, whatever the key count.

use anyhow::{anyhow, Result};
use hostfix_adapters::etcd::{Connector, Endpoint};
use hostfix_core::keys::{group_of, next_key, prefix_end, Inventory};

use crate::local::Local;
use crate::Settings;

pub struct KeysOptions {
    pub prefix: Vec<u8>,
    pub depth: usize,
    /// 0: the current revision, pinned by the first request.
    pub revision: i64,
    /// Count from etcd's index alone (two small requests per group); no value bytes.
    pub count_only: bool,
    /// Keys per page when values are read.
    pub page: i64,
}

pub struct KeysReport {
    pub endpoint: String,
    pub revision: i64,
    pub inventory: Inventory,
    pub requests: u64,
}

/// The first member that answers a status call, the local one first.
pub async fn endpoint(g: &Settings, local: &Local, conn: &Connector) -> Result<Endpoint> {
    let mut last = String::new();
    for url in local.candidate_endpoints(g) {
        match conn.connect(&url).await {
            Ok(mut ep) => match ep.status().await {
                Ok(_) => return Ok(ep),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
    }
    Err(anyhow!("no member answers ({last})"))
}

/// `end` as etcd reads a range end: `[0]` is "no end".
fn before_end(key: &[u8], end: &[u8]) -> bool {
    end == [0] || key < end
}

pub async fn inventory(ep: &mut Endpoint, o: &KeysOptions) -> Result<KeysReport> {
    let start = if o.prefix.is_empty() { vec![0] } else { o.prefix.clone() };
    let end = prefix_end(&o.prefix);
    let mut inv = Inventory::new(!o.count_only);
    let mut rev = o.revision;
    let mut requests = 0;
    let mut cursor = start;
    let mut limit = o.page.max(1);
    loop {
        if !before_end(&cursor, &end) {
            break;
        }
        if o.count_only {
            // The next key says which group comes next; the group's subtree is counted in
            // one request and skipped.
            let page = ep.range_page(&cursor, &end, 1, rev, true).await?;
            requests += 1;
            rev = if rev == 0 { page.revision } else { rev };
            let Some((k, _)) = page.kvs.first() else { break };
            let (group, subtree) = group_of(k, o.depth);
            if !subtree {
                inv.add(&group, 1, 0);
                cursor = next_key(k);
                continue;
            }
            let mut below = group.clone();
            below.push(b'/');
            let from = if cursor > below { cursor.clone() } else { below.clone() };
            let sub_end = prefix_end(&below);
            let to = if before_end(&sub_end, &end) { sub_end } else { end.clone() };
            let (n, _) = ep.count_range(&from, &to, rev).await?;
            requests += 1;
            inv.add(&group, n, 0);
            cursor = to;
            if cursor == [0] {
                break;
            }
        } else {
            let page = match ep.range_page(&cursor, &end, limit, rev, false).await {
                Ok(p) => p,
                // A page of very large values: halve the page rather than fail.
                Err(e) if limit > 1 && e.to_string().contains("message length too large") => {
                    limit /= 2;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            requests += 1;
            rev = if rev == 0 { page.revision } else { rev };
            for (k, n) in &page.kvs {
                inv.add(&group_of(k, o.depth).0, 1, *n);
            }
            match page.kvs.last() {
                Some((k, _)) if page.more => cursor = next_key(k),
                _ => break,
            }
        }
    }
    Ok(KeysReport { endpoint: ep.url.clone(), revision: rev, inventory: inv, requests })
}
