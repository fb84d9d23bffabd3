#!/usr/bin/env python3
"""Checks one kernel's `pmdabcc --probe` results against expected.tsv and counts.tsv.

    check.py [--update] --name NAME RESULTS   check (or, with --update, rewrite the rows of
                                              expected.tsv for that kernel); exit 1 on failure
    check.py --table OUTDIR NAME...           the matrix (sections x kernels) as markdown
    check.py --self-test                      shows that the checks catch what they should

RESULTS is the probe's output (see crates/pmdabcc/src/probe.rs) followed by the runner's
records: `truth` (the workload's quantities), `probe-exit`, `matrix-done`, `matrix-time`.
"""
import os
import re
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECTED = os.path.join(HERE, "expected.tsv")
COUNTS = os.path.join(HERE, "counts.tsv")


def version_key(k):
    return tuple(int(x) if x.isdigit() else 0 for x in k.split("."))


class Results:
    def __init__(self, text):
        self.kernel = None  # (release, major.minor)
        self.modules = {}  # label -> (state, hooks, detail)
        self.order = []
        self.logs = {}  # label -> [lines]
        self.values = {}  # label -> [(metric, inst, value, delta)]
        self.truth = {}
        self.probe_exit = None
        self.workload_exit = None
        self.summary = None
        self.done = False
        self.time = None
        self.other = []
        for line in text.splitlines():
            f = line.split("\t")
            kind = f[0]
            if kind == "kernel" and len(f) >= 3:
                self.kernel = (f[1], f[2])
            elif kind == "module" and len(f) >= 5:
                self.modules[f[1]] = (f[2], f[3], f[4])
                self.order.append(f[1])
            elif kind == "log" and len(f) >= 3:
                self.logs.setdefault(f[1], []).append("\t".join(f[2:]))
            elif kind == "value" and len(f) >= 6:
                self.values.setdefault(f[1], []).append((f[2], f[3], f[4], f[5]))
            elif kind == "truth" and len(f) >= 3:
                self.truth[f[1]] = f[2]
            elif kind == "probe-exit":
                self.probe_exit = int(f[1])
            elif kind == "workload" and len(f) >= 3:
                self.workload_exit = int(f[2])
            elif kind == "summary":
                self.summary = line
            elif kind == "matrix-done":
                self.done = True
            elif kind == "matrix-time":
                self.time = (int(f[1]), f[2] if len(f) > 2 else "")
            elif line.strip():
                self.other.append(line)


def read_expected(path=EXPECTED):
    rows = {}
    with open(path) as fh:
        for line in fh:
            if line.startswith("#") or not line.strip():
                continue
            f = line.rstrip("\n").split("\t")
            if len(f) < 4:
                raise SystemExit(f"{path}: bad row (want kernel, section, state, hooks): {line!r}")
            rows.setdefault(f[0], {})[f[1]] = (f[2], f[3])
    return rows


def write_expected(rows, path=EXPECTED):
    header = []
    with open(path) as fh:
        for line in fh:
            if not line.startswith("#"):
                break
            header.append(line)
    with open(path, "w") as fh:
        fh.writelines(header)
        for k in sorted(rows, key=version_key):
            for sec in sorted(rows[k]):
                state, hooks = rows[k][sec]
                fh.write(f"{k}\t{sec}\t{state}\t{hooks}\n")


def read_counts(path=COUNTS):
    rules = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if line.startswith("#") or not line.strip():
                continue
            f = line.rstrip("\n").split("\t")
            if len(f) < 6:
                raise SystemExit(f"{path}:{n}: want 6 tab-separated fields: {line!r}")
            rules.append((n, re.compile(f[0]), f[1], f[2], f[3], f[4], f[5]))
    return rules


def subst(s, truth):
    return re.sub(r"\$([A-Z_]+)", lambda m: truth.get(m.group(1), "$" + m.group(1)), s)


def kernel_sum(res, name, inst_re):
    total = 0
    for metric, inst, _value, delta in res.values.get("kernel", []):
        if metric == name and re.search(inst_re, inst):
            total += int(delta)
    return total


def arith(expr):
    """Evaluates + - * / over numbers (a bound after substitution)."""
    import ast
    import operator
    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}

    def ev(n):
        if isinstance(n, ast.Expression):
            return ev(n.body)
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)):
            return float(n.value)
        if isinstance(n, ast.BinOp) and type(n.op) in ops:
            return ops[type(n.op)](ev(n.left), ev(n.right))
        raise ValueError(f"not arithmetic: {expr!r}")

    return ev(ast.parse(expr, mode="eval"))


def bound(expr, res):
    """A bound: arithmetic over numbers, $VARs and kernel:NAME[:INSTANCE-REGEX] counts."""
    if expr == "-":
        return None
    expr = re.sub(r"kernel:([\w.]+)(?::(\S+?))?(?=$|[-+*/ ])",
                  lambda m: str(kernel_sum(res, m.group(1), subst(m.group(2) or ".", res.truth))), expr)
    return arith(subst(expr, res.truth))


