//! What is derived from the module specs, never written by hand: the descriptor golden file
//! (`crates/pmdabcc/metrics.golden`), and the module parts of `pmda/bcc.conf`,
//! `pmda/pmdabcc.1` and `README.md` (between `BEGIN MODULES` and `END MODULES` markers).
//! Tests fail when a checked-in copy differs; `UPDATE_GOLDEN=1` / `UPDATE_DOCS=1` rewrite.

use crate::module::{IndomSpec, MetricSpec, ModuleSpec, OptionKind};
use crate::modules;
use pcp_pmda::{Semantics, Type, Units};
use std::collections::BTreeMap;

/// Order of the modules in the docs: the default configuration's, then the rest.
fn documented() -> Vec<&'static ModuleSpec> {
    let mut v: Vec<&'static ModuleSpec> = modules::all().to_vec();
    v.sort_by_key(|m| (m.name == "selftest", m.default_cluster));
    v
}

fn units(u: Units) -> String {
    for (n, k) in [
        ("count", Units::COUNT),
        ("bytes", Units::BYTES),
        ("nsec", Units::NSEC),
        ("usec", Units::USEC),
        ("msec", Units::MSEC),
        ("sec", Units::SEC),
        ("none", Units::NONE),
    ] {
        if u == k {
            return n.into();
        }
    }
    format!("{u:?}")
}

fn ty(t: Type) -> &'static str {
    match t {
        Type::I32 => "i32",
        Type::U32 => "u32",
        Type::I64 => "i64",
        Type::U64 => "u64",
        Type::Float => "float",
        Type::Double => "double",
        Type::String => "string",
        Type::Event => "event",
    }
}

fn sem(s: Semantics) -> &'static str {
    match s {
        Semantics::Counter => "counter",
        Semantics::Instant => "instant",
        Semantics::Discrete => "discrete",
    }
}

fn descriptor_line(domain: u32, cluster: u32, m: &MetricSpec, indoms: &[IndomSpec]) -> String {
    let indom = match m.indom {
        Some(i) => {
            let kind = indoms
                .iter()
                .find(|d| d.id == i)
                .map_or("?", |d| match d.kind {
                    pcp_pmda::IndomKind::Cached => "cached",
                    pcp_pmda::IndomKind::Fixed => "fixed",
                });
            format!(
                "{domain}.{}({kind})",
                crate::module::indom_serial(cluster, i)
            )
        }
        None => "none".into(),
    };
    let aliases: String = m
        .aliases
        .iter()
        .map(|a| format!(" alias=bcc.{a}"))
        .collect();
    format!(
        "{domain}.{cluster}.{} bcc.{} {} {} {} indom={} {}{aliases}",
        m.item,
        m.name,
        ty(m.ty),
        sem(m.sem),
        units(m.units),
        indom,
        if m.sensitive { "sensitive" } else { "public" }
    )
}

/// Every descriptor the built-in modules and the agent can serve, with their default
/// clusters and prefix, in every layout an option can choose: one line per (PMID, layout).
pub fn golden() -> String {
    let mut lines = Vec::new();
    let agent = crate::agent::AGENT_CLUSTER;
    lines.push("# agent".to_string());
    for m in crate::agent::metrics::METRICS {
        lines.push(descriptor_line(
            149,
            agent,
            m,
            crate::agent::metrics::INDOMS,
        ));
    }
    for spec in documented() {
        let c = spec.default_cluster.unwrap_or(0);
        lines.push(format!("# {}", spec.name));
        for m in spec.metrics {
            lines.push(descriptor_line(149, c, m, spec.indoms));
        }
        for (when, metrics, indoms) in spec.layouts {
            lines.push(format!("# {} with {when}", spec.name));
            for m in *metrics {
                lines.push(descriptor_line(149, c, m, indoms));
            }
        }
    }
    lines.join("\n") + "\n"
}

/// PMIDs that have more than one descriptor across modules and layouts.
pub fn pmid_conflicts(golden: &str) -> Vec<String> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    let mut out = Vec::new();
    for l in golden.lines().filter(|l| !l.starts_with('#')) {
        let (pmid, rest) = l.split_once(' ').unwrap_or((l, ""));
        match seen.get(pmid) {
            Some(prev) if *prev != rest => out.push(format!("{pmid}: {prev} / {rest}")),
            _ => {
                seen.insert(pmid, rest);
            }
        }
    }
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for w in text.split_whitespace() {
        let cur = lines.last_mut().expect("one line at least");
        if !cur.is_empty() && cur.len() + 1 + w.len() > width {
            lines.push(w.to_string());
        } else {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(w);
        }
    }
    lines
}

