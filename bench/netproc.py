#!/usr/bin/python3
"""netproc's costs (bench/netproc.sh; docs/BENCHMARKS.md, "netproc"):

- kernel: in-kernel ns per event of the module's sock_send_length / sock_recv_length
  programs against the floor, do-nothing programs on the same tracepoints
  (bench/floor/floor.bpf.c), both attached at once, from the kernel's BPF statistics over a
  known loopback workload: ROUNDS times N TCP sends and receives and N UDP sends and
  receives on 127.0.0.1 and on ::1, from this process.
- scale: fetch cost per process with 1,000 and 10,000 live processes that each sent TCP and
  UDP bytes (bench/procs.c), so netproc has that many instances: pmFetch of all eight
  bcc.proc.net.* metrics (every instance) through pmcd, timed; per instance = median fetch
  time / instances; also one metric alone (bcc.proc.net.tcp.send.bytes). The first fetch
  after the processes appeared (the agent names each new process then) is given apart.

Uses bench.py's agent handling, lock and floor. Holds the shared pmcd lock
(/tmp/pcp-bcc-e2e.lock) for each part and leaves the agent with its default configuration.
Asserts nothing; prints a table and, with --write, puts it into docs/BENCHMARKS.md and
bench/BENCHMARKS.md.in between the netproc markers."""

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import bpfutil  # noqa: E402
from bench import log, med, spread, fmt  # noqa: E402

from pcp import pmapi  # noqa: E402
import cpmapi as c_api  # noqa: E402

PROCS_BIN = os.path.join(bench.TARGET, "bench", "procs")
FIELDS = ["tcp.send.calls", "tcp.send.bytes", "tcp.recv.calls", "tcp.recv.bytes",
          "udp.send.calls", "udp.send.bytes", "udp.recv.calls", "udp.recv.bytes"]
METRICS = ["bcc.proc.net." + f for f in FIELDS]
HOOKS = {"send": ("np_send", "floor_sock_send_length"), "recv": ("np_recv", "floor_sock_recv_length")}
BEGIN, END = "<!-- netproc:begin -->", "<!-- netproc:end -->"


def configure(setup):
    """This agent with netproc alone, default options; waits until it runs."""
    with open(bench.BCC_DIR + "/bcc.conf", "w") as f:
        f.write("[pmda]\nmodules = netproc\nprefix = bcc.\nmodule_failure_fatal = False\n\n[netproc]\nmodule = netproc\ncluster = 40\n")
    bench.restart_agent("bcc")
    t0 = time.time()
    while time.time() - t0 < 60:
        out = bench.run(["pminfo", "-f", "bcc.agent.modules.state"], check=False)
        if '"netproc"] value "running"' in out:
            return
        time.sleep(0.1)
    raise RuntimeError("netproc did not start: %s" % out)


def loopback_workload(n):
    """n TCP send+recv pairs of 1,000 bytes and n UDP sendto+recvfrom pairs of 100 bytes,
    on 127.0.0.1 and on ::1. Returns the calls made per direction (each moved data)."""
    for af, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        ls = socket.socket(af)
        ls.bind((host, 0))
        ls.listen(1)
        c = socket.create_connection((host, ls.getsockname()[1]))
        s, _ = ls.accept()
        data = b"t" * 1000
        for _ in range(n):
            c.sendall(data)
            got = 0
            while got < len(data):
                got += len(s.recv(65536))
        c.close(), s.close(), ls.close()
        u1, u2 = socket.socket(af, socket.SOCK_DGRAM), socket.socket(af, socket.SOCK_DGRAM)
        u1.bind((host, 0))
        dst = u1.getsockname()
        for _ in range(n):
            u2.sendto(b"u" * 100, dst)
            u1.recvfrom(65536)
        u1.close(), u2.close()
    return 4 * n


