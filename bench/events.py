#!/usr/bin/python3
"""The event modules against pmdabpf's: the same burst, both agents loaded side by side.

One module per run (`--module m`, under the shared pmcd lock, which bench/events.sh takes
per module), `--rounds` rounds (3). pmdabpf is restarted with only that module enabled, so
every BPF program its process holds is the module's; this agent's programs of the module
are the instances `<m>/...` of bcc.agent.bpf.prog.id. Each round:
- a burst of known size and content (MODULES below: N execs of `/bin/true <tag>-<i>`, N
  exits of processes named <tag>, N opens and N stats of known files, N mount/umount
  pairs of a tmpfs on known directories, N lines typed into bash on a pty);
- one client per agent fetching once a second meanwhile: this agent's reads the event
  records (bcc.<m>.records: each fetch gives every record since the previous one);
  pmdabpf's can only read its table of the newest 20 (bpf.<m>.*, all instances, one
  fetch for the fields that identify an event). **Delivered**: the burst's events the
  client saw, of N (each event has a unique key, e.g. the index in its argument);
- **in-kernel ns per event**: the kernel's BPF statistics (kernel.bpf_stats_enabled, on
  only while the bench runs), the run time of all of the agent's programs of the module
  over the burst (bpftool prog show), divided by N. Both agents' programs run for the
  same events in the same window (the host's own events too: `host` counts them).
Rounds alternate which agent attached its programs last (the kernel runs the programs of
a tracepoint newest first). Ratios are this agent / pmdabpf. Asserts nothing.

`--report` prints the table of every module measured (target/bench/events-<m>.json).
Run as root through bench/events.sh, which builds, deploys and takes the lock.
"""

import argparse
import fcntl
import json
import os
import random
import shutil
import signal
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
BPF_DIR = "/var/lib/pcp/pmdas/bpf"
LOCK = "/tmp/pcp-bcc-e2e.lock"
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
ENV = dict(os.environ, PATH="/usr/bin:/bin:/usr/sbin:/sbin:/usr/lib/pcp/bin", PCPQA_SYSTEMD="no")
PROC = {"bcc": "pmdabcc", "bpf": "pmdabpf"}
PY = "/usr/bin/python3"


def log(msg):
    print("events: " + msg, file=sys.stderr, flush=True)


