//! End-to-end: the runqlat and biolatency modules under the real pmcd, checked against
//! independent truths: the kernel's own disk counters (PCP's disk.dev.total) and PCP's
//! libbpf agent pmdabpf measuring the same events. Fails (never passes silently) when pmcd,
//! eBPF or pmdabpf is missing.

use e2e::*;
use std::collections::BTreeMap;
use std::time::Duration;

const BCC_RUNQ: &str = "bcc.runq.latency";
const BCC_DISK: &str = "bcc.disk.all.latency";
const BCC_DEV: &str = "bcc.disk.dev.latency";
const BPF_RUNQ: &str = "bpf.runq.latency";
const BPF_DISK: &str = "bpf.disk.all.latency";
const DISK_TOTAL: &str = "disk.dev.total";
const WORKFILE: &str = "/var/tmp/pcp-bcc-e2e-histograms.dat";

/// Fails with the module's status unless both modules run.
fn assert_modules_running(s: &Session) {
    for m in ["runqlat", "biolatency"] {
        s.assert_module_running(m);
    }
}

/// Bucket index of a "<low>-<high>" instance name (optionally "<disk>::<low>-<high>"):
/// floor(log2(low)), 0 for the first bucket.
fn bucket(name: &str) -> usize {
    let b = name.rsplit("::").next().unwrap_or(name);
    let lo: u64 = b
        .split('-')
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("bad bucket name {name:?}"));
    if lo == 0 {
        0
    } else {
        63 - lo.leading_zeros() as usize
    }
}

/// A metric's values by instance name, from one `pminfo -f` sample.
fn insts(sample: &BTreeMap<String, Values>, metric: &str) -> BTreeMap<String, u64> {
    let v = sample
        .get(metric)
        .unwrap_or_else(|| panic!("{metric}: no values in the sample"));
    v.iter()
        .map(|(k, v)| {
            (
                k.clone().unwrap_or_default(),
                v.parse()
                    .unwrap_or_else(|_| panic!("{metric}: {v:?} is not a number")),
            )
        })
        .collect()
}

fn single(sample: &BTreeMap<String, Values>, metric: &str) -> u64 {
    insts(sample, metric)
        .get("")
        .copied()
        .unwrap_or_else(|| panic!("{metric}: no singular value"))
}

/// Per-bucket delta between two samples (buckets absent before count from zero).
fn delta_hist(
    a: &BTreeMap<String, Values>,
    b: &BTreeMap<String, Values>,
    metric: &str,
) -> Vec<u64> {
    let (a, b) = (insts(a, metric), insts(b, metric));
    let mut out = vec![0u64; 64];
    for (name, vb) in &b {
        let va = a.get(name).copied().unwrap_or(0);
        assert!(*vb >= va, "{metric} [{name}] went backwards: {va} -> {vb}");
        out[bucket(name)] += vb - va;
    }
    out
}

/// Index of the bucket holding the median.
fn median(h: &[u64]) -> usize {
    let total: u64 = h.iter().sum();
    let mut acc = 0;
    for (i, v) in h.iter().enumerate() {
        acc += v;
        if acc * 2 >= total {
            return i;
        }
    }
    h.len() - 1
}

/// Writes with O_DIRECT: `count` 4 KiB writes over an already allocated file, each one
/// block I/O request the kernel counts in disk.dev.total.
fn direct_writes(count: u32) {
    sh(&format!(
        "dd if=/dev/zero of={WORKFILE} bs=4k count={count} oflag=direct conv=notrunc status=none"
    ));
}

fn prepare_workfile() {
    sh(&format!(
        "dd if=/dev/zero of={WORKFILE} bs=1M count=16 status=none && sync"
    ));
}