def kernel_part(setup, rounds, n):
    """ns per event of netproc's programs and of the floor's, per round."""
    out = {k: {"netproc": [], "floor": [], "runs": [], "calls": []} for k in HOOKS}
    with bench.Lock():
        setup.ensure_installed()
        try:
            configure(setup)
            with bench.Floor() as fl:
                ids = {"floor": bpfutil.bpf_objects(fl.pid)[0], "netproc": bpfutil.bpf_objects(bench.pid_of("bcc"))[0]}
                for r in range(rounds):
                    log("netproc kernel: round %d/%d, %d loopback calls each way" % (r + 1, rounds, 4 * n))
                    calls = {}
                    deltas = bench.bpf_stats_window(set().union(*ids.values()), lambda: calls.setdefault("n", loopback_workload(n)))
                    for hook, (mine, floor) in HOOKS.items():
                        for who, prefix in (("netproc", mine), ("floor", floor)):
                            hits = [(name, dc, dt) for i, (name, dc, dt) in deltas.items() if i in ids[who] and name.startswith(prefix) and dc > 0]
                            if len(hits) != 1:
                                raise RuntimeError("%s: expected one running %s* program, got %s" % (who, prefix, hits))
                            _, dc, dt = hits[0]
                            out[hook][who].append(dt / dc)
                            if who == "netproc":
                                out[hook]["runs"].append(dc)
                        out[hook]["calls"].append(calls["n"])
        finally:
            setup.restore()
    return out


