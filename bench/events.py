#!/usr/bin/python3
"""The event modules against pmdabpf's: the same exec burst, both agents loaded side by side.

For each round: one client per agent reads the execsnoop metrics once a second while a burst
of N execs of `/bin/true <tag>-<i>` runs (four at a time); then
- delivered: the burst's execs the client saw, of N. This agent's client reads the event
  records (bcc.execsnoop.records: each fetch gives the records since the previous one); a
  pmdabpf client can only read its table of the newest process_count (20) execs
  (bpf.execsnoop.args), so it sees at most 20 per fetch;
- in-kernel cost per exec: the kernel's BPF statistics (kernel.bpf_stats_enabled), the run
  time of every program of the agent's execsnoop over the burst, divided by the run count
  of its sys_enter_execve program (the execs of the whole host in that time, for both
  agents alike).
Ratios are this agent / pmdabpf (below 1.0 this agent costs less). Asserts nothing.

Run as root: bench/events.sh [--rounds 3] [--execs 20000]. It holds the shared pmcd lock
(/tmp/pcp-bcc-e2e.lock) and leaves both agents with their default configurations.
"""

import argparse
import fcntl
import json
import os
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpfutil  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BPF_DIR = "/var/lib/pcp/pmdas/bpf"
BCC_DIR = "/var/lib/pcp/pmdas/bcc"
LOCK = "/tmp/pcp-bcc-e2e.lock"
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
ENV = dict(os.environ, PATH="/usr/bin:/bin:/usr/sbin:/sbin:/usr/lib/pcp/bin", PCPQA_SYSTEMD="no")
PROC = {"bcc": "pmdabcc", "bpf": "pmdabpf"}


def log(msg):
    print("events: " + msg, file=sys.stderr, flush=True)