def check_counts(res, rules):
    problems = []
    for label in res.order:
        if res.modules[label][0] != "running":
            continue
        matched = [r for r in rules if r[1].search(label)]
        if not matched:
            problems.append(f"{label}: runs, but no rule of counts.tsv says what it must count")
            continue
        for n, _re, metric, inst_re, agg, lo, hi in matched:
            if agg == "none":
                continue
            inst_re = subst(inst_re, res.truth)
            vals = [
                v for v in res.values.get(label, [])
                if (v[0] == metric or v[0].endswith("." + metric))
                and (v[1] == "-" if inst_re == "-" else re.search(inst_re, v[1]))
            ]
            if agg == "sum":
                got = sum(float(v[3]) for v in vals if v[3] != "-")
            elif agg.startswith("count="):
                want = subst(agg[6:], res.truth)
                got = sum(1 for v in vals if v[2] == want)
            else:
                raise SystemExit(f"counts.tsv:{n}: unknown aggregate {agg!r}")
            try:
                low, high = bound(lo, res), bound(hi, res)
            except (ValueError, SyntaxError) as e:
                problems.append(f"{label}: counts.tsv:{n}: cannot evaluate a bound ({e}); truths: {res.truth}")
                continue
            what = f"{label}: {metric}[{inst_re}] {agg} = {got:g}"
            if low is not None and got < low:
                problems.append(f"{what}, want >= {low:g} ({lo}; counts.tsv:{n})")
            elif high is not None and got > high:
                problems.append(f"{what}, want <= {high:g} ({hi}; counts.tsv:{n})")
    return problems


def check(res, expected, rules, name):
    """Problems with one kernel's results; empty when they are as expected."""
    problems = []
    if not res.kernel:
        return ["the probe printed nothing: it did not start (see the console log)"] + res.other[-15:]
    if not res.done or res.summary is None:
        problems.append("the run did not finish (crash, or the VM timed out): last lines:")
        problems += ["  " + l for l in res.other[-15:]]
        return problems
    key = res.kernel[1]
    want = expected.get(key)
    if want is None:
        problems.append(f"expected.tsv has no rows for kernel {key} ({res.kernel[0]}); "
                        f"seen (add them, or run matrix.sh --update {name}):")
        problems += [f"  {key}\t{l}\t{res.modules[l][0]}\t{res.modules[l][1]}" for l in res.order]
        return problems
    for label in res.order:
        state, hooks, detail = res.modules[label]
        exp = want.get(label)
        if exp is None:
            problems.append(f"{label}: not in expected.tsv for {key}; seen {state} {hooks}")
        elif exp != (state, hooks):
            problems.append(f"{label}: expected {exp[0]} {exp[1]}, got {state} {hooks}: {detail}")
            problems += ["    " + l for l in res.logs.get(label, [])]
    for label in sorted(set(want) - set(res.modules)):
        problems.append(f"{label}: expected {want[label][0]} {want[label][1]}, but the probe did not report it")
    if res.workload_exit != 0:
        problems.append(f"the workload failed (exit {res.workload_exit})")
    failed = any(m[0] == "failed" for m in res.modules.values())
    if res.probe_exit != (1 if failed else 0):
        problems.append(f"the probe exited {res.probe_exit}, but {'a' if failed else 'no'} section failed")
    problems += check_counts(res, rules)
    return problems


def load(path):
    try:
        with open(path, errors="replace") as fh:
            return Results(fh.read())
    except FileNotFoundError:
        return Results("")


