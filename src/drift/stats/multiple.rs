//! Multiple-testing control: Benjamini–Hochberg false discovery rate.
//!
//! Pure functions: no I/O, no wall clock, no panics; `None` = not computable.

fn valid_p_values(ps: &[f64]) -> bool {
    ps.iter().all(|p| (0.0..=1.0).contains(p))
}

/// Benjamini–Hochberg adjusted p-values in input order, equal to
/// `scipy.stats.false_discovery_control(ps, method='bh')`:
/// `min_{j >= i} p_(j)·m/j` over the sorted p-values, clipped to `[0, 1]`.
///
/// Empty input gives an empty vector; a single p-value is returned as is.
/// `None` if any p-value is NaN or outside `[0, 1]` (scipy raises).
pub fn bh_adjust(ps: &[f64]) -> Option<Vec<f64>> {
    if !valid_p_values(ps) {
        return None;
    }
    let m = ps.len();
    if m <= 1 {
        return Some(ps.to_vec());
    }
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| ps[a].total_cmp(&ps[b]));
    // ps_sorted * (m / i), as scipy (the ratio is formed first).
    let mut adj: Vec<f64> = order
        .iter()
        .enumerate()
        .map(|(k, &i)| ps[i] * (m as f64 / (k + 1) as f64))
        .collect();
    for k in (0..m - 1).rev() {
        adj[k] = adj[k].min(adj[k + 1]);
    }
    let mut out = vec![0.0; m];
    for (k, &i) in order.iter().enumerate() {
        out[i] = adj[k].clamp(0.0, 1.0);
    }
    Some(out)
}

/// Benjamini–Hochberg step-up rejections at FDR level `alpha`, in input order.
///
/// With sorted p-values `p_(1) <= ... <= p_(m)`, let
/// `k = max{ i : p_(i) <= (i/m)·alpha }` (the `<=` comparison, evaluated as
/// `p <= (i as f64 / m as f64) * alpha`); hypotheses with `p <= p_(k)` are
/// rejected, none if no such `k` exists.
///
/// `None` if a p-value is NaN or outside `[0, 1]`, or `alpha` is NaN or
/// outside `[0, 1]`.
pub fn bh_reject(ps: &[f64], alpha: f64) -> Option<Vec<bool>> {
    if !valid_p_values(ps) || !(0.0..=1.0).contains(&alpha) {
        return None;
    }
    let m = ps.len();
    let mut sorted = ps.to_vec();
    sorted.sort_by(f64::total_cmp);
    let cutoff = sorted
        .iter()
        .enumerate()
        .rev()
        .find(|&(k, &p)| p <= ((k + 1) as f64 / m as f64) * alpha)
        .map(|(_, &p)| p);
    Some(match cutoff {
        Some(c) => ps.iter().map(|&p| p <= c).collect(),
        None => vec![false; m],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bh_textbook_example() {
        let ps = [0.01, 0.04, 0.03, 0.005];
        let adj = bh_adjust(&ps).unwrap();
        for (a, e) in adj.iter().zip([0.02, 0.04, 0.04, 0.02]) {
            assert!((a - e).abs() < 1e-15, "{adj:?}");
        }
        assert_eq!(bh_reject(&ps, 0.04).unwrap(), vec![true, true, true, true]);
        // Boundary: p_(2) = 0.01 == (2/4)·0.02 is rejected (<=).
        assert_eq!(
            bh_reject(&ps, 0.02).unwrap(),
            vec![true, false, false, true]
        );
        assert_eq!(bh_reject(&ps, 0.01).unwrap(), vec![false; 4]);
        assert_eq!(bh_adjust(&[]), Some(vec![]));
        assert_eq!(bh_adjust(&[1.5]), None);
    }
}
