#!/usr/bin/python3
"""The pcp-bcc-pmda benchmark suite: this agent (pmdabcc, domain 149) against PCP's C/libbpf
pmdabpf (domain 157), side by side under the one pmcd, alternating within each round.
Run through bench/run.sh (which builds first); see docs/BENCHMARKS.md for the method.

Every change to pmcd's agents happens while holding the e2e lock (/tmp/pcp-bcc-e2e.lock),
one figure group at a time, and each group puts the default configurations back before it
releases the lock."""

import argparse
import datetime
import fcntl
import filecmp
import json
import mmap
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpfutil  # noqa: E402

from pcp import pmapi  # noqa: E402
import cpmapi as c_api  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PMDAS = "/var/lib/pcp/pmdas"
BCC_DIR = PMDAS + "/bcc"
BPF_DIR = PMDAS + "/bpf"
LOCK = "/tmp/pcp-bcc-e2e.lock"
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
BCC_BIN = os.path.join(TARGET, "release", "pmdabcc")
FLOOR_OBJ = os.path.join(TARGET, "bench", "floor.bpf.o")
DATA = "/var/tmp/pcp-bcc-bench.dat"
ENV = dict(os.environ, PATH="/usr/bin:/bin:/usr/sbin:/sbin:/usr/lib/pcp/bin", PCPQA_SYSTEMD="no")

# The metrics each agent serves per shared module.
SHARED = {
    "runqlat": {"bcc": "bcc.runq.latency", "bpf": "bpf.runq.latency"},
    "biolatency": {"bcc": "bcc.disk.all.latency", "bpf": "bpf.disk.all.latency"},
}
AGENTS = ("bcc", "bpf")
PROC = {"bcc": "pmdabcc", "bpf": "pmdabpf"}


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def run(cmd, check=True, **kw):
    r = subprocess.run(cmd, shell=isinstance(cmd, str), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s%s" % (cmd, r.returncode, r.stdout, r.stderr))
    return r.stdout


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs):
    xs = [x for x in xs if x is not None]
    return (min(xs), max(xs)) if xs else (None, None)


