//! Short histories of a few figures for the dashboard's sparklines and trends: records/s per
//! shard and the four metrics, one sample per statistics refresh.

use std::collections::{BTreeMap, VecDeque};

use crate::stream::consumer::StreamStatus;
use crate::warehouse::WarehouseStatus;

pub use ecom_model::history::{History, SAMPLES};

/// The recorder, owned by the pipeline.
#[derive(Debug, Default)]
pub struct Recorder {
    last: Option<(std::time::Instant, BTreeMap<String, u64>)>,
    shard_rates: BTreeMap<String, VecDeque<u64>>,
    shard_lag_ms: BTreeMap<String, VecDeque<u64>>,
    revenue: VecDeque<i64>,
    aov: VecDeque<i64>,
    conversion: VecDeque<i64>,
    orders: VecDeque<i64>,
}

fn push<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() == SAMPLES {
        q.pop_front();
    }
    q.push_back(v);
}

impl Recorder {
    /// Take one sample from fresh statistics.
    pub fn observe(&mut self, stream: Option<&StreamStatus>, wh: Option<&WarehouseStatus>) {
        let now = std::time::Instant::now();
        if let Some(s) = stream {
            let committed: BTreeMap<String, u64> = s
                .shards
                .iter()
                .map(|sh| (sh.shard.clone(), sh.checkpoint.unwrap_or(0)))
                .collect();
            if let Some((then, before)) = &self.last {
                let secs = now.duration_since(*then).as_secs_f64().max(0.001);
                for (shard, seq) in &committed {
                    let done = seq.saturating_sub(before.get(shard).copied().unwrap_or(*seq));
                    let rate = (done as f64 / secs).round() as u64;
                    push(self.shard_rates.entry(shard.clone()).or_default(), rate);
                }
            }
            self.last = Some((now, committed));
            for sh in &s.shards {
                push(
                    self.shard_lag_ms.entry(sh.shard.clone()).or_default(),
                    sh.lag_ms,
                );
            }
        }
        if let Some(m) = wh.and_then(|w| w.metrics.as_ref()) {
            push(&mut self.revenue, m.revenue_cents);
            push(
                &mut self.aov,
                m.avg_order_value_cents.unwrap_or(0.0).round() as i64,
            );
            push(
                &mut self.conversion,
                (m.conversion_rate.unwrap_or(0.0) * 10_000.0).round() as i64,
            );
            push(&mut self.orders, m.orders);
        }
    }

    pub fn history(&self) -> History {
        History {
            shard_rates: self
                .shard_rates
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().copied().collect()))
                .collect(),
            shard_lag_ms: self
                .shard_lag_ms
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().copied().collect()))
                .collect(),
            revenue_cents: self.revenue.iter().copied().collect(),
            avg_order_value_cents: self.aov.iter().copied().collect(),
            conversion_bp: self.conversion.iter().copied().collect(),
            orders: self.orders.iter().copied().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_capped() {
        let mut q = VecDeque::new();
        for i in 0..(SAMPLES as i64 + 5) {
            push(&mut q, i);
        }
        assert_eq!(q.len(), SAMPLES);
        assert_eq!(q.front(), Some(&5));
    }
}
