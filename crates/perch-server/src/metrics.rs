//! Server metrics in the Prometheus text exposition format (version 0.0.4).
//!
//! Counters and histograms are kept here, updated by the request middleware and by the
//! generation streams; gauges (queue depth, running sequences, KV blocks, loaded models) are
//! read from the engines when `/metrics` is scraped. The format is simple enough to write by
//! hand, which keeps each server's metrics its own (no global recorder), so tests can run
//! several servers in one process.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use perch_engine::engine::EngineStats;

/// Upper bounds (seconds) of the time-to-first-token buckets.
const TTFT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Upper bounds (seconds) of the inter-token latency buckets.
const ITL_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Upper bounds (seconds) of the request duration buckets.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&mut self.counts) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

#[derive(Debug)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    durations: BTreeMap<String, Histogram>,
    prompt_tokens: BTreeMap<String, u64>,
    cached_tokens: BTreeMap<String, u64>,
    generated_tokens: BTreeMap<String, u64>,
    finished: BTreeMap<(String, &'static str), u64>,
    ttft: Histogram,
    itl: Histogram,
}

/// The server's counters and histograms.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            inner: Mutex::new(Inner {
                requests: BTreeMap::new(),
                durations: BTreeMap::new(),
                prompt_tokens: BTreeMap::new(),
                cached_tokens: BTreeMap::new(),
                generated_tokens: BTreeMap::new(),
                finished: BTreeMap::new(),
                ttft: Histogram::new(TTFT_BUCKETS),
                itl: Histogram::new(ITL_BUCKETS),
            }),
        }
    }
}

