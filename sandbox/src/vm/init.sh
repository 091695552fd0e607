#!/bin/busybox sh
# stele guest init, run from the initramfs: load the virtio modules, mount
# the read-only root, give it a private /run and /tmp, move the agent
# (appended to the initramfs by the host) into /run and hand over to it.
B=/bin/busybox
fail() { echo "stele-init: FAILED: $*"; $B poweroff -f; }
$B mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
$B mount -t proc proc /proc || fail "mount /proc"
$B mount -t sysfs sysfs /sys || fail "mount /sys"
for m in @MODULES@; do
  $B insmod "/modules/$m.ko" || fail "insmod $m"
done
n=0
while [ ! -b /dev/vda ]; do
  n=$((n + 1)); [ "$n" -gt 500 ] && fail "no /dev/vda"
  $B usleep 10000
done
$B mount -t ext4 -o ro,noatime /dev/vda /newroot || fail "mount root"
$B mount -t tmpfs -o mode=0755,size=64m,nosuid,nodev tmpfs /newroot/run || fail "mount /run"
$B mount -t tmpfs -o mode=1777,size=256m,nosuid,nodev tmpfs /newroot/tmp || fail "mount /tmp"
[ -f /stele-guest ] || fail "no agent in the initramfs"
$B cp /stele-guest /newroot/run/stele-guest && $B chmod 0555 /newroot/run/stele-guest || fail "copy agent"
$B mount --move /dev /newroot/dev && $B mount --move /proc /newroot/proc && $B mount --move /sys /newroot/sys || fail "move mounts"
echo "stele-init: switching to the agent"
exec $B switch_root /newroot /run/stele-guest