def run(cmd, check=True, **kw):
    r = subprocess.run(cmd, shell=isinstance(cmd, str), env=ENV, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed: %s%s" % (cmd, r.stdout, r.stderr))
    return r.stdout


# The workloads. Each runs in a child process and makes `n` units of work; `scratch` is a
# fresh directory whose files f<i> (mknod: no open, no stat) and directories m<i> exist.

def burst_exec(tag, n, scratch):
    # xargs runs the execs four at a time; each gets a unique last argument.
    subprocess.run("seq 0 %d | xargs -P 4 -I{} /bin/true %s-{}" % (n - 1, tag), shell=True, check=True, env=ENV)


def burst_exit(tag, n, scratch):
    # Four bash workers started through a link named <tag> (their comm), each forking its
    # share of subshells that exit at once; each worker ends by exec'ing true (another comm).
    link = os.path.join(scratch, tag)
    os.symlink("/bin/bash", link)
    loop = "for ((i=0;i<%d;i++)); do (:); done; exec /bin/true"
    ps = [subprocess.Popen([link, "--norc", "--noprofile", "-c", loop % (n // 4 + (k < n % 4))]) for k in range(4)]
    for p in ps:
        if p.wait():
            raise RuntimeError("exit workload failed")


FILE_CHILD = r"""
import os, sys
d, n, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(n):
    p = "%s/f%d" % (d, i)
    if what == "open":
        os.close(os.open(p, os.O_RDONLY))   # openat
    else:
        os.stat(p)                          # newfstatat
"""


def burst_open(tag, n, scratch):
    subprocess.run([PY, "-c", FILE_CHILD, scratch, str(n), "open"], check=True)


def burst_stat(tag, n, scratch):
    subprocess.run([PY, "-c", FILE_CHILD, scratch, str(n), "stat"], check=True)


MOUNT_CHILD = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
d, n, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(n):
    t = ("%s/m%d" % (d, i)).encode()
    if libc.mount(("%s-%d" % (tag, i)).encode(), t, b"tmpfs", 0, None) or libc.umount2(t, 0):
        sys.exit("mount/umount %s: %s" % (t, os.strerror(ctypes.get_errno())))
"""


def burst_mount(tag, n, scratch):
    # In a private mount namespace: the host's mount watchers (systemd) see nothing.
    subprocess.run(["unshare", "-m", "--propagation", "private", PY, "-c", MOUNT_CHILD, scratch, str(n), tag], check=True, env=ENV)


BASH_CHILD = r"""
import os, pty, sys, threading, time
tag, n = sys.argv[1], int(sys.argv[2])
pid, fd = pty.fork()
if pid == 0:
    os.execve("/bin/bash", ["bash", "--norc", "--noprofile", "-i"],
              {"PATH": "/usr/bin:/bin", "HISTFILE": "/dev/null", "PS1": "$ ", "TERM": "dumb"})
seen = bytearray()
prompt = threading.Event()
def drain():
    while True:
        try:
            b = os.read(fd, 65536)
        except OSError:
            return
        if not b:
            return
        if not prompt.is_set():
            seen.extend(b)
            if b"$ " in seen:
                prompt.set()
threading.Thread(target=drain, daemon=True).start()
if not prompt.wait(10):
    sys.exit("bash gave no prompt")
for i in range(n):
    os.write(fd, (": %s-%d\n" % (tag, i)).encode())
os.write(fd, b"exit\n")
os.waitpid(pid, 0)
"""


def burst_bash(tag, n, scratch):
    subprocess.run([PY, "-c", BASH_CHILD, tag, str(n)], check=True, timeout=300)


def index_after(s, prefix):
    """The <i> of "<prefix><i>" in s, or None."""
    i = s.find(prefix)
    if i < 0:
        return None
    digits = ""
    for ch in s[i + len(prefix):]:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else None


# Per module: events per unit of work, the default units, the workload, pmdabpf's table
# fields a client fetches, and key(fields, tag, scratch): the event's unique key when it is
# one of the burst's, else None (fields: {name: value} of one record or one table row).
MODULES = {
    "execsnoop": dict(per_unit=1, units=20000, burst=burst_exec, bpf_fields=["args"],
                      key=lambda f, tag, d: index_after(f.get("args", ""), "/bin/true %s-" % tag)),
    "exitsnoop": dict(per_unit=1, units=20000, burst=burst_exit, bpf_fields=["comm", "pid"],
                      key=lambda f, tag, d: f.get("pid") if f.get("comm") == tag else None),
    "opensnoop": dict(per_unit=1, units=20000, burst=burst_open, bpf_fields=["fname"],
                      key=lambda f, tag, d: index_after(f.get("fname", ""), d + "/f")),
    "statsnoop": dict(per_unit=1, units=20000, burst=burst_stat, bpf_fields=["path"],
                      key=lambda f, tag, d: index_after(f.get("path", ""), d + "/f")),
    "mountsnoop": dict(per_unit=2, units=2000, burst=burst_mount, bpf_fields=["op", "target"],
                       key=lambda f, tag, d: (lambda i: None if i is None else (str(f.get("op")), i))(index_after(f.get("target", ""), d + "/m"))),
    "bashreadline": dict(per_unit=1, units=2000, burst=burst_bash, bpf_fields=["comm"], bcc_field="line",
                         key=lambda f, tag, d: index_after(f.get("line", f.get("comm", "")), ": %s-" % tag)),
}


def pid_of(agent):
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/comm" % d) as f:
                    if f.read().strip() == PROC[agent]:
                        return int(d)
            except OSError:
                pass
    return None


def restart(agent):
    old = pid_of(agent)
    if old:
        os.kill(old, signal.SIGKILL)
        time.sleep(0.2)
    for _ in range(60):
        run(["pminfo", "-f", "bcc.agent.version" if agent == "bcc" else "bpf"], check=False)
        run(["pmsignal", "-a", "-s", "HUP", "pmcd"], check=False)
        time.sleep(0.5)
        p = pid_of(agent)
        if p and p != old:
            return p
    raise RuntimeError("pmcd did not restart %s" % PROC[agent])


def wait_metric(name, timeout=60):
    t = time.time()
    while time.time() - t < timeout:
        out = run(["pminfo", "-f", name], check=False)
        if "value" in out:
            return
        time.sleep(0.5)
    raise RuntimeError("%s has no value after %d s" % (name, timeout))


def lost(name):
    for line in run(["pminfo", "-f", name], check=False).splitlines():
        if "value" in line:
            return int(line.split()[-1])
    return 0


def bcc_progs(module):
    """{prog id: name} of this agent's programs of `module` (bcc.agent.bpf.prog.id)."""
    progs = {}
    for line in run(["pminfo", "-f", "bcc.agent.bpf.prog.id"]).splitlines():
        # inst [57 or "execsnoop/execve_enter"] value 57685
        if 'or "%s/' % module in line:
            name = line.split('"')[1].split("/", 1)[1]
            progs[int(line.split()[-1])] = name
    return progs


def bpf_progs():
    """{prog id: name} of every program pmdabpf's process holds."""
    ids, _ = bpfutil.bpf_objects(pid_of("bpf"))
    names = {p["id"]: p.get("name", "?") for p in json.loads(run(["bpftool", "prog", "show", "-j"]))}
    return {i: names.get(i, "?") for i in set(ids)}


def prog_stats(ids):
    stats = json.loads(run(["bpftool", "prog", "show", "-j"]))
    return {p["id"]: (p.get("run_cnt", 0), p.get("run_time_ns", 0)) for p in stats if p["id"] in ids}


class RecordReader:
    """pmval reading bcc.<m>.records once a second until stopped; the records' parameters."""

    def __init__(self, module):
        self.p = subprocess.Popen(["stdbuf", "-oL", "pmval", "-t", "1", "bcc.%s.records" % module], env=ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        self.records = []
        self.missed = 0
        self.t = threading.Thread(target=self._read)
        self.t.start()

    def _read(self):
        cur = None
        for line in self.p.stdout:
            s = line.strip()
            if "--- event record" in s:
                cur = {}
                self.records.append(cur)
            elif "missed" in s and "==>" in s:
                self.missed += int(s.split()[1]) if s.split()[1].isdigit() else 1
            elif cur is not None and s.startswith("bcc.") and "] " in s:
                name, value = s.split("] ", 1)
                field = name.split("[")[0].rsplit(".", 1)[-1]
                if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                    value = value[1:-1]
                elif value.lstrip("-").isdigit():
                    value = int(value)
                cur[field] = value

    def stop(self):
        self.p.terminate()  # pmval ignores SIGINT when started in the background
        self.p.wait()
        self.t.join()
        return self.records


class TableReader:
    """A PMAPI client fetching bpf.<m>.<fields> (all instances) once a second until stopped;
    every row of every fetch."""

    def __init__(self, module, fields):
        self.names = ["bpf.%s.%s" % (module, f) for f in fields]
        self.fields = fields
        self.rows = []
        self.fetches = 0
        self.stopping = threading.Event()
        self.t = threading.Thread(target=self._read)
        self.t.start()

    def _read(self):
        ctx = pmapi.pmContext(c_api.PM_CONTEXT_HOST, "local:")
        pmids = ctx.pmLookupName(self.names)
        descs = ctx.pmLookupDescs(pmids)
        while not self.stopping.is_set():
            t = time.time()
            res = ctx.pmFetch(pmids)
            try:
                rows = {}
                for i, field in enumerate(self.fields):
                    ty = descs[i].contents.type
                    for j in range(res.contents.get_numval(i)):
                        vl = res.contents.get_vlist(i, j)
                        if ty == c_api.PM_TYPE_STRING:
                            v = ctx.pmExtractValue(res.contents.get_valfmt(i), vl, ty, ty).cp
                            v = v.decode(errors="replace") if isinstance(v, bytes) else v
                        else:
                            v = ctx.pmExtractValue(res.contents.get_valfmt(i), vl, ty, c_api.PM_TYPE_64).ll
                        rows.setdefault(vl.inst, {})[field] = v
                self.rows.extend(rows.values())
                self.fetches += 1
            finally:
                ctx.pmFreeResult(res)
            self.stopping.wait(max(0.0, 1.0 - (time.time() - t)))

    def stop(self):
        self.stopping.set()
        self.t.join()
        return self.rows


def enable_bpf_module(orig, module):
    """pmdabpf's bpf.conf text with only `module` enabled."""
    out, cur = [], None
    for line in orig.splitlines():
        st = line.strip()
        if st.startswith("[") and st.endswith("]"):
            cur = st[1:-1]
        elif cur and st.replace(" ", "").startswith("enabled="):
            line = "enabled = %s" % ("true" if cur == module + ".so" else "false")
        out.append(line)
    return "\n".join(out) + "\n"


def one_round(module, m, units, progs, scratch_root):
    tag = "evb%06d" % random.randrange(10**6)  # also the exit workload's comm: < 16 bytes
    scratch = os.path.join(scratch_root, tag)
    os.makedirs(scratch)
    if m["burst"] in (burst_open, burst_stat):
        for i in range(units):
            os.mknod(os.path.join(scratch, "f%d" % i), 0o600)
    if m["burst"] is burst_mount:
        for i in range(units):
            os.mkdir(os.path.join(scratch, "m%d" % i))
    n = units * m["per_unit"]
    readers = {"bcc": RecordReader(module), "bpf": TableReader(module, m["bpf_fields"])}
    lost0 = {ag: lost("%s.%s.lost" % (ag, module)) for ag in readers}
    time.sleep(2)  # the first fetches (this agent's client's records start there)
    all_ids = set(progs["bcc"]) | set(progs["bpf"])
    before = prog_stats(all_ids)
    t0 = time.time()
    m["burst"](tag, units, scratch)
    took = time.time() - t0
    after = prog_stats(all_ids)
    time.sleep(3)  # the last records reach the ring buffer's reader, then a fetch
    seen = {"bcc": readers["bcc"].stop(), "bpf": readers["bpf"].stop()}
    lost1 = {ag: lost("%s.%s.lost" % (ag, module)) for ag in readers}
    shutil.rmtree(scratch, ignore_errors=True)
    out = {"units": units, "events": n, "burst_s": round(took, 2), "tag": tag}
    for ag in ("bcc", "bpf"):
        keys = set()
        for f in seen[ag]:
            k = m["key"](f, tag, scratch)
            if k is not None:
                keys.add(k)
        per_prog = {}
        total = 0
        for i, name in progs[ag].items():
            if i in before and i in after:
                cnt = after[i][0] - before[i][0]
                ns = after[i][1] - before[i][1]
                total += ns
                per_prog[name] = {"runs": cnt, "ns": ns, "ns_per_run": round(ns / cnt) if cnt else None}
        out[ag] = {"delivered": len(keys), "lost": lost1[ag] - lost0[ag], "ns_total": total,
                   "ns_per_event": total / n, "progs": per_prog}
    out["bpf"]["fetches"] = readers["bpf"].fetches
    out["bcc"]["missed"] = readers["bcc"].missed
    return out


def measure(module, rounds, units):
    m = MODULES[module]
    units = units or m["units"]
    scratch_root = "/tmp/evbench.%d" % os.getpid()
    with open(BPF_DIR + "/bpf.conf") as f:
        bpf_orig = f.read()
    stats_orig = open("/proc/sys/kernel/bpf_stats_enabled").read().strip()
    results = []
    try:
        with open(BPF_DIR + "/bpf.conf", "w") as f:
            f.write(enable_bpf_module(bpf_orig, module))
        if not any(l.split()[:1] == ["bpf"] for l in open("/etc/pcp/pmcd/pmcd.conf")):
            run("cd %s && ./Install </dev/null" % BPF_DIR)
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write("1")
        os.makedirs(scratch_root, exist_ok=True)
        for r in range(rounds):
            last = "bcc" if r % 2 else "bpf"  # the agent that attaches its programs last
            restart(last)
            wait_metric("bpf.%s.lost" % module)
            wait_metric("bcc.%s.lost" % module)
            progs = {"bcc": bcc_progs(module), "bpf": bpf_progs()}
            for ag in progs:
                if not progs[ag]:
                    raise RuntimeError("no %s programs found for %s" % (module, PROC[ag]))
            res = one_round(module, m, units, progs, scratch_root)
            res["attached_last"] = last
            log("%s round %d: %s" % (module, r, json.dumps(res)))
            results.append(res)
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)
        with open(BPF_DIR + "/bpf.conf", "w") as f:
            f.write(bpf_orig)
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write(stats_orig)
        restart("bpf")
    med = {ag: {k: statistics.median(x[ag][k] for x in results) for k in ("delivered", "ns_per_event", "lost")}
           for ag in ("bcc", "bpf")}
    os.makedirs(os.path.join(TARGET, "bench"), exist_ok=True)
    with open(os.path.join(TARGET, "bench", "events-%s.json" % module), "w") as f:
        json.dump({"module": module, "events": results[0]["events"], "rounds": results, "median": med,
                   "kernel": os.uname().release, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, f, indent=1)
    return med


def measured():
    """(module, its last results) for every module measured, in MODULES' order."""
    for module in MODULES:
        path = os.path.join(TARGET, "bench", "events-%s.json" % module)
        if os.path.exists(path):
            with open(path) as f:
                yield module, json.load(f)


def report():
    print("| module, burst (median of rounds) | delivered: this agent | pmdabpf | in-kernel ns per event: this agent | pmdabpf | ratio |")
    print("|---|---|---|---|---|---|")
    for module, d in measured():
        n, b, p = d["events"], d["median"]["bcc"], d["median"]["bpf"]
        print("| %s, %s events (%d rounds) | %s (%.1f %%) | %s (%.2f %%) | %s | %s | %.2f |" % (
            module, "{:,}".format(n), len(d["rounds"]), "{:,}".format(int(b["delivered"])), 100 * b["delivered"] / n,
            "{:,}".format(int(p["delivered"])), 100 * p["delivered"] / n,
            "{:,}".format(round(b["ns_per_event"])), "{:,}".format(round(p["ns_per_event"])),
            b["ns_per_event"] / p["ns_per_event"]))
    print()
    print("Per program, ns per run (range over the rounds; runs include the host's other events):")
    print()
    for module, d in measured():
        for ag in ("bcc", "bpf"):
            parts = []
            for name in d["rounds"][0][ag]["progs"]:
                vals = [r[ag]["progs"][name]["ns_per_run"] for r in d["rounds"] if name in r[ag]["progs"] and r[ag]["progs"][name]["ns_per_run"]]
                runs = statistics.median(r[ag]["progs"][name]["runs"] for r in d["rounds"] if name in r[ag]["progs"])
                if vals:
                    parts.append("%s %s–%s (%s runs)" % (name, "{:,}".format(min(vals)), "{:,}".format(max(vals)), "{:,}".format(int(runs))))
            print("- %s, %s: %s" % (module, "this agent" if ag == "bcc" else "pmdabpf", "; ".join(parts) or "no runs"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", choices=sorted(MODULES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--units", type=int, default=0, help="units of work per burst (default per module)")
    ap.add_argument("--report", action="store_true")
    a = ap.parse_args()
    if a.report:
        report()
        return
    if not a.module:
        ap.error("--module or --report")
    # A TERM (a timeout) still puts pmdabpf's bpf.conf and the BPF statistics back.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("events: terminated"))
    with open(LOCK, "a") as lock:
        if not os.environ.get("PCP_BCC_E2E_LOCKED"):
            fcntl.flock(lock, fcntl.LOCK_EX)
        med = measure(a.module, a.rounds, a.units)
    log("%s medians: %s" % (a.module, json.dumps(med)))


if __name__ == "__main__":
    main()