/// What the engines and the model registry say at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Per loaded model: its name and its engine's counters.
    pub models: Vec<(String, EngineStats)>,
    /// Models the server knows (loaded or not).
    pub known_models: usize,
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count a finished HTTP request.
    pub fn record_request(&self, route: &str, status: u16, took: Duration) {
        let mut m = self.lock();
        *m.requests.entry((route.to_string(), status)).or_default() += 1;
        m.durations
            .entry(route.to_string())
            .or_insert_with(|| Histogram::new(DURATION_BUCKETS))
            .observe(took.as_secs_f64());
    }

    /// Record the time from submission to the first generated token.
    pub fn record_ttft(&self, d: Duration) {
        self.lock().ttft.observe(d.as_secs_f64());
    }

    /// Record the time between two generated tokens.
    pub fn record_inter_token(&self, d: Duration) {
        self.lock().itl.observe(d.as_secs_f64());
    }

    /// Count a finished generation.
    pub fn record_generation(
        &self,
        model: &str,
        prompt: usize,
        cached: usize,
        generated: usize,
        finish: &'static str,
    ) {
        let mut m = self.lock();
        *m.prompt_tokens.entry(model.to_string()).or_default() += prompt as u64;
        *m.cached_tokens.entry(model.to_string()).or_default() += cached as u64;
        *m.generated_tokens.entry(model.to_string()).or_default() += generated as u64;
        *m.finished.entry((model.to_string(), finish)).or_default() += 1;
    }

    /// The exposition text.
    pub fn render(&self, snap: &Snapshot) -> String {
        let m = self.lock();
        let mut out = String::with_capacity(4096);
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };

        head(
            &mut out,
            "perch_http_requests_total",
            "counter",
            "HTTP requests answered, by route and status.",
        );
        for ((route, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "perch_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        head(
            &mut out,
            "perch_http_request_duration_seconds",
            "histogram",
            "Time until the response headers of an HTTP request (a stream continues after).",
        );
        for (route, h) in &m.durations {
            h.write(
                &mut out,
                "perch_http_request_duration_seconds",
                &format!("route=\"{}\"", escape(route)),
            );
        }
        let per_model = |out: &mut String, name: &str, help: &str, map: &BTreeMap<String, u64>| {
            head(out, name, "counter", help);
            for (model, n) in map {
                let _ = writeln!(out, "{name}{{model=\"{}\"}} {n}", escape(model));
            }
        };
        per_model(
            &mut out,
            "perch_prompt_tokens_total",
            "Prompt tokens of finished generations.",
            &m.prompt_tokens,
        );
        per_model(
            &mut out,
            "perch_prompt_tokens_cached_total",
            "Prompt tokens served from the prefix cache.",
            &m.cached_tokens,
        );
        per_model(
            &mut out,
            "perch_generated_tokens_total",
            "Tokens generated.",
            &m.generated_tokens,
        );
        head(
            &mut out,
            "perch_generations_total",
            "counter",
            "Finished generations, by model and finish reason.",
        );
        for ((model, reason), n) in &m.finished {
            let _ = writeln!(
                out,
                "perch_generations_total{{model=\"{}\",reason=\"{reason}\"}} {n}",
                escape(model)
            );
        }
        head(
            &mut out,
            "perch_time_to_first_token_seconds",
            "histogram",
            "Time from accepting a request to its first generated token.",
        );
        m.ttft
            .write(&mut out, "perch_time_to_first_token_seconds", "");
        head(
            &mut out,
            "perch_inter_token_latency_seconds",
            "histogram",
            "Time between consecutive generated tokens of one request.",
        );
        m.itl
            .write(&mut out, "perch_inter_token_latency_seconds", "");
        drop(m);

        let gauge = |out: &mut String, name: &str, help: &str, f: &dyn Fn(&EngineStats) -> f64| {
            head(out, name, "gauge", help);
            for (model, s) in &snap.models {
                let _ = writeln!(out, "{name}{{model=\"{}\"}} {}", escape(model), f(s));
            }
        };
        gauge(
            &mut out,
            "perch_queue_depth",
            "Requests waiting to be admitted by the engine.",
            &|s| s.waiting as f64,
        );
        gauge(
            &mut out,
            "perch_running_sequences",
            "Sequences the engine is running.",
            &|s| s.running as f64,
        );
        head(
            &mut out,
            "perch_kv_blocks",
            "gauge",
            "KV cache blocks by state: used (held by sequences), free, cached (free blocks still holding a reusable prefix, counted in free too), total.",
        );
        for (model, s) in &snap.models {
            let model = escape(model);
            for (state, n) in [
                ("used", s.pool.used),
                ("cached", s.pool.cached),
                ("free", s.pool.free),
                ("total", s.pool.total),
            ] {
                let _ = writeln!(
                    out,
                    "perch_kv_blocks{{model=\"{model}\",state=\"{state}\"}} {n}"
                );
            }
        }
        gauge(
            &mut out,
            "perch_prefix_cache_hit_rate",
            "Share of prefix-cache block lookups that found a block.",
            &|s| {
                if s.pool.lookups == 0 {
                    0.0
                } else {
                    s.pool.hits as f64 / s.pool.lookups as f64
                }
            },
        );
        gauge(
            &mut out,
            "perch_engine_preemptions",
            "Sequences preempted because the KV cache ran out (recomputed later).",
            &|s| s.preemptions as f64,
        );
        gauge(
            &mut out,
            "perch_speculative_draft_tokens",
            "Speculative draft tokens computed (prompt lookup --draft-ngram, or --draft-model).",
            &|s| s.draft_tokens as f64,
        );
        gauge(
            &mut out,
            "perch_speculative_accepted_tokens",
            "Speculative draft tokens accepted by the sampler.",
            &|s| s.draft_accepted as f64,
        );
        gauge(
            &mut out,
            "perch_speculative_draft_model_steps",
            "Forward passes of the draft model (--draft-model).",
            &|s| s.draft_model_steps as f64,
        );
        gauge(
            &mut out,
            "perch_speculative_draft_model_seconds",
            "Time spent running the draft model (--draft-model).",
            &|s| s.draft_model_time.as_secs_f64(),
        );
        gauge(
            &mut out,
            "perch_speculative_draft_kv_blocks_used",
            "Blocks of the draft model's KV cache in use (--draft-model).",
            &|s| s.draft_blocks_used as f64,
        );
        head(
            &mut out,
            "perch_model_loaded",
            "gauge",
            "1 for each model loaded in memory.",
        );
        for (model, _) in &snap.models {
            let _ = writeln!(out, "perch_model_loaded{{model=\"{}\"}} 1", escape(model));
        }
        head(
            &mut out,
            "perch_models_loaded",
            "gauge",
            "Models loaded in memory.",
        );
        let _ = writeln!(out, "perch_models_loaded {}", snap.models.len());
        head(
            &mut out,
            "perch_models_known",
            "gauge",
            "Models this server can serve.",
        );
        let _ = writeln!(out, "perch_models_known {}", snap.known_models);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        h.observe(0.5);
        h.observe(1.5);
        h.observe(3.0);
        let mut s = String::new();
        h.write(&mut s, "x", "");
        assert!(s.contains("x_bucket{le=\"1\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"2\"} 2\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("x_count 3\n"), "{s}");
        assert!(s.contains("x_sum 5\n"), "{s}");
    }

    #[test]
    fn renders_requests_and_gauges() {
        let m = Metrics::default();
        m.record_request("/v1/models", 200, Duration::from_millis(3));
        m.record_request("/v1/models", 200, Duration::from_millis(3));
        m.record_generation("a\"b", 5, 0, 7, "stop");
        let mut stats = EngineStats::default();
        stats.pool.used = 3;
        stats.pool.total = 10;
        let text = m.render(&Snapshot {
            models: vec![("a\"b".into(), stats)],
            known_models: 1,
        });
        assert!(
            text.contains("perch_http_requests_total{route=\"/v1/models\",status=\"200\"} 2\n")
        );
        assert!(text.contains("perch_generated_tokens_total{model=\"a\\\"b\"} 7\n"));
        assert!(text.contains("perch_kv_blocks{model=\"a\\\"b\",state=\"used\"} 3\n"));
        assert!(text.contains("perch_models_loaded 1\n"));
    }
}
