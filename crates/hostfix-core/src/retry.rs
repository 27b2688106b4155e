//! Which errors a bounded retry may outlast: the rule every retry loop of the playbooks asks
//! (`is_transient`), and the one the etcd adapter asks before it drops a cached connection
//! (`is_goaway`). Text rules, since the errors arrive as text through gRPC and tonic.

/// A call in flight on a connection whose member is stopping: the member sends HTTP/2
/// GOAWAY, and the call fails with gRPC INTERNAL, `h2 protocol error: ... GoAway(...,
/// NO_ERROR, Remote)` (seen in CI when a test stopped the leader just as `member list` and
/// `member remove` went out). The connection is gone, and the next try, on a fresh one or
/// another peer, can succeed.
pub fn is_goaway(msg: &str) -> bool {
    let m = msg.to_lowercase();
    m.contains("h2 protocol error") || m.contains("goaway")
}

/// An error worth retrying within a bound: the cluster is electing, busy, or briefly out
/// of reach.
pub fn is_transient(msg: &str) -> bool {
    // etcd derives an added member's ID from its peer URLs and the Unix second; re-adding
    // a peer URL within the second of a removed add collides with the removed ID and is
    // answered "member not found" / "ID removed". The next second gets a fresh ID.
    // A peer that dies mid-call (stopped, restarted) fails it with a gRPC "transport error"
    // and a broken pipe or reset: the next try goes to another peer (the dead one's client
    // has left the connector's cache), which CI once showed the promote loop did not.
    // A peer that is stopping sends HTTP/2 GOAWAY (`is_goaway`), which CI once showed
    // `member remove` did not retry.
    [
        "member not found",
        "id removed",
        "unhealthy cluster",
        "too many requests",
        "leader changed",
        "no leader",
        "timed out",
        "timeout expired",
        "request timed out",
        "deadline",
        "unavailable",
        "connection",
        "transport error",
        "broken pipe",
    ]
        .iter()
        .any(|t| msg.to_lowercase().contains(t))
        || is_goaway(msg)
}

#[cfg(test)]
mod tests {
    /// What is retried and what is not, by the messages etcd and the transport really give.
    #[test]
    fn transient_errors_are_the_ones_a_retry_can_outlast() {
        let goaway = r#"endpoint https://127.108.10.2:2379: member list failed: grpc request error: code: 'Internal error', message: "h2 protocol error: http2 error", source: tonic::transport::Error(Transport, hyper::Error(Http2, Error { kind: GoAway(b"", NO_ERROR, Remote) }))"#;
        for m in [goaway, "etcdserver: unhealthy cluster", "etcdserver: leader changed", "etcdserver: request timed out", "transport error: connection refused"] {
            assert!(super::is_transient(m), "{m}");
        }
        for m in ["etcdserver: too many learner members in cluster", "etcdserver: Peer URLs already exists", "permission denied"] {
            assert!(!super::is_transient(m), "{m}");
        }
    }
}
