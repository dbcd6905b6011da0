#!/usr/bin/env bash
# build-rootfs.sh: the fixture of the end-to-end boot test (boot_test.go).
#
# Builds a Debian bookworm root filesystem with debootstrap (minbase plus
# systemd, udev, iproute2, dbus and a Debian kernel whose initramfs holds
# virtio_blk/virtio_pci), configures it for a serial-console microVM and
# leaves in the cache directory:
#
#   rootfs/           the tree (kept for inspection and rebuilds)
#   rootfs.tar        the tree as one uncompressed tar layer (numeric
#                     owners, xattrs): the input of imagepull.BuildExt4
#   rootfs-mkfs.ext4  the tree as a 2 GiB sparse ext4 made by mkfs.ext4 -d
#                     (the test's alternative builder)
#   vmlinuz           the guest kernel
#   initrd.img        its initramfs
#   kernel-version    the kernel release
#
# Cache directory: $BANGER_BOOT_CACHE, default /var/tmp/banger-boot-cache.
# Idempotent: debootstrap runs again only when its parameters change, the
# rest only when this script changes (or a product is missing). Needs root
# and debootstrap; downloads from $BANGER_BOOT_MIRROR (default
# http://deb.debian.org/debian). Nothing of the guest is booted here.
set -euo pipefail