def run(cmd, check=True, **kw):
    r = subprocess.run(cmd, shell=isinstance(cmd, str), env=ENV, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed: %s%s" % (cmd, r.stdout, r.stderr))
    return r.stdout


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
        os.kill(old, 9)
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
        if "value" in out or "event records" in out:
            return
        time.sleep(0.5)
    raise RuntimeError("%s has no value after %d s" % (name, timeout))


def module_progs(pid, names):
    """{prog id: name} of the agent's programs whose names contain one of `names`."""
    progs, _ = bpfutil.bpf_objects(pid)
    stats = json.loads(run(["bpftool", "prog", "show", "-j"]))
    by_id = {p["id"]: p.get("name", "?") for p in stats}
    return {i: by_id.get(i, "?") for i in progs if any(n in by_id.get(i, "") for n in names)}


def prog_stats(ids):
    stats = json.loads(run(["bpftool", "prog", "show", "-j"]))
    return {p["id"]: (p.get("run_cnt", 0), p.get("run_time_ns", 0)) for p in stats if p["id"] in ids}


class Reader:
    """pmval reading `metric` every second for `secs` seconds, output kept."""

    def __init__(self, metric, secs):
        self.p = subprocess.Popen(["pmval", "-t", "1", "-s", str(secs), metric], env=ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.out = []
        self.t = threading.Thread(target=lambda: self.out.extend(self.p.stdout))
        self.t.start()

    def finish(self):
        self.p.wait()
        self.t.join()
        return self.out


def lost(name):
    for line in run(["pminfo", "-f", name], check=False).splitlines():
        if "value" in line:
            return int(line.split()[-1])
    return 0


def burst(tag, n):
    # xargs runs the execs four at a time; each gets a unique last argument.
    subprocess.run("seq 0 %d | xargs -P 4 -I{} /bin/true %s-{}" % (n - 1, tag), shell=True, check=True, env=ENV)


def one_round(agent, n, progs, enter_ids):
    tag = "bccbench%dr%d" % (os.getpid(), int(time.time() * 1000) % 10**9)
    metric = "bcc.execsnoop.records" if agent == "bcc" else "bpf.execsnoop.args"
    secs = 25
    reader = Reader(metric, secs)
    time.sleep(2)  # the first fetch (our cursor starts there)
    lost_name = "bcc.execsnoop.lost" if agent == "bcc" else "bpf.execsnoop.lost"
    lost0 = lost(lost_name)
    before = prog_stats(progs)
    t0 = time.time()
    burst(tag, n)
    took = time.time() - t0
    after = prog_stats(progs)
    out = reader.finish()
    lost1 = lost(lost_name)
    seen = set()
    for line in out:
        i = line.find("/bin/true %s-" % tag)
        if i >= 0:
            n_ = line[i:].split()[1].rstrip('"').rsplit("-", 1)[-1]
            if n_.isdigit():  # not xargs's own command line ("…-{}")
                seen.add(int(n_))
    runs = sum(after[i][0] - before[i][0] for i in enter_ids if i in after and i in before)
    ns = sum(after[i][1] - before[i][1] for i in progs if i in after and i in before)
    per_prog = {progs[i]: (after[i][1] - before[i][1]) / max(1, after[i][0] - before[i][0]) for i in progs if i in after and i in before}
    return {"delivered": len(seen), "execs": n, "burst_s": took, "host_execs": runs, "lost": lost1 - lost0,
            "ns_per_run": per_prog,
            "ns_per_exec": ns / runs if runs else float("nan")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--execs", type=int, default=20000)
    a = ap.parse_args()
    with open(LOCK, "a") as lock:
        if not os.environ.get("PCP_BCC_E2E_LOCKED"):
            fcntl.flock(lock, fcntl.LOCK_EX)
        with open(BPF_DIR + "/bpf.conf") as f:
            bpf_orig = f.read()
        stats_orig = open("/proc/sys/kernel/bpf_stats_enabled").read().strip()
        try:
            conf = []
            cur = None
            for line in bpf_orig.splitlines():
                st = line.strip()
                if st.startswith("[") and st.endswith("]"):
                    cur = st[1:-1]
                elif cur and st.replace(" ", "").startswith("enabled="):
                    line = "enabled = %s" % ("true" if cur == "execsnoop.so" else "false")
                conf.append(line)
            with open(BPF_DIR + "/bpf.conf", "w") as f:
                f.write("\n".join(conf) + "\n")
            if not any(l.split()[:1] == ["bpf"] for l in open("/etc/pcp/pmcd/pmcd.conf")):
                run("cd %s && ./Install </dev/null" % BPF_DIR)
            restart("bpf")
            wait_metric("bpf.execsnoop.lost")
            wait_metric("bcc.execsnoop.lost")
            with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
                f.write("1")
            progs = {ag: module_progs(pid_of(ag), names) for ag, names in
                     (("bcc", ["execve", "execveat"]), ("bpf", ["tracepoint__sys", "execve"]))}
            enter = {ag: [i for i, nm in p.items() if "enter" in nm and "execveat" not in nm] for ag, p in progs.items()}
            for ag in progs:
                log("%s programs: %s (enter: %s)" % (ag, sorted(progs[ag].values()), enter[ag]))
                if not progs[ag] or not enter[ag]:
                    raise RuntimeError("no execsnoop programs found for %s" % PROC[ag])
            results = {"bcc": [], "bpf": []}
            for r in range(a.rounds):
                order = ("bcc", "bpf") if r % 2 == 0 else ("bpf", "bcc")
                for ag in order:
                    res = one_round(ag, a.execs, progs[ag], enter[ag])
                    log("round %d %s: %s" % (r, ag, res))
                    results[ag].append(res)
        finally:
            with open(BPF_DIR + "/bpf.conf", "w") as f:
                f.write(bpf_orig)
            with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
                f.write(stats_orig)
            restart("bpf")
    med = {ag: {k: statistics.median(x[k] for x in rs) for k in ("delivered", "ns_per_exec")} for ag, rs in results.items()}
    os.makedirs(os.path.join(TARGET, "bench"), exist_ok=True)
    with open(os.path.join(TARGET, "bench", "events.json"), "w") as f:
        json.dump({"rounds": results, "median": med}, f, indent=1)
    n = a.execs
    print("| execsnoop, burst of %d execs (median of %d rounds) | this agent | pmdabpf | ratio |" % (n, a.rounds))
    print("|---|---|---|---|")
    b, p = med["bcc"], med["bpf"]
    print("| execs delivered to a client reading every 1 s | %d (%.1f %%) | %d (%.1f %%) | %.0f |" % (
        b["delivered"], 100 * b["delivered"] / n, p["delivered"], 100 * p["delivered"] / n,
        b["delivered"] / p["delivered"] if p["delivered"] else float("inf")))
    print("| in-kernel ns per exec (BPF stats) | %.0f | %.0f | %.2f |" % (b["ns_per_exec"], p["ns_per_exec"], b["ns_per_exec"] / p["ns_per_exec"]))


if __name__ == "__main__":
    main()