#[test]
fn descriptors_help_buckets_and_labels() {
    let s = Session::start();
    assert_modules_running(&s);
    prepare_workfile();
    direct_writes(200);
    let out = run_ok("pminfo", &["-dfT", "--labels", BCC_RUNQ, BCC_DISK]);
    for metric in [BCC_RUNQ, BCC_DISK] {
        let start = out
            .find(&format!("\n{metric}\n"))
            .unwrap_or_else(|| panic!("{metric} missing:\n{out}"));
        let rest = &out[start + metric.len() + 2..];
        let block = &rest[..rest.find("\nbcc.").unwrap_or(rest.len())];
        let descriptor = [
            "Data Type: 64-bit unsigned int",
            "Semantics: counter",
            "Units: microsec",
        ];
        assert_has(block, &descriptor, metric);
        assert_has(block, &["Help:\n", "histogram"], metric);
        assert!(
            block.contains(r#""statistic":"histogram""#),
            "{metric}: indom label\n{block}"
        );
        // Buckets: 0-1, 2-3, 4-7, ... with no holes up to the highest served one.
        let names: Vec<&str> = block
            .lines()
            .filter(|l| l.contains("] value "))
            .filter_map(|l| l.split('"').nth(1))
            .collect();
        assert!(names.len() >= 2, "{metric}: expected buckets\n{block}");
        for (i, n) in names.iter().enumerate() {
            let want = if i == 0 {
                "0-1".to_string()
            } else {
                format!("{}-{}", 1u64 << i, (1u64 << (i + 1)) - 1)
            };
            assert_eq!(*n, want, "{metric}: bucket {i}");
            let inst = format!("inst [{i} or \"{n}\"] labels");
            let line = block
                .lines()
                .find(|l| l.trim_start().starts_with(&inst))
                .unwrap_or_else(|| panic!("{metric}: no labels for {n}\n{block}"));
            let (lo, hi) = n.split_once('-').unwrap();
            assert!(
                line.contains(&format!(r#""lower_bound":{lo}"#))
                    && line.contains(&format!(r#""upper_bound":{hi}"#)),
                "{metric}: bounds of {n}: {line}"
            );
        }
        let last = block.lines().rfind(|l| l.contains("] value ")).unwrap();
        assert!(
            !last.ends_with(" value 0"),
            "{metric}: the highest bucket served must be non-empty: {last}"
        );
    }
    // The count and sum sit beside the histograms, and agree with them.
    let s = fetch(&[
        BCC_DISK,
        "bcc.disk.all.latency_count",
        "bcc.disk.all.latency_sum",
        BCC_RUNQ,
        "bcc.runq.latency_count",
        "bcc.runq.latency_sum",
    ]);
    for (h, c) in [
        (BCC_DISK, "bcc.disk.all.latency_count"),
        (BCC_RUNQ, "bcc.runq.latency_count"),
    ] {
        let buckets: u64 = insts(&s, h).values().sum();
        assert_eq!(buckets, single(&s, c), "{h}: buckets sum to the count");
    }
    assert!(single(&s, "bcc.disk.all.latency_sum") > 0);
}

#[test]
fn disk_latency_counts_requests_like_disk_dev_total() {
    let mut s = Session::start();
    let default = std::fs::read_to_string(bcc_dir().join("bcc.conf.default"))
        .expect("bcc.conf.default (./test.sh installs it)");
    assert!(
        default.contains("per_disk = False"),
        "bcc.conf.default has no [biolatency] per_disk line"
    );
    s.with_config(&default.replace("per_disk = False", "per_disk = True"));
    assert_modules_running(&s);
    prepare_workfile();
    direct_writes(50); // so the disk's instances exist before the first sample
    let watch = SkipWatch::start(BIOLATENCY_HOOKS);
    let metrics = [
        DISK_TOTAL,
        BCC_DISK,
        "bcc.disk.all.latency_count",
        BCC_DEV,
        "bcc.disk.dev.latency_count",
    ];
    let a = fetch(&metrics);
    direct_writes(3000);
    let b = fetch(&metrics);

    let disks: u64 = insts(&b, DISK_TOTAL)
        .iter()
        .map(|(d, v)| v - insts(&a, DISK_TOTAL).get(d).copied().unwrap_or(*v))
        .sum();
    let all: u64 = delta_hist(&a, &b, BCC_DISK).iter().sum();
    let count = single(&b, "bcc.disk.all.latency_count") - single(&a, "bcc.disk.all.latency_count");
    let per_disk: u64 = delta_hist(&a, &b, BCC_DEV).iter().sum();
    let vda_a = insts(&a, "bcc.disk.dev.latency_count");
    let dev_count: u64 = insts(&b, "bcc.disk.dev.latency_count")
        .iter()
        .map(|(d, v)| v - vda_a.get(d).copied().unwrap_or(0))
        .sum();
    let skipped = watch.skipped();
    eprintln!("disk.dev.total delta {disks}; bcc.disk.all.latency {all} (count {count}); bcc.disk.dev.latency {per_disk} (count {dev_count}); {skipped} hits the kernel ran no program for");
    assert!(
        disks >= 3000,
        "the workload did not reach the disk: disk.dev.total grew by {disks}"
    );
    let tolerance = 10 + disks / 200; // flushes and discards are in ours, not in disk.dev.total
                                      // Requests the kernel started or completed without running the programs cannot be in ours.
    assert!(
        all <= disks + tolerance && all + skipped + tolerance >= disks,
        "bcc.disk.all.latency counted {all} requests, the kernel {disks} (and skipped the program for {skipped} hits)"
    );
    assert_eq!(all, count, "buckets and latency_count disagree");
    assert!(
        per_disk.abs_diff(all) <= 2,
        "per-disk histograms sum to {per_disk}, the whole-system one to {all}"
    );
    assert!(
        dev_count.abs_diff(all) <= 2,
        "per-disk counts sum to {dev_count}, the whole-system one to {all}"
    );
    let names = insts(&b, BCC_DEV);
    assert!(
        names.keys().all(|n| n.contains("::")),
        "per-disk instances are <disk>::<low>-<high>: {names:?}"
    );
    assert!(
        names.contains_key("vda::0-1"),
        "per-disk instances for vda: {:?}",
        names.keys().collect::<Vec<_>>()
    );
    let _ = std::fs::remove_file(WORKFILE);
}

/// pmdabpf (PCP's libbpf agent, runqlat.so and biolatency.so, enabled in its bpf.conf by
/// default) measures the same events: installs it if pmcd does not serve it yet.
fn ensure_pmdabpf() {
    let serving = || {
        fetch(&[BPF_RUNQ, BPF_DISK])
            .values()
            .filter(|v| !v.is_empty())
            .count()
            == 2
    };
    if serving() {
        return;
    }
    let dir = std::path::Path::new(PMDAS_DIR).join("bpf");
    assert!(
        dir.join("Install").exists(),
        "pmdabpf is not there ({}/Install missing): install Debian's pcp package",
        dir.display()
    );
    // 9>&-: should Install start pmcd, pmcd must not inherit test.sh's lock fd.
    sh(&format!(
        "cd {} && PCPQA_SYSTEMD=no ./Install </dev/null 9>&- >/dev/null 2>&1",
        dir.display()
    ));
    let ok = wait_for(Duration::from_secs(30), || serving().then_some(()));
    assert!(ok.is_some(), "pmdabpf installed but does not serve {BPF_RUNQ} and {BPF_DISK}: see /var/log/pcp/pmcd/bpf.log");
}

#[test]
fn agrees_with_pmdabpf() {
    let s = Session::start();
    assert_modules_running(&s);
    ensure_pmdabpf();
    let units = run_ok("pminfo", &["-d", BPF_RUNQ, BPF_DISK]);
    // pmdabpf's run-queue histogram is in nanoseconds, its disk one in microseconds.
    let runq_ns = units
        .split("\n\n")
        .any(|b| b.contains(BPF_RUNQ) && b.contains("Units: nanosec"));
    assert!(
        units
            .split("\n\n")
            .any(|b| b.contains(BPF_DISK) && b.contains("Units: microsec")),
        "{units}"
    );
    prepare_workfile();
    let metrics = [BCC_RUNQ, BPF_RUNQ, BCC_DISK, BPF_DISK];
    let watch = SkipWatch::start(BIOLATENCY_HOOKS);
    let a = fetch(&metrics);
    // Run-queue waits: more CPU hogs than CPUs, plus the writer's wake-ups.
    sh(&format!(
        "for i in 1 2 3 4; do timeout 4 sh -c 'while :; do :; done' & done; \
         dd if=/dev/zero of={WORKFILE} bs=4k count=3000 oflag=direct conv=notrunc status=none; wait"
    ));
    let b = fetch(&metrics);

    let (bcc_runq, bpf_runq) = (delta_hist(&a, &b, BCC_RUNQ), delta_hist(&a, &b, BPF_RUNQ));
    let (bcc_disk, bpf_disk) = (delta_hist(&a, &b, BCC_DISK), delta_hist(&a, &b, BPF_DISK));
    let total = |h: &[u64]| h.iter().sum::<u64>();
    // pmdabpf's nanosecond bucket j, in our microsecond buckets: its midpoint, 1.5 * 2^j ns.
    let bpf_runq_median_us = {
        let j = median(&bpf_runq);
        let mid_us = if runq_ns {
            (3u64 << j) / 2 / 1000
        } else {
            (3u64 << j) / 2
        };
        if mid_us == 0 {
            0
        } else {
            63 - mid_us.leading_zeros() as usize
        }
    };
    eprintln!(
        "run queue: bcc {} waits, median bucket {}; pmdabpf {} waits, median bucket {} ({}), {} in us buckets",
        total(&bcc_runq),
        median(&bcc_runq),
        total(&bpf_runq),
        median(&bpf_runq),
        if runq_ns { "ns" } else { "us" },
        bpf_runq_median_us
    );
    eprintln!(
        "block io: bcc {} requests, median bucket {}; pmdabpf {} requests, median bucket {}",
        total(&bcc_disk),
        median(&bcc_disk),
        total(&bpf_disk),
        median(&bpf_disk)
    );

    // Requests whose issue or completion the kernel ran no program for are lost to both
    // agents alike.
    let by_event = watch.skipped_by_event();
    let skipped: u64 = by_event.values().sum();
    eprintln!("the kernel skipped biolatency's programs for {skipped} hits: {by_event:?}");
    assert!(
        total(&bpf_runq) > 1000 && total(&bpf_disk) + skipped >= 3000,
        "the workload was not seen by pmdabpf: {} waits, {} requests (+{skipped} hits the kernel ran no program for) of 3000 written",
        total(&bpf_runq),
        total(&bpf_disk)
    );
    let close = |x: u64, y: u64| x.abs_diff(y) * 100 <= 3 * x.max(y); // within 3 %
    assert!(
        close(total(&bcc_runq), total(&bpf_runq)),
        "run-queue waits: bcc {} vs pmdabpf {}",
        total(&bcc_runq),
        total(&bpf_runq)
    );
    assert!(
        close(total(&bcc_disk), total(&bpf_disk)),
        "block requests: bcc {} vs pmdabpf {}",
        total(&bcc_disk),
        total(&bpf_disk)
    );
    assert!(
        median(&bcc_runq).abs_diff(bpf_runq_median_us) <= 1,
        "run-queue median buckets: bcc {} vs pmdabpf {bpf_runq_median_us}",
        median(&bcc_runq)
    );
    assert!(
        median(&bcc_disk).abs_diff(median(&bpf_disk)) <= 1,
        "block io median buckets: bcc {} vs pmdabpf {}",
        median(&bcc_disk),
        median(&bpf_disk)
    );
    let _ = std::fs::remove_file(WORKFILE);
}