def pctl(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


# ---------------------------------------------------------------- the lock and the agents

class Lock:
    """The shared-pmcd lock, held for one group of figures. Python opens files close-on-exec,
    so no child (and no agent pmcd restarts) inherits it."""

    def __enter__(self):
        self.f = None
        if not os.environ.get("PCP_BCC_E2E_LOCKED"):
            self.f = open(LOCK, "a")
            t = time.time()
            fcntl.flock(self.f, fcntl.LOCK_EX)
            if time.time() - t > 1:
                log("waited %.0f s for the pmcd lock" % (time.time() - t))
        return self

    def __exit__(self, *a):
        if self.f:
            fcntl.flock(self.f, fcntl.LOCK_UN)
            self.f.close()


def pid_of(agent):
    """The live (not zombie) agent process, from /proc."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        if comm == PROC[agent] and st[st.rindex(")") + 2] != "Z":
            return int(d)
    return None


def pmcd_has(agent):
    with open("/etc/pcp/pmcd/pmcd.conf") as f:
        return any(l.split()[:1] == [agent] for l in f)


def module_list():
    out = run([BCC_BIN, "--list-modules"])
    return [l.split()[0] for l in out.splitlines() if l.strip()]


class Setup:
    """Configurations of both agents, and putting the defaults back."""

    def __init__(self):
        with open(BPF_DIR + "/bpf.conf") as f:
            self.bpf_orig = f.read()
        with open(os.path.join(REPO, "pmda", "bcc.conf")) as f:
            self.bcc_default = f.read()

    def bcc_conf(self, modules, options=None, bpf_stats=False):
        options = options or {}
        clusters = {"sysfork": 2, "runqlat": 4, "biolatency": 0, "biotop": 10, "tcplife": 3}
        s = "[pmda]\nmodules = %s\nprefix = bcc.\nprocess_refresh = 60\nmodule_failure_fatal = False\nbpf_stats = %s\n" % (",".join(modules), bpf_stats)
        for m in modules:
            s += "\n[%s]\nmodule = %s\ncluster = %d\n" % (m, m, clusters[m])
            for k, v in options.get(m, {}).items():
                s += "%s = %s\n" % (k, v)
        return s

    def bpf_conf(self, modules):
        """The installed bpf.conf with exactly `modules` (e.g. runqlat) enabled."""
        out, cur = [], None
        for line in self.bpf_orig.splitlines():
            st = line.strip()
            if st.startswith("[") and st.endswith("]"):
                cur = st[1:-1]
            elif cur and st.replace(" ", "").startswith("enabled="):
                line = "enabled = %s" % ("true" if cur[:-3] in modules else "false")
            out.append(line)
        return "\n".join(out) + "\n"

    def ensure_installed(self):
        """Our build as the installed bcc agent (another branch's test run may have installed
        theirs), and pmdabpf installed."""
        if not pmcd_has("bcc") or not os.path.exists(BCC_DIR + "/pmdabcc") or not filecmp.cmp(BCC_BIN, BCC_DIR + "/pmdabcc", shallow=False):
            log("installing this build of the bcc agent")
            conf = "/tmp/pcp-bcc-bench.conf"
            with open(conf, "w") as f:
                f.write(self.bcc_default)
            run(["bash", "-c", ". scripts/lib.sh && BCC_CONF=%s deploy_install" % conf], cwd=REPO)
        if not pmcd_has("bpf"):
            log("installing pmdabpf")
            run("./Install </dev/null", cwd=BPF_DIR)

    def configure(self, bcc_modules, bpf_modules, bcc_options=None, restart=True):
        with open(BCC_DIR + "/bcc.conf", "w") as f:
            f.write(self.bcc_conf(bcc_modules, bcc_options))
        with open(BPF_DIR + "/bpf.conf", "w") as f:
            f.write(self.bpf_conf(bpf_modules))
        if restart:
            for a in AGENTS:
                restart_agent(a)
            with IoLoad():
                for a, mods in (("bcc", bcc_modules), ("bpf", bpf_modules)):
                    wait_values(agent_metrics(a, mods) or ["pmcd.numagents"], 60, positive=False)

    def restore(self):
        with open(BCC_DIR + "/bcc.conf", "w") as f:
            f.write(self.bcc_default)
        with open(BPF_DIR + "/bpf.conf", "w") as f:
            f.write(self.bpf_orig)
        for a in AGENTS:
            restart_agent(a)
        wait_values(["bcc.agent.startup_time"], 60, positive=False)


def agent_metrics(agent, modules):
    ms = []
    for m in modules:
        if m in SHARED:
            ms.append(SHARED[m][agent])
        # Their per-process metrics have no instances until a process does I/O; the module's
        # singular counters have a value as soon as it serves.
        elif m == "biotop":
            ms.append("bcc.proc.io.perdev_dropped")
        elif m == "tcplife":
            ms.append("bcc.proc.io.net.tcp.events_lost")
    return ms


def kill_agent(agent):
    pid = pid_of(agent)
    if pid:
        os.kill(pid, signal.SIGKILL)
        for _ in range(500):
            if pid_of(agent) != pid:
                break
            time.sleep(0.002)
    # pmcd notices a dead agent at its next request to it
    run(["pminfo", "-f", "bcc.agent.version" if agent == "bcc" else "bpf"], check=False)
    return pid


def restart_agent(agent):
    """Kills the agent and has pmcd start it again; returns the time of the first restart
    signal. pmcd restarts dead agents on SIGHUP, but only those it already knows are dead
    (it learns that on its next exchange with the agent): so signal again until a new
    process is up."""
    old = kill_agent(agent)
    t0 = time.perf_counter()
    for _ in range(30):
        run(["pmsignal", "-a", "-s", "HUP", "pmcd"])
        for _ in range(500):
            p = pid_of(agent)
            if p and p != old:
                return t0
            time.sleep(0.002)
        try:
            ctx = pmapi.pmContext(c_api.PM_CONTEXT_HOST, "local:")
            ctx.pmLookupName([agent + ".agent.version" if agent == "bcc" else "bpf.runq.latency"])
        except pmapi.pmErr:
            pass
    raise RuntimeError("pmcd did not restart %s" % PROC[agent])


def fetch_values(ctx, names):
    """{name: [values]} for the metrics that have values now; None if a name is unknown."""
    pmids = ctx.pmLookupName(names)
    descs = ctx.pmLookupDescs(pmids)
    res = ctx.pmFetch(pmids)
    try:
        out = {}
        for i, name in enumerate(names):
            vals = []
            for j in range(res.contents.get_numval(i)):
                a = ctx.pmExtractValue(res.contents.get_valfmt(i), res.contents.get_vlist(i, j), descs[i].contents.type, c_api.PM_TYPE_DOUBLE)
                vals.append(a.d)
            out[name] = vals
        return out
    finally:
        ctx.pmFreeResult(res)


def timed_fetches(ctx, pmids, n):
    """Fetches pmids n times; returns how long each fetch took, in ns of wall-clock time."""
    times = []
    for _ in range(n):
        t = time.perf_counter_ns()
        res = ctx.pmFetch(pmids)
        times.append(time.perf_counter_ns() - t)
        ctx.pmFreeResult(res)
    return times


def wait_values(names, timeout, positive=True, t0=None, ctx=None):
    """Polls (one client context, every 5 ms) until every metric has a value (> 0 with
    `positive`: the histogram has counted an event); returns seconds since t0."""
    t0 = t0 if t0 is not None else time.perf_counter()
    own = ctx is None
    last = None
    while time.perf_counter() - t0 < timeout:
        try:
            if ctx is None:
                ctx = pmapi.pmContext(c_api.PM_CONTEXT_HOST, "local:")
            v = fetch_values(ctx, names)
            if all(v[n] and (not positive or any(x > 0 for x in v[n])) for n in names):
                return time.perf_counter() - t0
        except pmapi.pmErr as e:
            last = e
            # A context that saw an agent die keeps reporting PM_ERR_IPC for it: start afresh.
            if own:
                ctx = None
        time.sleep(0.005)
    raise RuntimeError("no values for %s within %d s (%s)" % (names, timeout, last))


# ---------------------------------------------------------------- workloads

class IoLoad:
    """Background block I/O: one 4 KiB O_DIRECT write every `period` seconds, so the disk
    histograms of both agents have events to count."""

    def __init__(self, period=0.003):
        self.period, self.stop_ev = period, threading.Event()

    def __enter__(self):
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()
        return self

    def loop(self):
        fd = os.open(DATA, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
        buf = mmap.mmap(-1, 4096)
        i = 0
        try:
            while not self.stop_ev.is_set():
                os.pwrite(fd, buf, (i % 256) * 4096)
                i += 1
                self.stop_ev.wait(self.period)
        finally:
            os.close(fd)

    def __exit__(self, *a):
        self.stop_ev.set()
        self.t.join()


def fixed_workload(smoke):
    """The same for every agent: direct 4 KiB writes, then perf's scheduler messaging bench."""
    n = 300 if smoke else 3000
    run(["dd", "if=/dev/zero", "of=" + DATA, "bs=4k", "count=%d" % n, "oflag=direct", "conv=notrunc"])
    run(["perf", "bench", "sched", "messaging", "-g", "2" if smoke else "5", "-l", "50" if smoke else "300"])


class Floor:
    """The do-nothing programs (bench/floor/floor.bpf.c), attached while alive."""

    def __enter__(self):
        self.p = subprocess.Popen([sys.executable, os.path.join(REPO, "bench", "bpfutil.py"), "floor", FLOOR_OBJ], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
        line = self.p.stdout.readline()
        if not line.startswith("attached"):
            self.p.kill()
            raise RuntimeError("floor programs did not attach: %r" % line)
        self.pid = self.p.pid
        return self

    def __exit__(self, *a):
        self.p.stdin.close()
        self.p.wait(10)


# ---------------------------------------------------------------- process measurements

def cpu_ns(pid):
    """On-CPU time of all the process's threads, ns (schedstat), and utime+stime ticks."""
    total = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return total, ticks


def mem_kb(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for l in f:
            if l.startswith(("VmRSS:", "VmHWM:")):
                out[l.split(":")[0]] = int(l.split()[1])
    return out["VmRSS"], out["VmHWM"]


def bpf_prog_stats(ids):
    """{id: (name, run_cnt, run_time_ns)} from bpftool (full names come from BTF)."""
    progs = json.loads(run(["bpftool", "prog", "show", "-j"]))
    return {p["id"]: (p.get("name", "?"), p.get("run_cnt", 0), p.get("run_time_ns", 0)) for p in progs if p["id"] in ids}


def bpf_stats_window(ids, workload):
    """Runs workload() with the kernel's BPF statistics on (kernel.bpf_stats_enabled = 1,
    put back to its previous value after); returns {id: (name, Δrun_cnt, Δrun_time_ns)}
    of the programs `ids` over it."""
    path = "/proc/sys/kernel/bpf_stats_enabled"
    with open(path) as f:
        prev = f.read().strip()
    with open(path, "w") as f:
        f.write("1")
    try:
        s0 = bpf_prog_stats(ids)
        workload()
        s1 = bpf_prog_stats(ids)
    finally:
        with open(path, "w") as f:
            f.write(prev)
    return {i: (s1[i][0], s1[i][1] - s0[i][1], s1[i][2] - s0[i][2]) for i in s1 if i in s0}


def map_detail(maps):
    """[(name, type, max_entries, memlock bytes)] of the given map ids, largest first."""
    out = []
    for m in json.loads(run(["bpftool", "map", "show", "-j"])):
        if m["id"] in maps:
            out.append((m.get("name", "?"), m.get("type", "?"), m.get("max_entries", 0), maps[m["id"]]))
    return sorted(out, key=lambda x: -x[3])


HOOKS = [("sched_switch", ("switch", "swith")), ("sched_wakeup_new", ("wakeup_new",)), ("sched_wakeup", ("wakeup",)),
         ("block_rq_insert", ("insert",)), ("block_rq_issue", ("issue",)), ("block_rq_complete", ("complete",))]


def hook_of(name):
    for hook, keys in HOOKS:
        if any(k in name for k in keys):
            return hook
    return name


# ---------------------------------------------------------------- figures

class Bench:
    def __init__(self, args):
        self.args, self.smoke = args, args.smoke
        self.rounds = 1 if args.smoke else args.rounds
        self.setup = Setup()
        self.mods = module_list()
        self.res = {"notes": []}
        self.t_start = time.time()

    def figure1_per_module(self):
        """Start-up of each agent with one module."""
        out = {}
        with Lock():
            self.setup.ensure_installed()
            try:
                with IoLoad():
                    for mod in ("runqlat", "biolatency"):
                        log("figure 1: start-up, %s only" % mod)
                        self.setup.configure([mod], [mod])
                        out[mod] = {a: [] for a in AGENTS}
                        for r in range(self.rounds):
                            for a in (AGENTS if r % 2 == 0 else AGENTS[::-1]):
                                out[mod][a].append(self.time_start(a, [mod]))
            finally:
                self.setup.restore()
        self.res["startup_module"] = out

    def time_start(self, agent, modules):
        names = agent_metrics(agent, modules)
        ctx = pmapi.pmContext(c_api.PM_CONTEXT_HOST, "local:")
        time.sleep(0.2)
        t0 = restart_agent(agent)
        return wait_values(names, 60, t0=t0, ctx=ctx)

    def figures_1_to_4(self):
        """Per round, both agents with runqlat+biolatency: start-up (1), fetch cost (3),
        memory (2), in-kernel cost per event (4); the agents alternate in each."""
        both = ["runqlat", "biolatency"]
        st = {a: [] for a in AGENTS}
        fetch = {a: {"med": [], "p99": [], "cpu_ticks": [], "cpu_ns": [], "values": None} for a in AGENTS}
        mem = {a: {"rss": [], "hwm": [], "maps": [], "map_bytes": [], "progs": []} for a in AGENTS}
        kern = {}
        n = 200 if self.smoke else 2000
        with Lock():
            self.setup.ensure_installed()
            try:
                self.setup.configure(both, both)
                for r in range(self.rounds):
                    order = AGENTS if r % 2 == 0 else AGENTS[::-1]
                    log("round %d/%d: start-up, fetch, memory, kernel (order %s)" % (r + 1, self.rounds, "/".join(order)))
                    with IoLoad():
                        for a in order:
                            st[a].append(self.time_start(a, both))
                    # figure 3: one context per agent, names looked up once, n timed fetches
                    with IoLoad(0.01):
                        for a in order:
                            ctx = pmapi.pmContext(c_api.PM_CONTEXT_HOST, "local:")
                            pmids = ctx.pmLookupName([SHARED[m][a] for m in both])
                            for _ in range(50):
                                ctx.pmFreeResult(ctx.pmFetch(pmids))
                            pid = pid_of(a)
                            c0 = cpu_ns(pid)
                            times = timed_fetches(ctx, pmids, n)
                            c1 = cpu_ns(pid)
                            res = ctx.pmFetch(pmids)
                            fetch[a]["values"] = sum(res.contents.get_numval(i) for i in range(len(pmids)))
                            ctx.pmFreeResult(res)
                            fetch[a]["med"].append(statistics.median(times) / 1000)
                            fetch[a]["p99"].append(pctl(times, 99) / 1000)
                            fetch[a]["cpu_ns"].append((c1[0] - c0[0]) / n * 1000 / 1e6)  # ms per 1000 fetches
                            fetch[a]["cpu_ticks"].append((c1[1] - c0[1]) * 1000.0 / os.sysconf("SC_CLK_TCK") * 1000 / n)
                    # figure 2: memory after start-up and the fetches
                    for a in order:
                        pid = pid_of(a)
                        rss, hwm = mem_kb(pid)
                        progs, maps = bpfutil.bpf_objects(pid)
                        mem[a]["rss"].append(rss)
                        mem[a]["hwm"].append(hwm)
                        mem[a]["maps"].append(len(maps))
                        mem[a]["map_bytes"].append(sum(maps.values()))
                        mem[a]["progs"].append(len(progs))
                        mem[a]["detail"] = map_detail(maps)
                    # figure 4: kernel BPF statistics over the same fixed workload
                    with Floor() as fl:
                        ids = {"floor": bpfutil.bpf_objects(fl.pid)[0]}
                        for a in AGENTS:
                            ids[a] = bpfutil.bpf_objects(pid_of(a))[0]
                        deltas = bpf_stats_window(set().union(*ids.values()), lambda: fixed_workload(self.smoke))
                        for who, pids in ids.items():
                            tot = kern.setdefault((who, "*total"), {"per_event": [], "cnt": [], "ns": []})
                            tot_ns = tot_cnt = 0
                            for i in pids:
                                if i not in deltas:
                                    continue
                                name, dc, dt = deltas[i]
                                e = kern.setdefault((who, name), {"per_event": [], "cnt": [], "ns": []})
                                e["cnt"].append(dc)
                                e["ns"].append(dt)
                                e["per_event"].append(dt / dc if dc else None)
                                if who != "floor":
                                    tot_ns += dt
                                    tot_cnt += dc
                            tot["ns"].append(tot_ns)
                            tot["cnt"].append(tot_cnt)
                            tot["per_event"].append(None)
            finally:
                self.setup.restore()
        self.res["startup_all"] = st
        self.res["fetch"] = fetch
        self.res["mem"] = mem
        self.res["kernel"] = {"%s|%s" % k: v for k, v in kern.items()}

    def figure5(self):
        out = {"floor": {}, "perdisk": {}, "biotop": None, "tcplife": None}
        sizes = [100, 1000] if self.smoke else [100, 1000, 10000, 100000]
        log("figure 5: batched map read floor")
        for n in sizes:
            out["floor"][n] = bpfutil.batch_read_floor(n)[0] / 1000  # us per element
        with Lock():
            self.setup.ensure_installed()
            try:
                out["perdisk"] = self.perdisk_scale()
                for mod in ("biotop", "tcplife"):
                    if mod in self.mods:
                        out[mod] = self.proc_scale(mod, sizes)
            finally:
                self.setup.restore()
                cleanup_loops()
        self.res["scale"] = out

    def perdisk_scale(self):
        """biolatency per_disk: fetch time of bcc.disk.dev.latency against the disks (loop
        devices) that have done I/O. pmdabpf has no per-disk histogram."""
        counts = [0, 4] if self.smoke else [0, 16, 64]
        rows = []
        self.setup.configure(["biolatency"], [], {"biolatency": {"per_disk": "True"}})
        loops = []
        for k in counts:
            log("figure 5: per-disk histograms with %d loop devices" % k)
            while len(loops) < k:
                back = "/var/tmp/pcp-bcc-bench-loop%d.img" % len(loops)
                with open(back, "wb") as f:
                    f.truncate(1 << 20)
                loops.append(run(["losetup", "-f", "--show", back]).strip())
            for dev in loops:
                fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
                os.pwrite(fd, mmap.mmap(-1, 4096), 0)
                os.close(fd)
            with IoLoad():
                time.sleep(0.5)
            rows.append(self.scale_point("bcc", ["bcc.disk.dev.latency"], k))
        return rows

    def scale_point(self, agent, names, label):
        ctx = pmapi.pmContext(c_api.PM_CONTEXT_HOST, "local:")
        pmids = ctx.pmLookupName(names)
        n = 20 if self.smoke else 200
        for _ in range(5):
            ctx.pmFreeResult(ctx.pmFetch(pmids))
        times = timed_fetches(ctx, pmids, n)
        res = ctx.pmFetch(pmids)
        inst = sum(res.contents.get_numval(i) for i in range(len(pmids)))
        ctx.pmFreeResult(res)
        rss, hwm = mem_kb(pid_of(agent))
        m = statistics.median(times) / 1000
        return {"label": label, "instances": inst, "fetch_us": m, "p99_us": pctl(times, 99) / 1000, "per_inst_us": m / inst if inst else None, "rss_kb": rss, "hwm_kb": hwm}

    def proc_scale(self, mod, sizes):
        """biotop / tcplife: N live per-process instances from N short processes."""
        rows = []
        for n in sizes:
            log("figure 5: %s with %d processes" % (mod, n))
            try:
                if mod == "biotop":
                    opts = {"max_entries": max(10240, 2 * n + 1000), "retention": 3600}
                    names = ["bcc.proc.io.perdev_write_bytes"]
                else:
                    opts = {"layout": "process", "map_size": max(16384, 2 * n + 1000), "retention": 3600}
                    names = ["bcc.proc.io.net.tcp.tx"]
                self.setup.configure([mod], [], {mod: opts})
                if mod == "biotop":
                    spawn_writers(n)
                else:
                    spawn_tcp_sessions(n)
                time.sleep(1.5)
                rows.append(self.scale_point("bcc", names, n))
            except Exception as e:  # a failed size is a row saying why, not a lost run
                rows.append({"label": n, "error": str(e)[:200]})
        return rows

    def figure6(self):
        if "tcplife" not in self.mods:
            self.res["loss"] = None
            return
        rates = [1000, 4000] if self.smoke else [1000, 2000, 4000, 8000, 16000, 32000]
        dur = 2 if self.smoke else 5
        rows = []
        with Lock():
            self.setup.ensure_installed()
            try:
                self.setup.configure(["tcplife"], [], {"tcplife": {"layout": "process", "retention": 60}})
                ctx = pmapi.pmContext(c_api.PM_CONTEXT_HOST, "local:")
                names = ["bcc.proc.io.net.tcp.events_lost", "bcc.proc.io.net.tcp.sessions_closed"]
                for rate in rates:
                    log("figure 6: tcplife storm at %d sessions/s" % rate)
                    v0 = fetch_values(ctx, names)
                    stop = threading.Event()

                    def poll():  # the 1 s fetch interval
                        while not stop.wait(1.0):
                            fetch_values(ctx2, names)
                    ctx2 = pmapi.pmContext(c_api.PM_CONTEXT_HOST, "local:")
                    th = threading.Thread(target=poll, daemon=True)
                    th.start()
                    done, took = tcp_storm(rate, dur)
                    stop.set()
                    th.join()
                    time.sleep(1.2)
                    v1 = fetch_values(ctx, names)
                    lost = sum(v1[names[0]]) - sum(v0[names[0]])
                    closed = sum(v1[names[1]]) - sum(v0[names[1]])
                    rows.append({"target": rate, "achieved": done / took, "sessions": done, "closed_seen": closed, "lost": lost})
                    if lost > 0 and len([r for r in rows if r["lost"] > 0]) >= 2:
                        break
            finally:
                self.setup.restore()
        self.res["loss"] = rows


# ---------------------------------------------------------------- generators for figures 5 and 6

def fork_many(n, par, child):
    """Runs child(i) in n short processes, at most `par` alive at once."""
    live = 0
    for i in range(n):
        if live >= par:
            os.wait()
            live -= 1
        if os.fork() == 0:
            try:
                child(i)
            finally:
                os._exit(0)
        live += 1
    while live:
        os.wait()
        live -= 1


def spawn_writers(n, par=64):
    """n short processes, each doing one 4 KiB O_DIRECT write."""
    buf = mmap.mmap(-1, 4096)

    def write(i):
        fd = os.open(DATA, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
        os.pwrite(fd, buf, (i % 256) * 4096)
    fork_many(n, par, write)


def _listener():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4096)
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            try:
                c.recv(64)
            except OSError:
                pass
            c.close()
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    return srv, stop, th


def spawn_tcp_sessions(n, par=64):
    """n short loopback TCP sessions, each from its own process (1 byte sent)."""
    srv, stop, th = _listener()
    port = srv.getsockname()[1]

    def session(_):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"x")
        s.close()
    fork_many(n, par, session)
    stop.set()
    srv.close()
    th.join()


def tcp_storm(rate, dur, workers=4):
    """Short loopback TCP sessions at about `rate` per second for `dur` seconds, from
    `workers` processes; returns (sessions, seconds)."""
    srv, stop, th = _listener()
    port = srv.getsockname()[1]
    per = rate / workers
    t0 = time.time()
    pids = []
    rfd, wfd = os.pipe()
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            k = 0
            start = time.time()
            try:
                os.close(rfd)
                while time.time() - start < dur:
                    due = start + k / per
                    if due > time.time():
                        time.sleep(due - time.time())
                    s = socket.create_connection(("127.0.0.1", port))
                    s.sendall(b"x")
                    s.close()
                    k += 1
            finally:
                os.write(wfd, b"%d\n" % k)
                os._exit(0)
        pids.append(pid)
    os.close(wfd)
    for p in pids:
        os.waitpid(p, 0)
    with os.fdopen(rfd) as f:
        done = sum(int(x) for x in f.read().split())
    took = time.time() - t0
    stop.set()
    srv.close()
    th.join()
    return done, took


def cleanup_loops():
    out = run(["losetup", "-a"], check=False)
    for l in out.splitlines():
        if "pcp-bcc-bench-loop" in l:
            run(["losetup", "-d", l.split(":")[0]], check=False)
    for f in os.listdir("/var/tmp"):
        if f.startswith("pcp-bcc-bench-loop"):
            os.unlink("/var/tmp/" + f)


# ---------------------------------------------------------------- the report

def fmt(x, d=1):
    if x is None:
        return "n/a"
    if isinstance(x, (int,)) or abs(x) >= 100:
        return "{:,.0f}".format(x)
    return ("%%.%df" % d) % x


def cell(xs, d=1):
    m = med(xs)
    lo, hi = spread(xs)
    if m is None:
        return "n/a"
    if lo == hi or len([x for x in xs if x is not None]) < 2:
        return fmt(m, d)
    return "%s (%s–%s)" % (fmt(m, d), fmt(lo, d), fmt(hi, d))


def ratio(a, b):
    a, b = med(a) if isinstance(a, list) else a, med(b) if isinstance(b, list) else b
    if a is None or not b:
        return "n/a"
    return "%.2f" % (a / b)


def marginal(first, r):
    """Fetch time per instance added since the first (smallest) point of a series, µs."""
    di = r["instances"] - first["instances"]
    return (r["fetch_us"] - first["fetch_us"]) / di if di > 0 else None


def report(b, elapsed, cmdline):
    R = b.res
    L = []
    w = L.append
    w("| figure | measure | this agent (bcc) | peer (pmdabpf) | ratio bcc/bpf |")
    w("|---|---|---|---|---|")
    st = R.get("startup_all")
    if st:
        w("| 1 start-up | runqlat+biolatency, restart → values of all, ms | %s | %s | %s |" % (cell([x * 1000 for x in st["bcc"]]), cell([x * 1000 for x in st["bpf"]]), ratio(st["bcc"], st["bpf"])))
    for mod, v in (R.get("startup_module") or {}).items():
        w("| 1 start-up | %s only, ms | %s | %s | %s |" % (mod, cell([x * 1000 for x in v["bcc"]]), cell([x * 1000 for x in v["bpf"]]), ratio(v["bcc"], v["bpf"])))
    m = R.get("mem")
    if m:
        for key, label in (("rss", "VmRSS, KiB"), ("hwm", "VmHWM (peak RSS), KiB"), ("map_bytes", "BPF maps memlock, KiB")):
            f = (lambda xs: [x / 1024 for x in xs]) if key == "map_bytes" else (lambda xs: xs)
            w("| 2 memory | %s | %s | %s | %s |" % (label, cell(f(m["bcc"][key])), cell(f(m["bpf"][key])), ratio(m["bcc"][key], m["bpf"][key])))
        w("| 2 memory | BPF maps / programs held | %s / %s | %s / %s | |" % (fmt(med(m["bcc"]["maps"])), fmt(med(m["bcc"]["progs"])), fmt(med(m["bpf"]["maps"])), fmt(med(m["bpf"]["progs"]))))
    f3 = R.get("fetch")
    if f3:
        w("| 3 fetch | pmFetch round trip, median, µs (values per fetch: bcc %s, bpf %s) | %s | %s | %s |" % (f3["bcc"]["values"], f3["bpf"]["values"], cell(f3["bcc"]["med"]), cell(f3["bpf"]["med"]), ratio(f3["bcc"]["med"], f3["bpf"]["med"])))
        w("| 3 fetch | pmFetch round trip, p99, µs | %s | %s | %s |" % (cell(f3["bcc"]["p99"]), cell(f3["bpf"]["p99"]), ratio(f3["bcc"]["p99"], f3["bpf"]["p99"])))
        w("| 3 fetch | agent CPU per 1,000 fetches, ms (utime+stime) | %s | %s | %s |" % (cell(f3["bcc"]["cpu_ticks"]), cell(f3["bpf"]["cpu_ticks"]), ratio(f3["bcc"]["cpu_ticks"], f3["bpf"]["cpu_ticks"])))
        w("| 3 fetch | agent CPU per 1,000 fetches, ms (schedstat, all threads) | %s | %s | %s |" % (cell(f3["bcc"]["cpu_ns"], 2), cell(f3["bpf"]["cpu_ns"], 2), ratio(f3["bcc"]["cpu_ns"], f3["bpf"]["cpu_ns"])))
    k = R.get("kernel")
    if k:
        by_hook = {}
        for key, v in k.items():
            who, name = key.split("|", 1)
            if name == "*total":
                continue
            by_hook.setdefault(hook_of(name), {}).setdefault(who, []).append((name, v))
        for hook, _ in HOOKS:
            if hook not in by_hook:
                continue
            e = by_hook[hook]

            def c(who):
                if who not in e:
                    return "—", None
                parts, meds = [], []
                for name, v in e[who]:
                    parts.append("%s %s" % (name, cell(v["per_event"])))
                    meds.append(med(v["per_event"]))
                return "; ".join(parts), (sum(x for x in meds if x is not None) if meds else None)
            bc, bm = c("bcc")
            pc, pm = c("bpf")
            fc, fm = c("floor")
            w("| 4 kernel | %s: ns per event (floor: %s) | %s | %s | %s |" % (hook, fc.split(" ", 1)[-1] if fm is not None else "—", bc, pc, ratio(bm, pm) if bm is not None and pm is not None else "n/a"))
        tb, tp = k.get("bcc|*total"), k.get("bpf|*total")
        if tb and tp:
            w("| 4 kernel | all programs, total run time over the fixed workload, ms | %s | %s | %s |" % (cell([x / 1e6 for x in tb["ns"]], 2), cell([x / 1e6 for x in tp["ns"]], 2), ratio(tb["ns"], tp["ns"])))
    sc = R.get("scale")
    if sc:
        fl = sc["floor"]
        w("| 5 scale | floor: one batched map read (BPF_MAP_LOOKUP_BATCH), µs per element | %s | | |" % ", ".join("%s: %.2f" % ("{:,}".format(n), v) for n, v in fl.items()))
        for mod in ("biotop", "tcplife"):
            rows = sc.get(mod)
            if rows is None:
                w("| 5 scale | %s | module not in this build (pending) | no peer module | |" % mod)
                continue
            for r in rows:
                if "error" in r:
                    w("| 5 scale | %s, %s processes | failed: %s | no peer module | |" % (mod, fmt(r["label"]), r["error"]))
                    continue
                flo = fl.get(r["label"]) or list(fl.values())[-1]
                ok_rows = [x for x in rows if "error" not in x]
                mg = marginal(ok_rows[0], r)
                w("| 5 scale | %s, %s processes: %s instances; fetch median / p99 µs; per instance µs (marginal); RSS KiB | %s / %s; %s (%s); %s | no peer module | %s × floor (%s marginal) |" % (mod, fmt(r["label"]), fmt(r["instances"]), fmt(r["fetch_us"]), fmt(r["p99_us"]), fmt(r["per_inst_us"], 3), fmt(mg, 3), fmt(r["rss_kb"]), ratio(r["per_inst_us"], flo), ratio(mg, flo) if mg else "n/a"))
        rows = sc.get("perdisk") or []
        for r in rows:
            mg = marginal(rows[0], r)
            w("| 5 scale | biolatency per_disk, %d loop disks + vda: %s instances; fetch median / p99 µs; per instance µs (marginal over the first row); RSS KiB | %s / %s; %s (%s); %s | no per-disk histogram | %s × floor (marginal) |" % (r["label"], fmt(r["instances"]), fmt(r["fetch_us"]), fmt(r["p99_us"]), fmt(r["per_inst_us"], 3), fmt(mg, 3), fmt(r["rss_kb"]), ratio(mg, list(fl.values())[-1]) if mg else "n/a"))
    if "loss" in R:
        if R["loss"] is None:
            w("| 6 loss | tcplife | module not in this build (pending) | no peer module | |")
        else:
            ok = [r for r in R["loss"] if r["lost"] == 0]
            for r in R["loss"]:
                w("| 6 loss | tcplife, target %s sessions/s: achieved %s/s, %s sessions | %s lost (%s closed seen) | no peer module | |" % (fmt(r["target"]), fmt(r["achieved"]), fmt(r["sessions"]), fmt(r["lost"]), fmt(r["closed_seen"])))
            w("| 6 loss | tcplife, highest rate with zero loss at a 1 s fetch interval | %s sessions/s | no peer module | |" % (fmt(max(r["achieved"] for r in ok)) if ok else "none of the rates tried"))
    table = "\n".join(L)
    if m and m["bcc"].get("detail"):
        D = ["", "BPF maps of each agent (last round; memlock is what the kernel charges for the map):", "",
             "| agent | map | type | max_entries | memlock KiB |", "|---|---|---|---|---|"]
        for a in AGENTS:
            for name, typ, mx, mem in m[a]["detail"]:
                D.append("| %s | %s | %s | %s | %.1f |" % (a, name, typ, "{:,}".format(mx), mem / 1024))
        table += "\n" + "\n".join(D)
    head = []
    h = head.append
    h("Run of %s: kernel %s, %d CPUs, %s; PCP %s; rounds %d%s; took %.0f s." % (
        datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), platform.release(), os.cpu_count(),
        "Debian " + open("/etc/debian_version").read().strip() if os.path.exists("/etc/debian_version") else platform.platform(),
        run(["pminfo", "-f", "pmcd.version"]).split('"')[1], b.rounds, " (smoke)" if b.smoke else "", elapsed))
    h("Command: `%s`. Modules in this build: %s." % (cmdline, ", ".join(b.mods)))
    return "\n".join(head), table


def main():
    ap = argparse.ArgumentParser(description="pcp-bcc-pmda benchmarks against pmdabpf")
    ap.add_argument("--smoke", action="store_true", help="one short round, a few seconds per figure")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--figures", default="1,2,3,4,5,6")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/BENCHMARKS.md")
    ap.add_argument("--cmdline", default="bench/run.sh")
    args = ap.parse_args()
    figs = set(args.figures.split(","))
    b = Bench(args)
    t0 = time.time()
    if "1" in figs:
        b.figure1_per_module()
    if figs & {"1", "2", "3", "4"}:
        b.figures_1_to_4()
    if "5" in figs:
        b.figure5()
    if "6" in figs:
        b.figure6()
    elapsed = time.time() - t0
    head, table = report(b, elapsed, args.cmdline)
    os.makedirs(os.path.join(TARGET, "bench"), exist_ok=True)
    with open(os.path.join(TARGET, "bench", "results.json"), "w") as f:
        json.dump(b.res, f, indent=1, default=str)
    print(head)
    print()
    print(table)
    if not args.no_write:
        write_doc(head, table)


def write_doc(head, table):
    path = os.path.join(REPO, "docs", "BENCHMARKS.md")
    tpl = os.path.join(REPO, "bench", "BENCHMARKS.md.in")
    with open(tpl) as f:
        text = f.read()
    ana = os.path.join(REPO, "bench", "analysis.md")
    analysis = open(ana).read().strip() if os.path.exists(ana) else "(no analysis yet)"
    text = text.replace("@RUN@", head).replace("@TABLE@", table).replace("@ANALYSIS@", analysis)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    log("wrote %s" % path)


if __name__ == "__main__":
    main()
