#!/usr/bin/python3
"""Soak: one PCP client context fetches every bcc metric once a second for the given minutes,
while churn.sh makes processes, block I/O and TCP sessions. Prints, once a minute and at the
end: the agent's RSS, the instances served per metric, and BPF map fill (entries/capacity).
Run through bench/soak.sh (it starts a private pmcd and the churn)."""
import sys, time
from pcp import pmapi
import cpmapi as c_api

minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
host = sys.argv[2] if len(sys.argv) > 2 else "local:"
binary = sys.argv[3] if len(sys.argv) > 3 else "pmdabcc"
ctx = pmapi.pmContext(c_api.PM_CONTEXT_HOST, host)
names = []
ctx.pmTraversePMNS("bcc", lambda n: names.append(n))
pmids = ctx.pmLookupName(names)
descs = ctx.pmLookupDescs(pmids)

def agent_pid():
    import subprocess
    return int(subprocess.run(["pgrep", "-x", binary], capture_output=True, text=True).stdout.split()[0])

def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        st = dict(l.split(":", 1) for l in f if ":" in l)
    return int(st["VmRSS"].split()[0]), int(st["VmHWM"].split()[0])

def fetch_all():
    r = ctx.pmFetch(pmids)
    counts, vals = {}, {}
    for i in range(r.contents.numpmid):
        vs = r.contents.get_vset(i)
        counts[names[i]] = vs.contents.numval
        if names[i].startswith("bcc.agent.bpf.map.") and vs.contents.numval > 0:
            vals[names[i]] = {r.contents.get_vlist(i, j).inst: ctx.pmExtractValue(r.contents.get_valfmt(i), r.contents.get_vlist(i, j), descs[i].type, c_api.PM_TYPE_U64).ull for j in range(vs.contents.numval)}
    ctx.pmFreeResult(r)
    return counts, vals

pid = agent_pid()
start_rss = rss_kb(pid)
t0 = time.time()
n = errors = 0
peak_inst = {}
report_at = t0
print(f"soak: {len(names)} metrics, {minutes} min, agent pid {pid}, RSS at start {start_rss[0]} kB", flush=True)
while time.time() - t0 < minutes * 60:
    try:
        counts, vals = fetch_all()
        n += 1
        for k, v in counts.items():
            peak_inst[k] = max(peak_inst.get(k, 0), v)
    except pmapi.pmErr as e:
        errors += 1
    if time.time() >= report_at:
        rss = rss_kb(pid)
        # Fill of the maps that have an entry count (hash maps; arrays count as full).
        ent, cap = vals.get("bcc.agent.bpf.map.entries", {}), vals.get("bcc.agent.bpf.map.max_entries", {})
        pairs = [(ent[i], cap[i]) for i in ent if cap.get(i)]
        busiest = [c for c in counts.items() if c[1] > 1 and not c[0].startswith("bcc.agent.")]
        busiest = sorted(busiest, key=lambda c: -c[1])[:3]
        print(f"{(time.time()-t0)/60:5.1f} min  RSS {rss[0]} kB (peak {rss[1]})  fetches {n} errors {errors}  "
              f"map entries {sum(e for e, _ in pairs)}/{sum(c for _, c in pairs)} (fullest {max([e / c for e, c in pairs if e < c] or [0]):.0%} of those not full)  instances {busiest}", flush=True)
        report_at += 60
    time.sleep(max(0.0, 1.0 - (time.time() - t0) % 1.0))
rss = rss_kb(pid)
assert agent_pid() == pid, "the agent restarted during the soak"
print(f"RESULT fetches={n} errors={errors} rss_start_kb={start_rss[0]} rss_end_kb={rss[0]} rss_peak_kb={rss[1]} "
      f"peak_instances={max(peak_inst.values())} ({max(peak_inst, key=peak_inst.get)})", flush=True)
