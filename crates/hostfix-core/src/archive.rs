//! Which archived runs to keep. A repair moves the member's data aside instead of deleting
//! it; on a dedicated etcd disk those archives sit beside the new member's data and compete
//! with it for room, so they are kept to the newest `keep` runs. Pruning happens only after
//! a repair succeeded, and never touches the newest run: the data that run replaced is the
//! one a person may still want back.

/// A run ID as the playbooks make them, `<unix seconds>-<pid>`: its time and pid. Anything
/// else in an archive dir is not ours to prune (a person's notes, a copy made by hand).
pub fn parse_run(run: &str) -> Option<(u64, u64)> {
    let (secs, pid) = run.split_once('-')?;
    Some((secs.parse().ok()?, pid.parse().ok()?))
}

/// The runs to remove, oldest first: all but the newest `keep` of ours (at least one is
/// always kept), never `protect` (the run that just succeeded), never a name not ours.
pub fn to_prune(runs: &[String], keep: usize, protect: &str) -> Vec<String> {
    let mut sorted: Vec<&String> = runs.iter().filter(|r| parse_run(r).is_some()).collect();
    let order_key = |r: &str| (parse_run(r).map(|x| x.0).unwrap_or(0), r.to_string());
    sorted.sort_by_key(|r| order_key(r));
    sorted.dedup();
    let keep = keep.max(1);
    let cut = sorted.len().saturating_sub(keep);
    sorted[..cut].iter().filter(|r| r.as_str() != protect).map(|r| r.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_the_newest_by_time_not_by_name() {
        // 999… sorts after 1000… as text; by time it is older.
        let r = runs(&["1796411215-31608", "999999999-7", "1796411300-2", "1796411100-5"]);
        assert_eq!(to_prune(&r, 3, "1796411300-2"), runs(&["999999999-7"]));
        assert_eq!(to_prune(&r, 2, "1796411300-2"), runs(&["999999999-7", "1796411100-5"]));
    }

    #[test]
    fn never_the_newest_nor_the_protected_run_and_keep_zero_keeps_one() {
        let r = runs(&["100-1", "200-1", "300-1"]);
        assert_eq!(to_prune(&r, 0, "300-1"), runs(&["100-1", "200-1"]));
        // The run that just succeeded is kept even when it is not the newest name.
        assert_eq!(to_prune(&r, 1, "100-1"), runs(&["200-1"]));
        assert!(to_prune(&r, 3, "300-1").is_empty());
        assert!(to_prune(&[], 3, "x").is_empty());
        // A name that is not a run ID is never pruned, nor counted.
        assert_eq!(to_prune(&runs(&["notes", "100-1", "200-1", "1-2-3"]), 2, "200-1"), Vec::<String>::new());
        assert_eq!(parse_run("1796411215-31608"), Some((1796411215, 31608)));
    }
}