CACHE=${BANGER_BOOT_CACHE:-/var/tmp/banger-boot-cache}
MIRROR=${BANGER_BOOT_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
ARCH=amd64
IMAGE_SIZE=2G
HOSTNAME_GUEST=banger-boot
# systemd-logind (part of systemd) needs dbus; e2fsprogs gives
# systemd-fsck-root its fsck.ext4.
INCLUDE=systemd,systemd-sysv,udev,dbus,iproute2,kmod,e2fsprogs,initramfs-tools,zstd,linux-image-amd64

log() { printf 'build-rootfs: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"
command -v debootstrap >/dev/null || die "debootstrap not installed (apt-get install debootstrap)"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 not installed (apt-get install e2fsprogs)"

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
exec 9>"$CACHE/.lock"
flock 9 # one build at a time

R=$CACHE/rootfs
SELF=$(readlink -f "${BASH_SOURCE[0]}")
RECIPE=$(sha256sum "$SELF" | cut -c1-16)
BOOTSTRAP_KEY="$SUITE $ARCH minbase $INCLUDE $MIRROR"

# Mounts made in the tree are undone on every exit.
MOUNTED=()
cleanup() {
	local i
	for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
		umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" 2>/dev/null || :
	done
}
trap cleanup EXIT

# 1. debootstrap, cached on its parameters.
if [ -f "$CACHE/rootfs.key" ] && [ "$(cat "$CACHE/rootfs.key")" = "$BOOTSTRAP_KEY" ] && [ -x "$R/sbin/init" ]; then
	log "debootstrap: cached ($R)"
else
	rm -f "$CACHE/rootfs.key" "$CACHE/recipe"
	rm -rf "$R" "$R.tmp"
	mkdir -p "$CACHE/debs"
	log "debootstrap --variant=minbase $SUITE from $MIRROR (several minutes)"
	start=$(date +%s)
	debootstrap --variant=minbase --arch="$ARCH" --include="$INCLUDE" \
		--cache-dir="$CACHE/debs" "$SUITE" "$R.tmp" "$MIRROR" >&2 ||
		die "debootstrap failed (see $R.tmp/debootstrap/debootstrap.log)"
	# debootstrap unmounts what it mounted; make sure nothing is left.
	if findmnt -rn -o TARGET | grep -q "^$R.tmp/"; then
		die "mounts left under $R.tmp: $(findmnt -rn -o TARGET | grep "^$R.tmp/" | tr '\n' ' ')"
	fi
	mv "$R.tmp" "$R"
	printf '%s\n' "$BOOTSTRAP_KEY" >"$CACHE/rootfs.key"
	log "debootstrap: done in $(($(date +%s) - start)) s"
fi

products=(rootfs.tar rootfs-mkfs.ext4 vmlinuz initrd.img kernel-version)
have_all=1
for p in "${products[@]}"; do
	[ -s "$CACHE/$p" ] || have_all=
done
if [ -n "$have_all" ] && [ -f "$CACHE/recipe" ] && [ "$(cat "$CACHE/recipe")" = "$RECIPE" ]; then
	log "configured tree, tar, ext4 and kernel: cached (recipe $RECIPE)"
	exit 0
fi
rm -f "$CACHE/recipe"

# 2. Configure the tree for a serial-console microVM.
log "configuring $R"
# Root cannot log in: the test watches the console, it never logs in.
chroot "$R" passwd -l root >/dev/null
printf '%s\n' "$HOSTNAME_GUEST" >"$R/etc/hostname"
cat >"$R/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	$HOSTNAME_GUEST
::1		localhost ip6-localhost ip6-loopback
EOF
cat >"$R/etc/fstab" <<'EOF'
# <file system> <mount point> <type> <options> <dump> <pass>
/dev/vda / ext4 rw,errors=remount-ro 0 1
EOF
# A persistent journal, so that the test can read the guest's journal back
# from the image after power-off.
mkdir -p "$R/var/log/journal"
# The console getty (serial-getty@ttyS0) comes from systemd's getty
# generator with console=ttyS0; nothing to enable.

# The initramfs must find /dev/vda: MODULES=most (the default) includes the
# virtio drivers; list them too so that a MODULES=dep setting cannot lose
# them.
grep -q '^MODULES=most' "$R/etc/initramfs-tools/initramfs.conf" ||
	log "note: initramfs.conf does not say MODULES=most"
for m in virtio_pci virtio_blk virtio_net ext4; do
	grep -qx "$m" "$R/etc/initramfs-tools/modules" || printf '%s\n' "$m" >>"$R/etc/initramfs-tools/modules"
done
mount -t proc proc "$R/proc" && MOUNTED+=("$R/proc")
chroot "$R" update-initramfs -u -k all >&2
chroot "$R" apt-get clean

kver=$(find "$R/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n 1)
[ -n "$kver" ] || die "no kernel in $R/boot"
[ -f "$R/boot/initrd.img-$kver" ] || die "no initramfs $R/boot/initrd.img-$kver"
listing=$(chroot "$R" lsinitramfs "/boot/initrd.img-$kver")
for m in virtio_pci virtio_blk ext4; do
	if printf '%s\n' "$listing" | grep -Eq "/$m\.ko(\.xz|\.zst|\.gz)?$"; then
		log "initramfs: $m module present"
	elif grep -Eq "/$m\.ko$" "$R/lib/modules/$kver/modules.builtin"; then
		log "initramfs: $m built into the kernel"
	else
		die "initramfs /boot/initrd.img-$kver lacks $m"
	fi
done
umount "$R/proc"
MOUNTED=()

cp "$R/boot/vmlinuz-$kver" "$CACHE/vmlinuz.tmp" && mv "$CACHE/vmlinuz.tmp" "$CACHE/vmlinuz"
cp "$R/boot/initrd.img-$kver" "$CACHE/initrd.img.tmp" && mv "$CACHE/initrd.img.tmp" "$CACHE/initrd.img"
printf '%s\n' "$kver" >"$CACHE/kernel-version"
log "kernel $kver: $CACHE/vmlinuz, $CACHE/initrd.img"

# 3. The tree as one tar layer, for imagepull.BuildExt4.
log "tar: $CACHE/rootfs.tar"
tar --numeric-owner --xattrs --xattrs-include='*' -C "$R" -cf "$CACHE/rootfs.tar.tmp" .
mv "$CACHE/rootfs.tar.tmp" "$CACHE/rootfs.tar"

# 4. The tree as an ext4 made by mkfs.ext4 -d (the alternative builder).
log "mkfs.ext4 -d: $CACHE/rootfs-mkfs.ext4 ($IMAGE_SIZE sparse)"
rm -f "$CACHE/rootfs-mkfs.ext4.tmp"
truncate -s "$IMAGE_SIZE" "$CACHE/rootfs-mkfs.ext4.tmp"
mkfs.ext4 -q -F -L rootfs -d "$R" "$CACHE/rootfs-mkfs.ext4.tmp"
mv "$CACHE/rootfs-mkfs.ext4.tmp" "$CACHE/rootfs-mkfs.ext4"

printf '%s\n' "$RECIPE" >"$CACHE/recipe"
log "done: $(du -sh --apparent-size "$CACHE/rootfs.tar" | cut -f1) tar, kernel $kver"