fn metric_names(spec: &ModuleSpec) -> String {
    spec.metrics
        .iter()
        .flat_map(|m| std::iter::once(m.name).chain(m.aliases.iter().copied()))
        .map(|n| format!("bcc.{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn option_default(kind: &OptionKind, d: &str) -> String {
    match (kind, d) {
        (_, "") => "none".into(),
        _ => d.to_string(),
    }
}

/// The module sections of bcc.conf.
pub fn conf_sections() -> String {
    let mut out = String::new();
    for s in documented().into_iter().filter(|s| s.name != "selftest") {
        out.push('\n');
        for l in wrap(&format!("{}.", capitalise(s.summary)), 86) {
            out.push_str(&format!("# {l}\n"));
        }
        for l in wrap(&format!("Metrics: {}.", metric_names(s)), 86) {
            out.push_str(&format!("# {l}\n"));
        }
        for (when, m, _) in s.layouts {
            let names: Vec<String> = m.iter().map(|m| format!("bcc.{}", m.name)).collect();
            for l in wrap(&format!("With {when}: {}.", names.join(", ")), 86) {
                out.push_str(&format!("# {l}\n"));
            }
        }
        if !s.options.is_empty() {
            out.push_str("# Options:\n");
            for o in s.options {
                let text = format!(
                    "{} ({}; default {})",
                    o.doc,
                    o.kind.describe(),
                    option_default(&o.kind, o.default)
                );
                for (i, l) in wrap(&text, 66).iter().enumerate() {
                    let key = if i == 0 { o.key } else { "" };
                    out.push_str(&format!("#   {key:<18} {l}\n"));
                }
            }
        }
        out.push_str(&format!("[{}]\nmodule = {}\n", s.name, s.name));
        if let Some(c) = s.default_cluster {
            out.push_str(&format!("cluster = {c}\n"));
        }
        // Switches are written out, so a reader sees (and can flip) their state; the rest
        // stay commented at their defaults.
        for o in s.options {
            let hash = if o.kind == OptionKind::Bool { "" } else { "#" };
            out.push_str(&format!("{hash}{} = {}\n", o.key, o.default));
        }
    }
    out
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

fn roff(s: &str) -> String {
    s.replace('\\', "\\e").replace('-', "\\-")
}

/// The MODULES section entries of pmdabcc.1.
pub fn man_modules() -> String {
    let mut out = String::new();
    for s in documented() {
        out.push_str(".TP\n");
        out.push_str(&format!(
            "\\f3{}\\f1 (cluster {}; Linux {}+)\n{}.\n",
            s.name,
            s.default_cluster.map_or("-".into(), |c| c.to_string()),
            s.min_kernel.unwrap_or("?"),
            roff(&capitalise(s.summary))
        ));
        let names: Vec<String> = s
            .metrics
            .iter()
            .map(|m| format!("\\f3bcc.{}\\f1", roff(m.name)))
            .collect();
        out.push_str(&format!("Metrics: {}.\n", names.join(", ")));
        for (when, m, _) in s.layouts {
            let names: Vec<String> = m
                .iter()
                .map(|m| format!("\\f3bcc.{}\\f1", roff(m.name)))
                .collect();
            out.push_str(&format!(
                "With \\f3{}\\f1: {}.\n",
                roff(when),
                names.join(", ")
            ));
        }
        for o in s.options {
            out.push_str(&format!(
                ".br\n\\f3{}\\f1 (\\f2{}\\f1; default \\f3{}\\f1): {}.\n",
                roff(o.key),
                roff(&o.kind.describe()),
                roff(&option_default(&o.kind, o.default)),
                roff(o.doc.trim_end_matches('.'))
            ));
        }
    }
    out
}

/// The README's module table.
pub fn readme_table() -> String {
    let mut out = String::from(
        "| module | cluster | kernels | what | metrics | options |\n|---|---|---|---|---|---|\n",
    );
    for s in documented() {
        let names: Vec<String> = s
            .metrics
            .iter()
            .map(|m| format!("`bcc.{}`", m.name))
            .collect();
        let mut metrics = names.join(", ");
        for (when, m, _) in s.layouts {
            let n: Vec<String> = m
                .iter()
                .map(|m| format!("`{}`", m.name.rsplit('.').next().unwrap_or(m.name)))
                .collect();
            metrics.push_str(&format!("; with `{when}`: {}", n.join(", ")));
        }
        let opts: Vec<String> = s.options.iter().map(|o| format!("`{}`", o.key)).collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            s.name,
            s.default_cluster.map_or("-".into(), |c| c.to_string()),
            s.min_kernel.map_or("?".into(), |k| format!("{k}+")),
            s.summary,
            metrics,
            opts.join(", ")
        ));
    }
    out
}

/// Replaces the text between the lines containing `BEGIN MODULES` and `END MODULES`.
pub fn splice(doc: &str, generated: &str) -> Option<String> {
    let b = doc.find("BEGIN MODULES")?;
    let b = doc[b..].find('\n')? + b + 1;
    let e = doc[b..].find("END MODULES")? + b;
    let e = doc[..e].rfind('\n').map_or(b, |i| i + 1).max(b);
    Some(format!("{}{}{}", &doc[..b], generated, &doc[e..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(path: &Path, want: String, var: &str) {
        let have = std::fs::read_to_string(path).unwrap_or_default();
        if have == want {
            return;
        }
        if std::env::var_os(var).is_some() {
            std::fs::write(path, &want).unwrap();
            return;
        }
        panic!(
            "{} is not what the specs give: review the change, then run\n  {var}=1 cargo test -p pmdabcc docs\n--- diff (first differing lines) ---\n{}",
            path.display(),
            have.lines()
                .zip(want.lines().chain(std::iter::repeat("<end>")))
                .filter(|(a, b)| a != b)
                .take(5)
                .map(|(a, b)| format!("- {a}\n+ {b}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    fn root() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
    }

    /// Archives and dashboards depend on every PMID's name, type, semantics, units, indom
    /// and sensitivity: the golden file pins them all, in every layout.
    #[test]
    fn descriptors_match_the_golden_file() {
        let g = golden();
        let conflicts = pmid_conflicts(&g);
        check(
            &root().join("crates/pmdabcc/metrics.golden"),
            g,
            "UPDATE_GOLDEN",
        );
        assert!(
            conflicts.is_empty(),
            "one PMID, two descriptors:\n{}",
            conflicts.join("\n")
        );
    }

    #[test]
    fn docs_are_generated_from_the_specs() {
        for (file, gen) in [
            ("pmda/bcc.conf", conf_sections()),
            ("pmda/pmdabcc.1", man_modules()),
            ("README.md", readme_table()),
        ] {
            let path = root().join(file);
            let doc = std::fs::read_to_string(&path).unwrap();
            let want = splice(&doc, &gen)
                .unwrap_or_else(|| panic!("{file} has no BEGIN MODULES / END MODULES markers"));
            check(&path, want, "UPDATE_DOCS");
        }
    }

    /// Each module's `min_kernel` (the README's kernels column, the man page) is the oldest
    /// kernel of the matrix's expectations (tests/kernels/expected.tsv) from which its default
    /// section runs on every kernel: from the matrix, never guessed.
    #[test]
    fn min_kernels_come_from_the_kernel_matrix() {
        let table = std::fs::read_to_string(root().join("tests/kernels/expected.tsv")).unwrap();
        let version =
            |k: &str| -> Vec<u32> { k.split('.').filter_map(|p| p.parse().ok()).collect() };
        for spec in modules::all() {
            let mut rows: Vec<(Vec<u32>, &str, &str)> = table
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let f: Vec<&str> = l.split('\t').collect();
                    (f.get(1) == Some(&spec.name))
                        .then(|| (version(f[0]), f[0], f.get(2).copied().unwrap_or("")))
                })
                .collect();
            assert!(
                !rows.is_empty(),
                "{}: no [{}] section in tests/kernels/expected.tsv",
                spec.name,
                spec.name
            );
            rows.sort();
            let from = rows
                .iter()
                .rposition(|r| r.2 != "running")
                .map_or(0, |i| i + 1);
            let want = rows.get(from).map(|r| r.1);
            assert_eq!(
                spec.min_kernel, want,
                "{}: min_kernel disagrees with the kernel matrix",
                spec.name
            );
        }
    }

    #[test]
    fn conflicting_descriptors_are_found() {
        let g = "149.3.0 bcc.a u64 counter count indom=none public\n149.3.0 bcc.b u32 instant count indom=none public\n";
        assert_eq!(pmid_conflicts(g).len(), 1);
    }

    #[test]
    fn splice_keeps_the_markers() {
        let d = "a\n# BEGIN MODULES x\nold\n# END MODULES\nb\n";
        assert_eq!(
            splice(d, "new\n").unwrap(),
            "a\n# BEGIN MODULES x\nnew\n# END MODULES\nb\n"
        );
    }
}
