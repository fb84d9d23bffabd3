#!/bin/sh
# The known work the kernel matrix's modules must count (pmdabcc --probe --workload runs it
# after loading them). Prints its own quantities as `truth` records; the checker compares
# each module's count with them (lower bounds) and with the kernel's counts (upper bounds).
# Environment: DISK (a block device name under /dev to read, e.g. nullb0 or loop3),
# BB (busybox, for dd and nc), TRUE (an external program that exits 0), SKIP_PERCENT (how
# many of the block completions the kernel may run no BPF program for, in percent; 0),
# IRQ_FILE (a file on a real disk: one O_DIRECT write there makes a device interrupt; the
# VMs' serial port, which the results go out on, makes theirs).
set -eu
: "${DISK:?DISK names the block device to read}"
BB=${BB:-busybox}
TRUE=${TRUE:-/usr/bin/true}
FORKS=40     # fork + exec of an external program
READS=1000   # O_DIRECT 4 KiB reads, one request each
SESSIONS=3   # loopback TCP sessions
PORT=7531
OPENS=20
truth() { printf 'truth\t%s\t%s\n' "$1" "$2"; }
truth FORKS $FORKS
truth READS $READS
truth SESSIONS $SESSIONS
truth PORT $PORT
truth DISK "$DISK"
truth CPUS "$(grep -c ^processor /proc/cpuinfo)"
# The kernel skips tracing programs for some hits on some machines (see the README's notes):
# that many completions may go uncounted.
truth SKIPS $((READS * ${SKIP_PERCENT:-0} / 100))

i=0
while [ $i -lt $FORKS ]; do "$TRUE"; i=$((i + 1)); done

$BB dd if="/dev/$DISK" of=/dev/null bs=4096 count=$READS iflag=direct 2>/dev/null

i=0
while [ $i -lt $SESSIONS ]; do
    $BB nc -l -p $PORT >/dev/null &
    server=$!
    # Until the server listens; refused attempts are no sessions (they never reach
    # ESTABLISHED) and only raise the kernel's count, the upper bound.
    n=0
    until echo hello | $BB nc 127.0.0.1 $PORT 2>/dev/null; do
        n=$((n + 1))
        [ $n -lt 100 ] || { echo "workload: no TCP server on port $PORT" >&2; exit 1; }
        sleep 0.05
    done
    wait $server
    i=$((i + 1))
done

if [ -n "${IRQ_FILE:-}" ]; then
    $BB dd if=/dev/zero of="$IRQ_FILE" bs=4096 count=1 oflag=direct conv=fsync 2>/dev/null
    rm -f "$IRQ_FILE"
fi

i=0
while [ $i -lt $OPENS ]; do : <"/dev/$DISK"; i=$((i + 1)); done
truth OPENS $OPENS
