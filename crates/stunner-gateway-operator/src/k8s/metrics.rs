//! Operator metrics (`stunner_gateway_operator_*`), Prometheus text format.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Inner {
    render_total: AtomicU64,
    update_ok: AtomicU64,
    update_error: AtomicU64,
    generation: AtomicU64,
    generation_acked: AtomicU64,
    reconcile_passed: AtomicU64,
    /// Sums in microseconds and counts, for the `_time_seconds` summaries.
    render_us: AtomicU64,
    update_us: AtomicU64,
    update_count: AtomicU64,
    /// Unix seconds of the last activity of each loop.
    operator_active: AtomicU64,
    renderer_active: AtomicU64,
    updater_active: AtomicU64,
    ops: Mutex<BTreeMap<(String, String), u64>>,
    failed_ops: Mutex<BTreeMap<(String, String), u64>>,
    conflicts: Mutex<BTreeMap<String, u64>>,
    /// Writes the last pass could not make (failed or not started).
    unwritten: AtomicU64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Adds one to the counter of `key`.
fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, key: K) {
    if let Ok(mut m) = m.lock() {
        *m.entry(key).or_default() += 1;
    }
}

/// A labelled counter's samples, labels rendered by `labels`.
fn series<K>(m: &Mutex<BTreeMap<K, u64>>, labels: impl Fn(&K) -> String) -> Vec<(String, u64)> {
    m.lock()
        .map(|m| m.iter().map(|(k, v)| (labels(k), *v)).collect())
        .unwrap_or_default()
}

/// Which loop was active.
#[derive(Clone, Copy, Debug)]
pub enum Loop {
    /// The event loop taking World changes.
    Operator,
    /// The renderer.
    Renderer,
    /// The updater.
    Updater,
}

/// Shared counters.
#[derive(Clone, Default)]
pub struct Metrics(Arc<Inner>);

impl Metrics {
    /// A render that took `took` happened; returns the new generation.
    pub fn render(&self, took: std::time::Duration) -> u64 {
        self.0.render_total.fetch_add(1, Ordering::Relaxed);
        self.0
            .render_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.active(Loop::Renderer);
        self.0.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// An update pass took `took`.
    pub fn update_time(&self, took: std::time::Duration) {
        self.0
            .update_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.0.update_count.fetch_add(1, Ordering::Relaxed);
        self.active(Loop::Updater);
    }

    /// A loop did something now.
    pub fn active(&self, l: Loop) {
        let a = match l {
            Loop::Operator => &self.0.operator_active,
            Loop::Renderer => &self.0.renderer_active,
            Loop::Updater => &self.0.updater_active,
        };
        a.store(unix_now(), Ordering::Relaxed);
    }

    /// An update pass finished.
    pub fn update(&self, ok: bool) {
        let c = if ok {
            &self.0.update_ok
        } else {
            &self.0.update_error
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The updater finished writing `generation`.
    pub fn acked(&self, generation: u64) {
        self.0.generation_acked.store(generation, Ordering::Relaxed);
    }

    /// A World change arrived.
    pub fn reconcile_event(&self) {
        self.0.reconcile_passed.fetch_add(1, Ordering::Relaxed);
    }

    /// A write succeeded.
    pub fn resource_op(&self, kind: &str, op: &str) {
        bump(&self.0.ops, (kind.to_string(), op.to_string()));
    }

    /// A write failed or timed out.
    pub fn write_failed(&self, kind: &str, op: &str) {
        bump(&self.0.failed_ops, (kind.to_string(), op.to_string()));
    }

    /// An apply was refused by a field-manager conflict and left alone.
    pub fn conflict(&self, kind: &str) {
        bump(&self.0.conflicts, kind.to_string());
    }

    /// The last pass left `n` writes undone; they are retried with backoff.
    pub fn unwritten(&self, n: usize) {
        self.0.unwritten.store(n as u64, Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn text(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let i = &self.0;
        let mut s = String::new();
        let mut metric = |name: &str, ty: &str, help: &str, lines: Vec<(String, u64)>| {
            s.push_str(&format!("# HELP stunner_gateway_operator_{name} {help}\n# TYPE stunner_gateway_operator_{name} {ty}\n"));
            for (labels, v) in lines {
                s.push_str(&format!("stunner_gateway_operator_{name}{labels} {v}\n"));
            }
        };
        metric(
            "render_total",
            "counter",
            "Renders of the desired state.",
            vec![(String::new(), g(&i.render_total))],
        );
        metric(
            "update_total",
            "counter",
            "Update passes, by result.",
            vec![
                ("{result=\"success\"}".into(), g(&i.update_ok)),
                ("{result=\"error\"}".into(), g(&i.update_error)),
            ],
        );
        metric(
            "update_errors_total",
            "counter",
            "Update passes with at least one failed write.",
            vec![(String::new(), g(&i.update_error))],
        );
        metric(
            "reconcile_events_total",
            "counter",
            "World changes received.",
            vec![("{result=\"passed\"}".into(), g(&i.reconcile_passed))],
        );
        metric(
            "generation",
            "gauge",
            "Last rendered generation.",
            vec![(String::new(), g(&i.generation))],
        );
        metric(
            "generation_last_acked",
            "gauge",
            "Last generation the updater finished.",
            vec![(String::new(), g(&i.generation_acked))],
        );
        let by_kind_op = |(k, o): &(String, String)| format!("{{kind=\"{k}\",operation=\"{o}\"}}");
        metric(
            "resource_operations_total",
            "counter",
            "Successful writes by kind and operation.",
            series(&i.ops, by_kind_op),
        );
        metric(
            "resource_operation_failures_total",
            "counter",
            "Failed or timed-out writes by kind and operation (retried with backoff).",
            series(&i.failed_ops, by_kind_op),
        );
        metric(
            "resource_operation_conflicts_total",
            "counter",
            "Applies refused because another field manager owns a field we render (not forced).",
            series(&i.conflicts, |k: &String| format!("{{kind=\"{k}\"}}")),
        );
        metric(
            "unwritten_objects",
            "gauge",
            "Writes the last update pass could not make; retried until written or no longer wanted.",
            vec![(String::new(), g(&i.unwritten))],
        );
        let secs = |a: &AtomicU64| format!("{:.6}", g(a) as f64 / 1e6);
        for (name, help, sum, count) in [
            (
                "render_time_seconds",
                "Time spent rendering.",
                &i.render_us,
                &i.render_total,
            ),
            (
                "update_time_seconds",
                "Time spent writing to the API.",
                &i.update_us,
                &i.update_count,
            ),
        ] {
            s.push_str(&format!(
                "# HELP stunner_gateway_operator_{name} {help}\n# TYPE stunner_gateway_operator_{name} summary\n\
                 stunner_gateway_operator_{name}_sum {}\nstunner_gateway_operator_{name}_count {}\n",
                secs(sum),
                g(count)
            ));
        }
        for (name, a) in [
            ("operator", &i.operator_active),
            ("renderer", &i.renderer_active),
            ("updater", &i.updater_active),
        ] {
            let m = format!("stunner_gateway_operator_{name}_loop_last_active_timestamp_seconds");
            s.push_str(&format!(
                "# HELP {m} Last time the {name} loop was active (Unix seconds).\n# TYPE {m} gauge\n{m} {}\n",
                g(a)
            ));
        }
        s
    }
}
