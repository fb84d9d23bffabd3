#!/bin/busybox sh
# /init of the kernel matrix's initramfs: mounts what the agent needs, makes a disk for the
# workload, runs `pmdabcc --probe` with its report on the second serial port (ttyS1; the
# kernel's console is ttyS0), and powers off.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
exec >/dev/ttyS1 2>&1
printf 'boot\t%s\n' "$(cut -d' ' -f1 /proc/uptime)"
ip link set lo up

for m in $(cat /etc/modules); do
    case $m in
        null_blk) insmod /lib/modules/null_blk.ko nr_devices=1 ;;
        *) insmod /lib/modules/$m.ko ;;
    esac
done
if [ -b /dev/nullb0 ]; then
    DISK=nullb0
else
    # No null_blk in this kernel: a loop device over a file in tmpfs.
    dd if=/dev/zero of=/tmp/disk.img bs=1M count=16 2>/dev/null
    DISK=$(basename "$(losetup -f)")
    losetup "/dev/$DISK" /tmp/disk.img
fi
export DISK BB=/bin/busybox TRUE=/usr/bin/true

set --
while read -r a; do set -- "$@" "$a"; done </etc/probe-args
/bin/pmdabcc "$@"
printf 'probe-exit\t%s\n' "$?"
printf 'done\t%s\n' "$(cut -d' ' -f1 /proc/uptime)"
echo matrix-done
sync
poweroff -f
