//! Prometheus text on `metrics_listen` (loopback by default), with `prometheus-client`'s
//! registry served by axum, which tonic already brings into the tree.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabel {
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberLabel {
    pub member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepairLabel {
    pub playbook: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabel {
    pub playbook: String,
    pub step: String,
}

type FGauge = Gauge<f64, AtomicU64>;

pub struct Metrics {
    registry: Mutex<Registry>,
    pub member_healthy: Gauge,
    pub member_class: Family<ClassLabel, Gauge>,
    pub decisions: Family<DecisionLabel, Counter>,
    pub alerts: Family<ClassLabel, Counter>,
    pub repairs: Family<RepairLabel, Counter>,
    pub repair_duration: Histogram,
    pub step_duration: Family<StepLabel, FGauge>,
    pub detection_latency: FGauge,
    pub detection_daemon: FGauge,
    pub learner_catchup: FGauge,
    pub snapshot_age: FGauge,
    pub snapshot_bytes: Gauge,
    pub budget_left: Gauge,
    pub circuit_open: Gauge,
    pub paused: Gauge,
    pub repairing: Gauge,
    pub agent_writes: Counter,
    pub paused_since: Gauge,
    pub fleet_silent: Family<MemberLabel, Gauge>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut r = Registry::with_prefix("etcd_hostfix");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            member_healthy: Gauge::default(),
            member_class: Family::default(),
            decisions: Family::default(),
            alerts: Family::default(),
            repairs: Family::default(),
            repair_duration: Histogram::new([1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0]),
            step_duration: Family::default(),
            detection_latency: FGauge::default(),
            detection_daemon: FGauge::default(),
            learner_catchup: FGauge::default(),
            snapshot_age: FGauge::default(),
            snapshot_bytes: Gauge::default(),
            budget_left: Gauge::default(),
            circuit_open: Gauge::default(),
            paused: Gauge::default(),
            repairing: Gauge::default(),
            agent_writes: Counter::default(),
            paused_since: Gauge::default(),
            fleet_silent: Family::default(),
        };
        r.register("member_healthy", "1 when the local member is a healthy voter", m.member_healthy.clone());
        r.register("member_class", "1 for the local member's current diagnose class", m.member_class.clone());
        r.register("decisions", "Policy decisions by kind (one per change of decision)", m.decisions.clone());
        r.register("alerts", "Alerts raised, by class", m.alerts.clone());
        r.register("repairs", "Repairs by playbook and result", m.repairs.clone());
        r.register("repair_duration_seconds", "How long repairs took, start to end", m.repair_duration.clone());
        r.register("step_duration_seconds", "How long each step of the last repair took", m.step_duration.clone());
        r.register("detection_latency_seconds", "From the first log line showing the condition's signature to the start of the last repair", m.detection_latency.clone());
        r.register("detection_daemon_seconds", "The daemon's own share of the last detection: from its first sight of the condition to the repair's start", m.detection_daemon.clone());
        r.register("learner_catchup_seconds", "How long the last learner took to catch up and be promoted", m.learner_catchup.clone());
        r.register("snapshot_age_seconds", "Age of the newest scheduled snapshot", m.snapshot_age.clone());
        r.register("snapshot_bytes", "Size of the newest scheduled snapshot", m.snapshot_bytes.clone());
        r.register("repair_budget_left", "Repairs left in the current window", m.budget_left.clone());
        r.register("circuit_open", "1 while the circuit breaker stops repairs until resume", m.circuit_open.clone());
        r.register("paused", "1 while paused by `etcd-hostfix pause`", m.paused.clone());
        r.register("repairing", "1 while a repair runs", m.repairing.clone());
        r.register("paused_since_timestamp_seconds", "When the daemon was paused (Unix time); 0 while it is not", m.paused_since.clone());
        r.register("fleet_agent_silent", "Per master's agent, as this agent last read the fleet from etcd: 1 silent (its lease expired), 0 publishing", m.fleet_silent.clone());
        r.register("agent_writes", "Writes of this agent's record (and silence marks) into etcd; lease keepalives not counted", m.agent_writes.clone());
        // Every repair outcome from zero: an alert on `increase()` sees the first failure
        // only if the series existed before it.
        for result in ["healed", "failed", "refused"] {
            let _ = m.repairs.get_or_create(&RepairLabel { playbook: "rejoin".into(), result: result.into() });
        }
        *m.registry.lock().unwrap() = r;
        Arc::new(m)
    }

    pub fn set_class(&self, class: &str) {
        self.member_class.clear();
        self.member_class.get_or_create(&ClassLabel { class: class.to_string() }).set(1);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry.lock().unwrap());
        out
    }
}

/// Serve `/metrics` until the listener's task is aborted.
pub fn serve(listener: tokio::net::TcpListener, m: Arc<Metrics>) -> tokio::task::JoinHandle<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let m = m.clone();
            async move { ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.render()) }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    })
}
