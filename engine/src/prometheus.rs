//! Prometheus text exposition of a run's metrics (served at `/metrics` by `topo-web`).
//!
//! The [`Exporter`] owns a recorder that is never installed globally: the reporter
//! publishes into it with [`Exporter::record`], so several runs (or tests) in one process
//! keep their metrics apart. The engine serves no HTTP: the supervising process does
//! (crate `topo-web`), so workers do not link a web stack they never use.
//!
//! ```
//! use topo_engine::metrics::{Publisher, WorkerSnapshot};
//! use topo_engine::prometheus::Exporter;
//!
//! let exporter = Exporter::new();
//! let mut publisher = Publisher::new("t");
//! exporter.record(|| publisher.publish(&[WorkerSnapshot::default()], 0));
//! assert!(exporter.render().contains("topo_worker_restarts_total{topology=\"t\"} 0"));
//! ```

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Upper bounds of the latency histograms' buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 18] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A Prometheus recorder and its renderer.
pub struct Exporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exporter")
    }
}

impl Default for Exporter {
    fn default() -> Self {
        Exporter::new()
    }
}

impl Exporter {
    /// A fresh exporter; histograms named `*_seconds` get [`LATENCY_BUCKETS`].
    pub fn new() -> Exporter {
        let builder = PrometheusBuilder::new();
        let builder = match builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
        {
            Ok(b) => b,
            // Only an empty bucket list is refused.
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        Exporter { recorder, handle }
    }

    /// Runs `f` with this exporter as the current `metrics` recorder (on this thread).
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// The text exposition of everything recorded.
    pub fn render(&self) -> String {
        self.handle.run_upkeep();
        self.handle.render()
    }

    /// A renderer, cheap to clone, that another thread can render with.
    pub fn handle(&self) -> PrometheusHandle {
        self.handle.clone()
    }
}
