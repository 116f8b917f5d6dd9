//! Bounded, mergeable summaries of many sessions: a quantile sketch, top-k lists and exemplars.
//!
//! Every type here satisfies `merge(summary(a), summary(b)) == summary(a ∪ b)` (for the
//! quantile sketch: the same bins, so the same quantiles) and has a size bounded independently
//! of how many sessions it saw. Results never depend on arrival or merge order: ties are broken
//! by session id. No I/O, no clock.

use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};

/// Relative accuracy of every quantile slawatch reports: ±1%.
pub const QUANTILE_RELATIVE_ACCURACY: f64 = 0.01;

/// A DDSketch quantile sketch: relative error ≤ 1%, at most 2048 bins whatever the count.
#[derive(Clone, Serialize, Deserialize)]
pub struct Quantiles(DDSketch);

impl std::fmt::Debug for Quantiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Quantiles(n={})", self.0.count())
    }
}

impl Default for Quantiles {
    fn default() -> Self {
        Quantiles(DDSketch::new(Config::new(
            QUANTILE_RELATIVE_ACCURACY,
            2048,
            1e-9,
        )))
    }
}

impl PartialEq for Quantiles {
    fn eq(&self, other: &Self) -> bool {
        self.count() == other.count()
            && [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999]
                .iter()
                .all(|&q| self.quantile(q) == other.quantile(q))
    }
}

impl Quantiles {
    pub fn add(&mut self, v: f64) {
        if v.is_finite() {
            self.0.add(v);
        }
    }

    pub fn merge(&mut self, other: &Quantiles) {
        // Both sketches are built by `default()`, so their configs always agree.
        self.0
            .merge(&other.0)
            .expect("quantile sketches share one config");
    }

    pub fn count(&self) -> u64 {
        self.0.count() as u64
    }

    /// The `q`-quantile (`0..=1`), or `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.0.quantile(q.clamp(0.0, 1.0)).ok().flatten()
    }

    pub fn max(&self) -> Option<f64> {
        self.0.max()
    }

    /// The `k`-th smallest value (1-based, `1..=count`), within the sketch's relative
    /// accuracy; `None` when `k` is out of range.
    pub fn order_statistic(&self, k: u64) -> Option<f64> {
        let n = self.count();
        if k == 0 || k > n {
            return None;
        }
        if n == 1 {
            return self.max();
        }
        // The sketch answers `q` with the value at 0-based rank ⌊q·(n − 1)⌋: aim at the middle
        // of rank k − 1 so that rounding cannot land on a neighbour (`q` above 1 is the max).
        self.quantile(((k - 1) as f64 + 0.5) / (n - 1) as f64)
    }
}

/// A session id with the value it is ranked by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    pub value: f64,
    pub session_id: String,
}

/// The `k` sessions with the largest values (slowest, most expensive), ties by session id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopK {
    k: usize,
    /// Sorted best first.
    items: Vec<Ranked>,
}

impl TopK {
    pub fn new(k: usize) -> TopK {
        TopK {
            k,
            items: Vec::with_capacity(k + 1),
        }
    }

    fn better(a: &Ranked, b: &Ranked) -> bool {
        a.value > b.value || (a.value == b.value && a.session_id < b.session_id)
    }

    /// Offers one session; cheap when it does not make the list.
    pub fn offer(&mut self, value: f64, session_id: &str) {
        if self.k == 0 || !value.is_finite() {
            return;
        }
        if self.items.len() == self.k {
            let last = &self.items[self.k - 1];
            if value < last.value || (value == last.value && session_id >= last.session_id.as_str())
            {
                return;
            }
        }
        let item = Ranked {
            value,
            session_id: session_id.to_owned(),
        };
        let pos = self.items.partition_point(|x| TopK::better(x, &item));
        if self
            .items
            .get(pos)
            .is_some_and(|x| x.session_id == item.session_id)
        {
            return;
        }
        self.items.insert(pos, item);
        self.items.truncate(self.k);
    }

    pub fn merge(&mut self, other: &TopK) {
        for item in &other.items {
            self.offer(item.value, &item.session_id);
        }
    }

    pub fn items(&self) -> &[Ranked] {
        &self.items
    }
}

/// Up to `n` example sessions of something (a violation, a bad event): the earliest by event
/// time, ties by id, so the choice is the same however the sessions were split and merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exemplars {
    n: usize,
    /// Sorted by (event time, session id).
    items: Vec<(i64, String)>,
}

impl Exemplars {
    pub fn new(n: usize) -> Exemplars {
        Exemplars {
            n,
            items: Vec::new(),
        }
    }

    pub fn offer(&mut self, event_time: i64, session_id: &str) {
        if self.n == 0 {
            return;
        }
        if self.items.len() == self.n {
            let (t, id) = &self.items[self.n - 1];
            if (event_time, session_id) >= (*t, id.as_str()) {
                return;
            }
        }
        let pos = self
            .items
            .partition_point(|(t, id)| (*t, id.as_str()) < (event_time, session_id));
        if self.items.get(pos).is_some_and(|(_, id)| id == session_id) {
            return;
        }
        self.items.insert(pos, (event_time, session_id.to_owned()));
        self.items.truncate(self.n);
    }

    pub fn merge(&mut self, other: &Exemplars) {
        for (t, id) in &other.items {
            self.offer(*t, id);
        }
    }

    pub fn ids(&self) -> Vec<String> {
        self.items.iter().map(|(_, id)| id.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_largest_with_id_tiebreak() {
        let mut t = TopK::new(3);
        for (v, id) in [(1.0, "a"), (5.0, "b"), (3.0, "c"), (5.0, "a"), (2.0, "d")] {
            t.offer(v, id);
        }
        let ids: Vec<_> = t.items().iter().map(|r| r.session_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn top_k_and_exemplars_merge_like_union() {
        let values: Vec<(f64, String)> = (0..200)
            .map(|i| (((i * 37) % 101) as f64, format!("s{i:03}")))
            .collect();
        let mut whole = TopK::new(5);
        let mut whole_ex = Exemplars::new(4);
        let (mut a, mut b) = (TopK::new(5), TopK::new(5));
        let (mut ea, mut eb) = (Exemplars::new(4), Exemplars::new(4));
        for (i, (v, id)) in values.iter().enumerate() {
            whole.offer(*v, id);
            whole_ex.offer(*v as i64, id);
            if i % 3 == 0 {
                a.offer(*v, id);
                ea.offer(*v as i64, id);
            } else {
                b.offer(*v, id);
                eb.offer(*v as i64, id);
            }
        }
        b.merge(&a);
        eb.merge(&ea);
        assert_eq!(b, whole);
        assert_eq!(eb, whole_ex);
    }

    #[test]
    fn quantiles_merge_like_union_and_stay_within_accuracy() {
        let (mut whole, mut a, mut b) = (
            Quantiles::default(),
            Quantiles::default(),
            Quantiles::default(),
        );
        for i in 1..=10_000 {
            let v = i as f64;
            whole.add(v);
            if i % 2 == 0 { a.add(v) } else { b.add(v) }
        }
        a.merge(&b);
        assert_eq!(a, whole);
        let p99 = whole.quantile(0.99).unwrap();
        assert!((p99 - 9900.0).abs() / 9900.0 <= 0.011, "{p99}");
    }
}