def main_check(name, path, update):
    res = load(path)
    expected = read_expected()
    if update and res.kernel and res.done:
        key = res.kernel[1]
        expected[key] = {l: res.modules[l][:2] for l in res.order}
        write_expected(expected)
        print(f"{name}: expected.tsv rows for {key} rewritten ({len(res.order)} sections)", file=sys.stderr)
    problems = check(res, expected, read_counts(), name)
    t = f", {res.time[0]} s ({res.time[1]})" if res.time else ""
    if problems:
        print(f"{name} ({res.kernel[0] if res.kernel else '?'}{t}): FAILED", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    print(f"{name} ({res.kernel[0]}{t}): as expected, "
          f"{sum(1 for m in res.modules.values() if m[0] == 'running')} running, workload counted",
          file=sys.stderr)
    return 0


def cell(state, hooks):
    if state == "running":
        return "ok"
    if state == "unsupported":
        return "no " + hooks.replace("missing:", "").replace("btf:", "").replace("tracepoint:", "tp:")
    return state + " " + hooks


def main_table(outdir, names):
    cols = []
    for n in names:
        p = os.path.join(outdir, n + ".results")
        if os.path.exists(p):
            cols.append((n, load(p)))
    if not cols:
        return 0
    rows = []
    for _n, r in cols:
        rows += [l for l in r.order if l not in rows]
    # For running rows, the programs loaded where they differ from the newest kernel.
    head = ["section"] + [f"{n} {r.kernel[1] if r.kernel else '?'}" for n, r in cols]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for label in rows:
        ref = next((r.modules[label][1] for _n, r in reversed(cols)
                    if label in r.modules and r.modules[label][0] == "running"), None)
        out = [label]
        for _n, r in cols:
            if label not in r.modules:
                out.append("-")
                continue
            state, hooks, _d = r.modules[label]
            c = cell(state, hooks)
            if state == "running" and ref and hooks != ref:
                a, b = set(hooks.split(",")), set(ref.split(","))
                c += " (" + ", ".join(["+" + x for x in sorted(a - b)] + ["-" + x for x in sorted(b - a)]) + ")"
            out.append(c)
        print("| " + " | ".join(out) + " |")
    print("| time | " + " | ".join(f"{r.time[0]} s {r.time[1]}" if r.time else "?" for _n, r in cols) + " |")
    return 0


SELF_TEST_RESULTS = """kernel\t6.1.0-57-cloud-amd64\t6.1
module\tsysfork\trunning\tsysfork_btf\tvia tp_btf
module\tbiotop_io\tunsupported\tmissing:btf:block_io_start\tno usable hook
module\tselftest_verifier\tfailed\tverifier\tBPF load failed
truth\tFORKS\t40
truth\tSKIPS\t0
workload\texit\t0
value\tsysfork\tbcc.proc.sysfork\t-\t100\t45
value\tkernel\tprocesses\t-\t1000\t50
summary\t1 running\t1 unsupported\t1 failed
probe-exit\t1
matrix-done
"""


def self_test():
    exp = {"6.1": {"sysfork": ("running", "sysfork_btf"),
                   "biotop_io": ("unsupported", "missing:btf:block_io_start"),
                   "selftest_verifier": ("failed", "verifier")}}
    rules = [(1, re.compile(r"^sysfork(@|$)"), "proc.sysfork", "-", "sum", "$FORKS-$SKIPS", "kernel:processes*1")]
    good = Results(SELF_TEST_RESULTS)
    assert check(good, exp, rules, "t") == [], check(good, exp, rules, "t")
    cases = {
        "a module that newly works": SELF_TEST_RESULTS.replace(
            "biotop_io\tunsupported\tmissing:btf:block_io_start", "biotop_io\trunning\tbtf_io_start"),
        "a module that broke": SELF_TEST_RESULTS.replace(
            "sysfork\trunning\tsysfork_btf", "sysfork\tfailed\tcore:struct task_struct.x"),
        "another hook chosen": SELF_TEST_RESULTS.replace("sysfork_btf\tvia", "sysfork_tp\tvia"),
        "a section gone": SELF_TEST_RESULTS.replace("module\tbiotop_io", "x\tbiotop_io"),
        "too few counted": SELF_TEST_RESULTS.replace("-\t100\t45", "-\t100\t39"),
        "more counted than the kernel saw": SELF_TEST_RESULTS.replace("-\t100\t45", "-\t100\t51"),
        "nothing counted": SELF_TEST_RESULTS.replace("value\tsysfork", "value\tother"),
        "the run did not finish": SELF_TEST_RESULTS.replace("matrix-done", ""),
        "exit status hides a failure": SELF_TEST_RESULTS.replace("probe-exit\t1", "probe-exit\t0"),
        "the workload failed": SELF_TEST_RESULTS.replace("workload\texit\t0", "workload\texit\t1"),
        "no expectations for the kernel": SELF_TEST_RESULTS.replace("\t6.1\n", "\t6.2\n"),
        "more skipped than allowed": SELF_TEST_RESULTS.replace("-\t100\t45", "-\t100\t38")
        .replace("SKIPS\t0", "SKIPS\t1"),
    }
    # Skips the kernel is allowed: 39 of 40 with one allowed passes.
    allowed = SELF_TEST_RESULTS.replace("-\t100\t45", "-\t100\t39").replace("SKIPS\t0", "SKIPS\t1")
    assert check(Results(allowed), exp, rules, "t") == [], check(Results(allowed), exp, rules, "t")
    assert arith("1000-20") == 980 and arith("3*2") == 6
    for what, text in cases.items():
        problems = check(Results(text), exp, rules, "t")
        assert problems, f"not caught: {what}"
        print(f"caught: {what}: {problems[0]}")
    # A running section without a counts rule is a failure too.
    assert check(good, exp, [], "t"), "a running section without a counts rule passed"
    # expected.tsv round trip.
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "e.tsv")
        with open(p, "w") as fh:
            fh.write("# header\n")
        write_expected(exp, p)
        assert read_expected(p) == exp
    print("self-test ok")
    return 0


def main(argv):
    if argv[:1] == ["--self-test"]:
        return self_test()
    if argv[:1] == ["--table"]:
        return main_table(argv[1], argv[2:])
    update = "--update" in argv
    argv = [a for a in argv if a != "--update"]
    if len(argv) != 3 or argv[0] != "--name":
        print(__doc__, file=sys.stderr)
        return 2
    return main_check(argv[1], argv[2], update)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
