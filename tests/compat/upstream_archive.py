#!/usr/bin/python3
"""Writes a PCP archive as PCP's Python pmdabcc (removed from PCP in 2026) recorded its
metrics: its names, PMIDs (149.cluster.item, item = position in the module's metric list),
types, semantics, units and instance domains (one per module, serial = cluster), with two
samples of made-up values. Usage: upstream_archive.py ARCHIVE HOST START [--old-netproc-names] (HOST: the host name it
records, START: the first sample's time, seconds since the epoch; --old-netproc-names: the
names netproc had before PCP renamed them to bcc.proc.net.*)."""
import sys
from pcp import pmi
import cpmapi as c

U, S, STR = c.PM_TYPE_U32, c.PM_TYPE_U64, c.PM_TYPE_STRING
CNT, INST = c.PM_SEM_COUNTER, c.PM_SEM_INSTANT
NONE, COUNT, BYTES, USEC = "none", "count", "bytes", "usec"

# cluster: (metric prefix, [(name, type, semantics, units)], instances (id, name))
MODULES = {
    0: ("disk.all.", [("latency", S, CNT, USEC)], [(0, "0-1"), (1, "2-3"), (2, "4-7")]),
    2: ("proc.", [("sysfork", S, CNT, COUNT)], None),
    3: ("proc.io.net.tcp.", [("pid", U, INST, NONE), ("comm", STR, INST, NONE), ("laddr", STR, INST, NONE),
                             ("lport", U, INST, NONE), ("daddr", STR, INST, NONE), ("dport", U, INST, NONE),
                             ("tx", S, INST, BYTES), ("rx", S, INST, BYTES), ("duration", U, INST, USEC)],
        [(0, "0"), (1, "1")]),
    4: ("runq.", [("latency", S, CNT, USEC)], [(0, "0-1"), (1, "2-3"), (2, "4-7")]),
    10: ("proc.io.perdev.", [("pid", U, INST, NONE), ("comm", STR, INST, NONE), ("direction", STR, INST, NONE),
                             ("major", U, INST, NONE), ("minor", U, INST, NONE), ("disk", STR, INST, NONE),
                             ("io", U, INST, NONE), ("bytes", S, INST, BYTES), ("duration", U, INST, USEC)],
         [(0, "0"), (1, "1")]),
    12: ("proc.io.net.tcptop.", [("pid", U, INST, NONE), ("comm", STR, INST, NONE), ("laddr", STR, INST, NONE),
                                 ("lport", U, INST, NONE), ("daddr", STR, INST, NONE), ("dport", U, INST, NONE),
                                 ("rx", S, INST, BYTES), ("tx", S, INST, BYTES)],
         [(0, "0"), (1, "1")]),
    40: ("proc.net.", [("tcp.send.calls", S, CNT, COUNT), ("tcp.send.bytes", S, CNT, BYTES),
                       ("tcp.recv.calls", S, CNT, COUNT), ("tcp.recv.bytes", S, CNT, BYTES),
                       ("udp.send.calls", S, CNT, COUNT), ("udp.send.bytes", S, CNT, BYTES),
                       ("udp.recv.calls", S, CNT, COUNT), ("udp.recv.bytes", S, CNT, BYTES)],
         [(1234, "001234 python3"), (4321, "004321 curl")]),
}

log = pmi.pmiLogImport(sys.argv[1])
if "--old-netproc-names" in sys.argv:
    MODULES[40] = ("proc.io.net.perpid.",) + MODULES[40][1:]
log.pmiSetHostname(sys.argv[2])
log.pmiSetTimezone("UTC")
units = {
    NONE: log.pmiUnits(0, 0, 0, 0, 0, 0),
    COUNT: log.pmiUnits(0, 0, 1, 0, 0, c.PM_COUNT_ONE),
    BYTES: log.pmiUnits(1, 0, 0, c.PM_SPACE_BYTE, 0, 0),
    USEC: log.pmiUnits(0, 1, 0, 0, c.PM_TIME_USEC, 0),
}
for cluster, (prefix, metrics, insts) in MODULES.items():
    indom = c.PM_INDOM_NULL if insts is None else log.pmiInDom(149, cluster)
    for (i, n) in insts or []:
        log.pmiAddInstance(indom, n, i)
    for item, (name, ty, sem, u) in enumerate(metrics):
        log.pmiAddMetric("bcc." + prefix + name, log.pmiID(149, cluster, item), ty, indom, sem, units[u])

start = int(sys.argv[3])
for t, step in ((start, 1), (start + 1, 2)):
    for cluster, (prefix, metrics, insts) in MODULES.items():
        for item, (name, ty, sem, u) in enumerate(metrics):
            for (i, n) in insts or [(None, "")]:
                v = "x%d" % step if ty == STR else str(step * (item + 1) * 10 + (i or 0) % 7)
                log.pmiPutValue("bcc." + prefix + name, n, v)
    log.pmiWrite(t, 0)
log.pmiEnd()
