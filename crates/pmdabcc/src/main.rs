//! `pmdabcc`: the bcc PMDA (domain 149), started by pmcd as a pipe agent.
//! Never prints to stdout while serving: stdout is the channel to pmcd.

use anyhow::{bail, Context, Result};
use pcp_pmda::{Pmda, PmdaOptions};
use pmdabcc::agent::BccAgent;
use pmdabcc::config::Config;
use std::path::PathBuf;
use std::time::Instant;

const DOMAIN: u32 = 149;

struct Args {
    domain: u32,
    logfile: String,
    config: PathBuf,
    check: bool,
    list: bool,
    send_ready: bool,
    probe: Option<pmdabcc::probe::Options>,
}

fn usage() -> String {
    "usage: pmdabcc [-d domain] [-l logfile] [-c bcc.conf] [-D debug] [-N]\n       (-N: do not send PM_ERR_PMDAREADY; for dbpmda, which does not expect it)\n       pmdabcc --check [-c bcc.conf]   (validate the configuration and exit)\n       pmdabcc --list-modules\n       pmdabcc --probe [-c bcc.conf] [--all-hooks] [--workload CMD | --watch SECONDS]\n       (start every module on this kernel without pmcd, report, release; see pmdabcc(1))".into()
}

fn parse_args() -> Result<Args> {
    let dir = pcp_pmda::config_var("PCP_PMDAS_DIR").unwrap_or_else(|| "/var/lib/pcp/pmdas".into());
    let mut a = Args {
        domain: DOMAIN,
        logfile: "bcc.log".into(),
        config: PathBuf::from(format!("{dir}/bcc/bcc.conf")),
        check: false,
        list: false,
        send_ready: true,
        probe: None,
    };
    let mut probe = pmdabcc::probe::Options::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .with_context(|| format!("option {name} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "-d" => a.domain = val("-d")?.parse().context("-d: domain must be a number")?,
            "-l" => a.logfile = val("-l")?,
            "-c" => a.config = PathBuf::from(val("-c")?),
            "-D" | "-U" => {
                val(&arg)?;
            }
            "-N" | "--no-ready" => a.send_ready = false,
            "--check" => a.check = true,
            "--list-modules" => a.list = true,
            "--probe" => a.probe = Some(Default::default()),
            "--all-hooks" => probe.all_hooks = true,
            "--workload" => probe.workload = Some(val("--workload")?),
            "--watch" => {
                let s: f64 = val("--watch")?
                    .parse()
                    .context("--watch: seconds must be a number")?;
                probe.watch = Some(std::time::Duration::from_secs_f64(s.max(0.0)));
            }
            "-h" | "--help" => bail!("{}", usage()),
            _ => bail!("unknown option {arg:?}\n{}", usage()),
        }
    }
    if let Some(p) = a.probe.as_mut() {
        *p = pmdabcc::probe::Options {
            config: a.config.clone(),
            ..probe
        };
    } else if probe.all_hooks || probe.workload.is_some() || probe.watch.is_some() {
        bail!(
            "--all-hooks, --workload and --watch go with --probe\n{}",
            usage()
        );
    }
    if a.domain == 0 || a.domain > pcp_pmda::MAX_DOMAIN {
        bail!(
            "-d: domain {} out of range 1-{}",
            a.domain,
            pcp_pmda::MAX_DOMAIN
        );
    }
    Ok(a)
}

/// `--check`: every problem the agent would log at start, on stderr; exit 1 if any.
fn check(path: &std::path::Path) -> Result<()> {
    let cfg = Config::load(path)?;
    let agent = BccAgent::new(cfg, Instant::now());
    let mut bad = 0;
    if let Err(e) = pmdabcc::config::check_trusted(path) {
        eprintln!("{e}");
        bad += 1;
    }
    for e in agent.config_errors() {
        eprintln!("{e}");
        bad += 1;
    }
    for s in agent.slots() {
        if s.state == pmdabcc::agent::SlotState::Failed {
            let problems = if s.problems.is_empty() {
                std::slice::from_ref(&s.status)
            } else {
                &s.problems[..]
            };
            for p in problems {
                eprintln!("{p}");
                bad += 1;
            }
        }
        if s.state == pmdabcc::agent::SlotState::Unavailable {
            eprintln!("note: {}", s.status);
        }
        for n in &s.notes {
            eprintln!("note: {n}");
        }
    }
    if bad > 0 {
        bail!("{bad} problem(s) in {}", path.display());
    }
    eprintln!("{}: ok", path.display());
    Ok(())
}

fn main() {
    keep_heap_small();
    if let Err(e) = run() {
        // Before the PMDA starts this is the terminal; after, it is the PCP log.
        eprintln!("pmdabcc: {e:#}");
        std::process::exit(1);
    }
}

/// Loading a module parses the kernel's BTF: megabytes allocated and freed at once. glibc
/// would raise its mmap threshold on the first such free, put the next big buffers in the
/// heap, and then keep the freed heap resident (its trim threshold follows); a fixed
/// threshold keeps them mmap'd and given back, about 600 KiB less resident for good.
fn keep_heap_small() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a malloc tunable; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn run() -> Result<()> {
    let started = Instant::now();
    let args = parse_args()?;
    // libbpf's messages go to the log (and to status lines on failure), never to stdout.
    pmdabcc::bpf::bridge_libbpf_log();
    if args.list {
        for m in pmdabcc::modules::all() {
            println!(
                "{:<12} cluster {:>4}  {}",
                m.name,
                m.default_cluster.map_or("-".into(), |c| c.to_string()),
                m.summary
            );
            for o in m.options {
                println!(
                    "    {:<18} {} (default {:?})",
                    o.key,
                    o.kind.describe(),
                    o.default
                );
            }
        }
        return Ok(());
    }
    if args.check {
        return check(&args.config);
    }
    if let Some(p) = &args.probe {
        // A CLI mode, not under pmcd: stdout is the report.
        std::process::exit(pmdabcc::probe::run(p)?);
    }
    // From here on stdout belongs to pmcd and stderr is the log file.
    let pmda = Pmda::new(PmdaOptions {
        name: "bcc".into(),
        domain: args.domain,
        logfile: args.logfile.clone(),
        authorize: true,
        send_ready: args.send_ready,
    })?;
    pcp_pmda::init_logger("pmdabcc", log::LevelFilter::Info);
    log::info!(
        "pmdabcc {} starting, config {}",
        env!("CARGO_PKG_VERSION"),
        args.config.display()
    );
    let mut agent = match pmdabcc::agent::load_config(&args.config) {
        Ok(c) => BccAgent::new(c, started),
        Err(why) => BccAgent::unconfigured(&args.config, why, started),
    };
    let (metrics, indoms) = agent.table();
    pmda.run(Box::new(agent), metrics, indoms)?;
    Ok(())
}
