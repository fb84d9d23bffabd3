"""Small libbpf (libbpf.so.1, through ctypes) helpers for the benchmarks: loading the
do-nothing floor programs, the batched map-read floor, and reading which BPF programs and
maps a process holds (from /proc/<pid>/fdinfo, the same for every agent)."""

import ctypes
import ctypes.util
import os
import time

_lib = None


def lib():
    global _lib
    if _lib is None:
        _lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        _lib.bpf_object__open_file.restype = ctypes.c_void_p
        _lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        _lib.bpf_object__load.argtypes = [ctypes.c_void_p]
        _lib.bpf_object__next_program.restype = ctypes.c_void_p
        _lib.bpf_object__next_program.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        _lib.bpf_program__attach.restype = ctypes.c_void_p
        _lib.bpf_program__attach.argtypes = [ctypes.c_void_p]
        _lib.bpf_program__name.restype = ctypes.c_char_p
        _lib.bpf_program__name.argtypes = [ctypes.c_void_p]
        _lib.libbpf_get_error.argtypes = [ctypes.c_void_p]
        _lib.libbpf_get_error.restype = ctypes.c_long
        _lib.bpf_map_create.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p]
        _lib.bpf_map_update_batch.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32), ctypes.c_void_p]
        _lib.bpf_map_lookup_batch.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32), ctypes.c_void_p]
        _lib.bpf_map_lookup_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        _lib.bpf_map_get_next_key.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    return _lib


def load_and_attach(path):
    """Opens, loads and attaches every program of a BPF object; returns the program names.
    The programs stay attached while this process lives."""
    L = lib()
    obj = L.bpf_object__open_file(path.encode(), None)
    if not obj or L.libbpf_get_error(obj):
        raise OSError("cannot open %s" % path)
    r = L.bpf_object__load(obj)
    if r:
        raise OSError(-r, "cannot load %s: %s" % (path, os.strerror(-r)))
    names = []
    prog = L.bpf_object__next_program(obj, None)
    while prog:
        link = L.bpf_program__attach(prog)
        if not link or L.libbpf_get_error(link):
            raise OSError("cannot attach %s" % L.bpf_program__name(prog).decode())
        names.append(L.bpf_program__name(prog).decode())
        prog = L.bpf_object__next_program(obj, prog)
    return names


class BatchOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


BPF_MAP_TYPE_HASH = 1


def batch_read_floor(n, key_size=16, value_size=64, batch=4096, reps=3):
    """Per-element cost (ns) of reading a full hash map of n entries with
    BPF_MAP_LOOKUP_BATCH, looped until ENOENT (one call stops early on hash maps), plus
    the per-key cost (get_next_key + lookup_elem per entry) for comparison. Best of reps."""
    L = lib()
    fd = L.bpf_map_create(BPF_MAP_TYPE_HASH, b"bench_floor", key_size, value_size, n, None)
    if fd < 0:
        raise OSError(-fd, "bpf_map_create(%d): %s" % (n, os.strerror(-fd)))
    try:
        keys = (ctypes.c_uint8 * (key_size * n))()
        vals = (ctypes.c_uint8 * (value_size * n))()
        for i in range(n):
            ctypes.memmove(ctypes.byref(keys, i * key_size), (i + 1).to_bytes(8, "little"), 8)
        opts = BatchOpts(ctypes.sizeof(BatchOpts), 0, 0)
        cnt = ctypes.c_uint32(n)
        r = L.bpf_map_update_batch(fd, keys, vals, ctypes.byref(cnt), ctypes.byref(opts))
        if r or cnt.value != n:
            raise OSError(-r, "bpf_map_update_batch: %s (%d of %d)" % (os.strerror(-r), cnt.value, n))
        okeys = (ctypes.c_uint8 * (key_size * batch))()
        ovals = (ctypes.c_uint8 * (value_size * batch))()
        tok_in = (ctypes.c_uint8 * max(key_size, 8))()
        tok_out = (ctypes.c_uint8 * max(key_size, 8))()
        best_batch = None
        for _ in range(reps):
            total = 0
            t0 = time.perf_counter_ns()
            first = True
            while True:
                c = ctypes.c_uint32(batch)
                r = L.bpf_map_lookup_batch(fd, None if first else tok_in, tok_out, okeys, ovals, ctypes.byref(c), ctypes.byref(opts))
                total += c.value
                if r and ctypes.get_errno() != 2 and -r != 2:
                    raise OSError(-r, "bpf_map_lookup_batch: %s" % os.strerror(-r))
                if r:
                    break
                ctypes.memmove(tok_in, tok_out, len(tok_in))
                first = False
            dt = time.perf_counter_ns() - t0
            if total != n:
                raise RuntimeError("batch read %d of %d entries" % (total, n))
            best_batch = dt / n if best_batch is None else min(best_batch, dt / n)
        # per key: only on up to 10,000 entries (it is the slow path)
        m = min(n, 10000)
        cur = (ctypes.c_uint8 * key_size)()
        nxt = (ctypes.c_uint8 * key_size)()
        val = (ctypes.c_uint8 * value_size)()
        best_key = None
        for _ in range(reps):
            t0 = time.perf_counter_ns()
            k = 0
            first = True
            while k < m:
                if L.bpf_map_get_next_key(fd, None if first else cur, nxt):
                    break
                L.bpf_map_lookup_elem(fd, nxt, val)
                ctypes.memmove(cur, nxt, key_size)
                first = False
                k += 1
            dt = time.perf_counter_ns() - t0
            best_key = dt / k if best_key is None else min(best_key, dt / k)
        return best_batch, best_key
    finally:
        os.close(fd)


def bpf_objects(pid):
    """The BPF programs and maps a process holds: ({prog_id}, {map_id: memlock bytes})."""
    progs, maps = set(), {}
    fddir = "/proc/%d/fd" % pid
    for fd in os.listdir(fddir):
        try:
            target = os.readlink("%s/%s" % (fddir, fd))
        except OSError:
            continue
        if target not in ("anon_inode:bpf-prog", "anon_inode:bpf-map"):
            continue
        try:
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                info = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
        except OSError:
            continue
        if "prog_id" in info:
            progs.add(int(info["prog_id"]))
        elif "map_id" in info:
            maps[int(info["map_id"])] = int(info.get("memlock", "0"))
    return progs, maps


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 3 and sys.argv[1] == "floor":
        # Loads the floor programs, says so on stdout, and keeps them attached until stdin closes.
        names = load_and_attach(sys.argv[2])
        print("attached " + " ".join(names), flush=True)
        sys.stdin.read()
    elif len(sys.argv) >= 2 and sys.argv[1] == "batch":
        for n in [int(a) for a in sys.argv[2:]] or [100, 1000, 10000, 100000]:
            b, k = batch_read_floor(n)
            print("%7d entries: batched %.3f us/elem, per key %.3f us/elem" % (n, b / 1000, k / 1000))
    else:
        print("usage: bpfutil.py floor OBJ | batch [N...]", file=sys.stderr)
        sys.exit(2)
