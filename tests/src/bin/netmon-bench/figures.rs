//! The medians the tables report: the machine's speed moves from one run to the next, and a
//! median (with the spread beside it) passes over the runs it slowed.

/// The median of `values`, their smallest and their largest.
pub(crate) fn median_and_spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

/// The median of `values`; NaN (shown as such) when there are none.
pub(crate) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    median_and_spread(values.to_vec()).0
}