class Procs:
    """bench/procs.c: n live processes that each sent TCP and UDP bytes."""

    def __init__(self, n):
        self.p = subprocess.Popen([PROCS_BIN, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if line.split() != ["ready", str(n)]:
            self.close()
            raise RuntimeError("bench/procs %d: %r" % (n, line))

    def close(self):
        self.p.stdin.close()
        self.p.wait(120)


def scale_point(label, fetches):
    """Timed fetches of every netproc metric; the first one (cold) apart."""
    ctx = pmapi.pmContext(c_api.PM_CONTEXT_HOST, "local:")
    pmids = ctx.pmLookupName(METRICS)
    agent = bench.pid_of("bcc")
    t = time.perf_counter_ns()
    res = ctx.pmFetch(pmids)
    cold = (time.perf_counter_ns() - t) / 1000
    inst = res.contents.get_numval(0)
    values = sum(res.contents.get_numval(i) for i in range(len(pmids)))
    ctx.pmFreeResult(res)
    for _ in range(3):
        ctx.pmFreeResult(ctx.pmFetch(pmids))
    c0 = bench.cpu_ns(agent)
    times = bench.timed_fetches(ctx, pmids, fetches)
    c1 = bench.cpu_ns(agent)
    m = statistics.median(times) / 1000
    one = ctx.pmLookupName(METRICS[1:2])
    m1 = statistics.median(bench.timed_fetches(ctx, one, fetches)) / 1000
    rss, hwm = bench.mem_kb(agent)
    row = {"label": label, "instances": inst, "values": values, "cold_us": cold, "fetch_us": m,
           "p99_us": bench.pctl(times, 99) / 1000, "per_inst_us": m / inst if inst else None,
           "agent_cpu_us": (c1[0] - c0[0]) / fetches / 1000, "rss_kb": rss,
           "one_us": m1, "one_per_inst_us": m1 / inst if inst else None}
    log("netproc scale %s: %s" % (label, row))
    return row


def scale_part(setup, sizes, fetches):
    rows = []
    with bench.Lock():
        setup.ensure_installed()
        try:
            configure(setup)
            time.sleep(0.5)
            rows.append(scale_point(0, fetches))
            for n in sizes:
                log("netproc scale: %d processes" % n)
                p = Procs(n)
                try:
                    rows.append(scale_point(n, fetches))
                finally:
                    p.close()
        finally:
            setup.restore()
    return rows


def cell(xs, d=1):
    m = med(xs)
    lo, hi = spread(xs)
    if m is None:
        return "n/a"
    return fmt(m, d) if lo == hi else "%s (%s–%s)" % (fmt(m, d), fmt(lo, d), fmt(hi, d))


def report(k, rows, args, elapsed):
    L = []
    w = L.append
    w("Run of %s: kernel %s, %d CPUs; PCP %s; agent commit %s; `%s`; took %.0f s." % (
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), platform.release(), os.cpu_count(),
        bench.run(["pminfo", "-f", "pmcd.version"]).split('"')[1],
        bench.run(["git", "-C", bench.REPO, "describe", "--always", "--dirty"]).strip(), args.cmdline, elapsed))
    w("")
    if k:
        w("| in-kernel cost per event (median of %d rounds, min–max) | netproc, ns | floor, ns | netproc / floor | program runs per round (workload calls) |" % args.rounds)
        w("|---|---|---|---|---|")
        for hook, v in k.items():
            ratio = [a / b for a, b in zip(v["netproc"], v["floor"])]
            w("| sock_%s_length | %s | %s | %s | %s (%s) |" % (hook, cell(v["netproc"]), cell(v["floor"]), cell(ratio, 2), fmt(med(v["runs"])), fmt(med(v["calls"]))))
        w("")
    if rows:
        w("| live processes | netproc instances | values per fetch | first fetch, ms | fetch median / p99, ms | per instance, µs | marginal per instance, µs | agent CPU per fetch, ms | one metric (%s): fetch ms; per instance µs | agent RSS, MiB |" % METRICS[1])
        w("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            mg = (r["fetch_us"] - rows[0]["fetch_us"]) / (r["instances"] - rows[0]["instances"]) if r is not rows[0] and r["instances"] > rows[0]["instances"] else None
            w("| %s | %s | %s | %.2f | %.2f / %.2f | %s | %s | %.2f | %.2f; %s | %.1f |" % (
                fmt(r["label"]), fmt(r["instances"]), fmt(r["values"]), r["cold_us"] / 1000, r["fetch_us"] / 1000, r["p99_us"] / 1000,
                fmt(r["per_inst_us"], 3) if r["per_inst_us"] else "n/a", fmt(mg, 3) if mg else "—", r["agent_cpu_us"] / 1000,
                r["one_us"] / 1000, fmt(r["one_per_inst_us"], 3) if r["one_per_inst_us"] else "n/a", r["rss_kb"] / 1024))
    return "\n".join(L)


def write_doc(text):
    for path in (os.path.join(bench.REPO, "bench", "BENCHMARKS.md.in"), os.path.join(bench.REPO, "docs", "BENCHMARKS.md")):
        with open(path) as f:
            doc = f.read()
        a, b = doc.find(BEGIN), doc.find(END)
        if a < 0 or b < a:
            raise RuntimeError("%s has no %s … %s markers" % (path, BEGIN, END))
        with open(path, "w") as f:
            f.write(doc[:a + len(BEGIN)] + "\n" + text + "\n" + doc[b:])
        log("wrote %s" % path)


def main():
    ap = argparse.ArgumentParser(description="netproc: in-kernel cost per event and fetch cost at scale")
    ap.add_argument("--parts", default="kernel,scale")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20000, help="TCP and UDP send/recv pairs per address family per round")
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--fetches", type=int, default=50)
    ap.add_argument("--write", action="store_true", help="put the table into docs/BENCHMARKS.md and bench/BENCHMARKS.md.in")
    ap.add_argument("--cmdline", default="bench/netproc.sh")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    setup = bench.Setup()
    t0 = time.time()
    k = kernel_part(setup, args.rounds, args.calls) if "kernel" in parts else None
    rows = scale_part(setup, [int(x) for x in args.sizes.split(",")], args.fetches) if "scale" in parts else None
    text = report(k, rows, args, time.time() - t0)
    os.makedirs(os.path.join(bench.TARGET, "bench"), exist_ok=True)
    with open(os.path.join(bench.TARGET, "bench", "netproc.json"), "w") as f:
        json.dump({"kernel": k, "scale": rows}, f, indent=1)
    print(text)
    if args.write:
        write_doc(text)


if __name__ == "__main__":
    main()
