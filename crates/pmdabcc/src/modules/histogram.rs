//! Power-of-two latency histograms as the original pmdabcc served them (runqlat, biolatency):
//! bucket naming, the labels heatmap clients read, and which buckets are served.
//!
//! Bucket `i` holds values `v` with `floor(log2(v)) == i`, except bucket 0, which also holds 0:
//! `0-1`, `2-3`, `4-7`, … — the original's `read_log2_histogram_section` names (bcc's
//! `bpf_log2l` slots 1, 2, 3, … there) and pmdabpf's. 64 buckets cover every u64 value, so the
//! BPF side never clamps.

/// Buckets per histogram (must match `*_SLOTS` in the modules' BPF headers).
pub const SLOTS: usize = 64;

/// Labels of a histogram instance domain.
pub const INDOM_LABELS: &str = r#"{"statistic":"histogram"}"#;

/// Inclusive bounds of bucket `i`.
pub fn bounds(i: usize) -> (u64, u64) {
    match i {
        0 => (0, 1),
        63 => (1 << 63, u64::MAX),
        i => (1 << i, (1 << (i + 1)) - 1),
    }
}

/// Instance name of bucket `i`: `"<low>-<high>"`.
pub fn name(i: usize) -> String {
    let (lo, hi) = bounds(i);
    format!("{lo}-{hi}")
}

/// Instance labels of bucket `i`.
pub fn bound_labels(i: usize) -> String {
    let (lo, hi) = bounds(i);
    format!(r#"{{"lower_bound":{lo},"upper_bound":{hi}}}"#)
}

/// How many buckets to serve: from bucket 0 up to the highest non-empty one (empty buckets
/// below it are served as zero, so a heatmap has no holes), and at least bucket 0, so the
/// metric has an instance before the first event (as the original did).
pub fn served(slots: &[u64]) -> usize {
    slots.iter().rposition(|&v| v > 0).map_or(1, |i| i + 1)
}

/// Members of a fixed histogram indom serving `n` buckets: id = bucket index, so an
/// instance id always means the same bucket.
pub fn fixed_members(n: usize) -> Vec<(u32, String)> {
    (0..n.min(SLOTS)).map(|i| (i as u32, name(i))).collect()
}

/// A histogram with its event count and the exact sum of the measured values, summed over
/// CPUs (or disks) by the modules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hist {
    pub slots: [u64; SLOTS],
    pub count: u64,
    /// Sum of the measured latencies, nanoseconds.
    pub sum_ns: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            slots: [0; SLOTS],
            count: 0,
            sum_ns: 0,
        }
    }
}

impl Hist {
    pub fn add(&mut self, slots: &[u64], count: u64, sum_ns: u64) {
        for (a, b) in self.slots.iter_mut().zip(slots) {
            *a = a.wrapping_add(*b);
        }
        self.count = self.count.wrapping_add(count);
        self.sum_ns = self.sum_ns.wrapping_add(sum_ns);
    }
    /// Sum in microseconds, the histograms' unit.
    pub fn sum_us(&self) -> u64 {
        self.sum_ns / 1000
    }
}

/// The histogram in slot 0 of a per-CPU array, summed over CPUs (one lookup returns every
/// CPU's copy). `T` is the BPF side's record; `add` adds one CPU's copy.
pub fn read_percpu<T: crate::bpf::Pod>(
    map: &impl libbpf_rs::MapCore,
    add: impl Fn(&mut Hist, &T),
) -> Result<Hist, crate::module::ModuleError> {
    let cpus = map
        .lookup_percpu(&0u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
        .map_err(crate::module::ModuleError::bpf("read hist"))?
        .unwrap_or_default();
    let mut h = Hist::default();
    for c in &cpus {
        add(&mut h, &crate::bpf::from_bytes::<T>(c));
    }
    Ok(h)
}

/// Bucket of value `v` as the BPF side computes it (`log2l`), for tests.
#[cfg(test)]
pub fn bucket_of(v: u64) -> usize {
    if v == 0 {
        0
    } else {
        63 - v.leading_zeros() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_original() {
        // pcpbcc.python: slot i (i >= 1) is "(1<<i)>>1 - (1<<i)-1", with "1-1" made "0-1".
        for i in 1..=62usize {
            let (mut low, high) = ((1u64 << i) >> 1, (1u64 << i) - 1);
            if low == high {
                low -= 1;
            }
            assert_eq!(name(i - 1), format!("{low}-{high}"));
        }
        assert_eq!(name(0), "0-1");
        assert_eq!(name(1), "2-3");
        assert_eq!(name(2), "4-7");
        assert_eq!(name(63), format!("{}-{}", 1u64 << 63, u64::MAX));
    }

    #[test]
    fn buckets_tile_the_u64_range() {
        for i in 0..SLOTS {
            let (lo, hi) = bounds(i);
            assert!(lo <= hi);
            assert_eq!(bucket_of(lo), i);
            assert_eq!(bucket_of(hi), i);
            if i + 1 < SLOTS {
                assert_eq!(bounds(i + 1).0, hi + 1);
            }
        }
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 0);
        assert_eq!(bucket_of(1000), 9);
    }

    #[test]
    fn serves_up_to_the_highest_non_empty_bucket() {
        let mut s = [0u64; SLOTS];
        assert_eq!(served(&s), 1);
        s[3] = 5;
        assert_eq!(served(&s), 4);
        s[10] = 1;
        assert_eq!(served(&s), 11);
        let m = fixed_members(served(&s));
        assert_eq!(m.len(), 11);
        assert_eq!(m[3], (3, "8-15".to_string()));
    }

    #[test]
    fn labels_are_json_with_bounds() {
        assert_eq!(bound_labels(0), r#"{"lower_bound":0,"upper_bound":1}"#);
        assert_eq!(bound_labels(4), r#"{"lower_bound":16,"upper_bound":31}"#);
    }
}
