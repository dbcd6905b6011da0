#!/usr/bin/env bash
# build-rootfs.sh: the fixtures of the end-to-end boot test (boot_test.go).
#
#   build-rootfs.sh GUEST      GUEST: systemd, sysvinit, openrc, busybox
#   build-rootfs.sh kernel     only the shared kernel
#
# Every guest boots the same Debian bookworm kernel and initramfs, made
# once in $CACHE/kernel/ from a debootstrap tree with linux-image-amd64 and
# initramfs-tools (its initramfs holds virtio_pci, virtio_blk, virtio_net
# and ext4, and mounts /dev/vda whatever init the root has):
#
#   kernel/rootfs/     the kernel tree (its /lib/modules is copied into
#                      the guests, busybox-static's binary into busybox)
#   kernel/vmlinuz, kernel/initrd.img, kernel/kernel-version
#
# The guests, in $CACHE/GUEST/:
#
#   systemd    debootstrap minbase + systemd, systemd-sysv, udev, dbus
#   sysvinit   debootstrap minbase + sysvinit-core, sysv-rc (with insserv
#              and startpar: makefile-style concurrent boot), udev
#   openrc     debootstrap minbase + sysvinit-core, udev, then apt-get
#              install openrc in the tree (it replaces sysv-rc, which
#              debootstrap always installs)
#   busybox    no debootstrap: busybox-static's binary and its applet
#              links (non-merged /bin, /sbin, /usr/bin, /usr/sbin), an
#              /etc/init.d/rcS that mounts the kernel filesystems, no
#              /etc/inittab, and the kernel's vsock/virtio modules
#
# The Debian guests also get iproute2, kmod, e2fsprogs and the kernel's
# whole /lib/modules/VERSION (what linux-image-amd64 would install). Each
# guest directory holds:
#
#   rootfs/           the tree (kept for inspection and rebuilds)
#   rootfs.tar        the tree as one uncompressed tar layer (numeric
#                     owners, xattrs): the input of imagepull.BuildExt4
#   rootfs-mkfs.ext4  the tree as a 2 GiB sparse ext4 made by mkfs.ext4 -d
#                     (the test's alternative builder)
#
# Cache directory: $BANGER_BOOT_CACHE, default /var/tmp/banger-boot-cache;
# downloaded packages are shared in $CACHE/debs. Idempotent: debootstrap
# runs again only when its parameters change, the rest only when this
# script changes (or a product is missing). Needs root and debootstrap;
# downloads from $BANGER_BOOT_MIRROR (default http://deb.debian.org/debian).
# Nothing is booted here.
set -euo pipefail

GUEST=${1:-systemd}
CACHE=${BANGER_BOOT_CACHE:-/var/tmp/banger-boot-cache}
MIRROR=${BANGER_BOOT_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
ARCH=amd64
IMAGE_SIZE=2G

# What debootstrap adds to minbase, per tree; and what it leaves out.
KERNEL_INCLUDE=linux-image-amd64,initramfs-tools,zstd,kmod,busybox-static
INITRAMFS_MODULES="virtio_pci virtio_blk virtio_net ext4"
# systemd-logind (part of systemd) needs dbus; e2fsprogs gives the root
# file system check its fsck.ext4.
SYSTEMD_INCLUDE=systemd,systemd-sysv,udev,dbus,iproute2,kmod,e2fsprogs
SYSVINIT_INCLUDE=sysvinit-core,sysv-rc,udev,iproute2,kmod,e2fsprogs,procps
# initscripts and sysvinit-core depend on "sysv-rc | file-rc | openrc":
# debootstrap resolves that to sysv-rc, even with --exclude=sysv-rc (its
# dependency resolver adds excluded packages back; seen: dpkg then
# refuses sysv-rc, "openrc conflicts with sysv-rc", and debootstrap
# fails). So the openrc tree starts as a sysvinit one and apt-get in the
# tree swaps sysv-rc for openrc, as on an installed Debian system.
OPENRC_INCLUDE=sysvinit-core,udev,iproute2,kmod,e2fsprogs,procps

log() { printf 'build-rootfs[%s]: %s\n' "$GUEST" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

case $GUEST in
kernel | systemd | sysvinit | openrc | busybox) ;;
*) die "unknown guest \"$GUEST\" (want systemd, sysvinit, openrc, busybox or kernel)" ;;
esac

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"
command -v debootstrap >/dev/null || die "debootstrap not installed (apt-get install debootstrap)"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 not installed (apt-get install e2fsprogs)"
command -v depmod >/dev/null || die "depmod not installed (apt-get install kmod)"

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
exec 9>"$CACHE/.lock"
flock 9 # one build at a time

SELF=$(readlink -f "${BASH_SOURCE[0]}")
RECIPE=$(sha256sum "$SELF" | cut -c1-16)

# Mounts made in a tree are undone on every exit.
MOUNTED=()
cleanup() {
	local i
	for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
		umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" 2>/dev/null || :
	done
}
trap cleanup EXIT

# bootstrap DIR INCLUDE EXCLUDE: debootstrap --variant=minbase into
# DIR/rootfs, cached on its parameters (DIR/rootfs.key).
bootstrap() {
	local dir=$1 include=$2 exclude=$3
	local r=$dir/rootfs key="$SUITE $ARCH minbase include=$2 exclude=$3 $MIRROR"
	if [ -f "$dir/rootfs.key" ] && [ "$(cat "$dir/rootfs.key")" = "$key" ] && [ -x "$r/usr/bin/dpkg" ]; then
		log "debootstrap: cached ($r)"
		return 0
	fi
	rm -f "$dir/rootfs.key" "$dir/recipe"
	rm -rf "$r" "$r.tmp"
	mkdir -p "$dir" "$CACHE/debs"
	log "debootstrap --variant=minbase $SUITE from $MIRROR (several minutes)"
	local start args=(--variant=minbase --arch="$ARCH" --include="$include")
	[ -z "$exclude" ] || args+=(--exclude="$exclude")
	start=$(date +%s)
	# The archive times out now and then: try again, from scratch.
	local try
	for try in 1 2 3; do
		if debootstrap "${args[@]}" --cache-dir="$CACHE/debs" "$SUITE" "$r.tmp" "$MIRROR" >&2; then
			break
		fi
		[ "$try" -lt 3 ] || die "debootstrap failed 3 times (see $r.tmp/debootstrap/debootstrap.log)"
		log "debootstrap failed (try $try); again in 30 s"
		grep -q "^$r.tmp/" <<<"$(findmnt -rn -o TARGET)" && die "mounts left under $r.tmp after a failed debootstrap"
		rm -rf "$r.tmp"
		sleep 30
	done
	# debootstrap unmounts what it mounted; make sure nothing is left.
	if grep -q "^$r.tmp/" <<<"$(findmnt -rn -o TARGET)"; then
		die "mounts left under $r.tmp: $(findmnt -rn -o TARGET | grep "^$r.tmp/" | tr '\n' ' ')"
	fi
	mv "$r.tmp" "$r"
	printf '%s\n' "$key" >"$dir/rootfs.key"
	log "debootstrap: done in $(($(date +%s) - start)) s"
}

# cached DIR PRODUCT...: whether DIR's products exist and were made by
# this version of the script.
cached() {
	local dir=$1 p
	shift
	for p in "$@"; do
		[ -s "$dir/$p" ] || return 1
	done
	[ -f "$dir/recipe" ] && [ "$(cat "$dir/recipe")" = "$RECIPE" ]
}

# initramfs_has R KVER: whether R's /boot/initrd.img-KVER holds (or the
# kernel has built in) every module of INITRAMFS_MODULES.
initramfs_has() {
	local r=$1 kver=$2 listing m
	listing=$(chroot "$r" lsinitramfs "/boot/initrd.img-$kver") || return 1
	for m in $INITRAMFS_MODULES; do
		# A here-string, not a pipe: grep -q stops reading at the first
		# match, and under pipefail the writer's SIGPIPE would fail it.
		if grep -Eq "/$m\.ko(\.xz|\.zst|\.gz)?$" <<<"$listing"; then
			log "initramfs: $m module present"
		elif grep -Eq "/$m\.ko$" "$r/lib/modules/$kver/modules.builtin"; then
			log "initramfs: $m built into the kernel"
		else
			log "initramfs: no $m"
			return 1
		fi
	done
}

# The shared kernel: vmlinuz, an initramfs that can mount /dev/vda, and the
# module tree.
K=$CACHE/kernel
build_kernel() {
	bootstrap "$K" "$KERNEL_INCLUDE" ""
	# Not the script's hash: editing a guest's recipe must not redo the
	# (slow) initramfs.
	local recipe="kernel-1 $KERNEL_INCLUDE $INITRAMFS_MODULES"
	if [ -s "$K/vmlinuz" ] && [ -s "$K/initrd.img" ] && [ -s "$K/kernel-version" ] &&
		[ "$(cat "$K/recipe" 2>/dev/null)" = "$recipe" ]; then
		log "kernel $(cat "$K/kernel-version"): cached"
		return 0
	fi
	rm -f "$K/recipe"
	local r=$K/rootfs kver m
	kver=$(find "$r/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n 1)
	[ -n "$kver" ] || die "no kernel in $r/boot"
	# The initramfs must find /dev/vda: MODULES=most (the default)
	# includes the virtio drivers; list them too so that a MODULES=dep
	# setting cannot lose them. The one linux-image's postinst made is
	# kept when it already has them.
	for m in $INITRAMFS_MODULES; do
		grep -qx "$m" "$r/etc/initramfs-tools/modules" || printf '%s\n' "$m" >>"$r/etc/initramfs-tools/modules"
	done
	mount -t proc proc "$r/proc" && MOUNTED+=("$r/proc")
	if [ ! -f "$r/boot/initrd.img-$kver" ] || ! initramfs_has "$r" "$kver"; then
		chroot "$r" update-initramfs -u -k "$kver" >&2
	fi
	initramfs_has "$r" "$kver" || die "initramfs /boot/initrd.img-$kver lacks a module of: $INITRAMFS_MODULES"
	chroot "$r" apt-get clean
	umount "$r/proc"
	MOUNTED=()
	cp "$r/boot/vmlinuz-$kver" "$K/vmlinuz.tmp" && mv "$K/vmlinuz.tmp" "$K/vmlinuz"
	cp "$r/boot/initrd.img-$kver" "$K/initrd.img.tmp" && mv "$K/initrd.img.tmp" "$K/initrd.img"
	printf '%s\n' "$kver" >"$K/kernel-version"
	printf '%s\n' "$recipe" >"$K/recipe"
	log "kernel $kver: $K/vmlinuz, $K/initrd.img"
}

# common_debian R: what every debootstrap guest gets: no root login, a
# host name, /dev/vda as the root, the kernel's modules.
common_debian() {
	local r=$1 kver
	kver=$(cat "$K/kernel-version")
	# Root cannot log in: the test watches the console, it never logs in.
	chroot "$r" passwd -l root >/dev/null
	printf 'banger-%s\n' "$GUEST" >"$r/etc/hostname"
	cat >"$r/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	banger-$GUEST
::1		localhost ip6-localhost ip6-loopback
EOF
	cat >"$r/etc/fstab" <<'EOF'
# <file system> <mount point> <type> <options> <dump> <pass>
/dev/vda / ext4 rw,errors=remount-ro 0 1
EOF
	rm -rf "$r/lib/modules/$kver"
	mkdir -p "$r/lib/modules"
	cp -a "$K/rootfs/lib/modules/$kver" "$r/lib/modules/"
	chroot "$r" apt-get clean
}

# module_closure KVER MODULE...: the modules.dep paths of the modules and
# everything they depend on, built-in ones left out.
module_closure() {
	local kver=$1 dep=$K/rootfs/lib/modules/$1/modules.dep m line out=() seen=" "
	shift
	local queue=("$@")
	while [ ${#queue[@]} -gt 0 ]; do
		m=${queue[0]}
		queue=("${queue[@]:1}")
		case $seen in *" $m "*) continue ;; esac
		seen="$seen$m "
		line=$(grep -E "(^|/)${m//_/[_-]}\.ko(\.[a-z]+)?:" "$dep" || :)
		if [ -z "$line" ]; then
			grep -Eq "/${m//_/[_-]}\.ko$" "$K/rootfs/lib/modules/$kver/modules.builtin" ||
				die "module $m: neither in modules.dep nor built in"
			continue
		fi
		out+=("${line%%:*}")
		for d in ${line#*:}; do
			d=${d##*/}
			queue+=("${d%%.ko*}")
		done
	done
	printf '%s\n' "${out[@]}"
}

build_busybox() {
	local r=$1 kver bb d p
	kver=$(cat "$K/kernel-version")
	bb=$K/rootfs/bin/busybox
	[ -x "$bb" ] || die "no busybox in the kernel tree ($bb)"
	rm -rf "$r" "$r.tmp"
	mkdir -p "$r.tmp"
	for d in bin sbin usr/bin usr/sbin etc/init.d dev proc sys run tmp root var/log "lib/modules/$kver"; do
		mkdir -p "$r.tmp/$d"
	done
	chmod 1777 "$r.tmp/tmp"
	chmod 700 "$r.tmp/root"
	cp "$bb" "$r.tmp/bin/busybox"
	chmod 755 "$r.tmp/bin/busybox"
	# Every applet as a symlink at busybox's own path for it
	# (/sbin/init -> /bin/busybox, /bin/sh, /sbin/modprobe, /bin/ip...).
	chroot "$r.tmp" /bin/busybox --install -s
	[ "$(readlink "$r.tmp/sbin/init")" = /bin/busybox ] || die "busybox --install made no /sbin/init link"
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r.tmp/etc/passwd"
	printf 'root:!:19000:0:99999:7:::\n' >"$r.tmp/etc/shadow"
	chmod 640 "$r.tmp/etc/shadow"
	printf 'root:x:0:\n' >"$r.tmp/etc/group"
	printf 'banger-busybox\n' >"$r.tmp/etc/hostname"
	printf '/dev/vda / ext4 rw 0 1\n' >"$r.tmp/etc/fstab"
	# busybox init's default table (there is no /etc/inittab: the
	# injector writes one) runs /etc/init.d/rcS first; this one is the
	# image's own, not banger's.
	cat >"$r.tmp/etc/init.d/rcS" <<'EOF'
#!/bin/sh
# The busybox guest's boot script (test/boot/build-rootfs.sh).
# The initramfs hands over /proc, /sys, /dev and /run mounted; a boot
# without one has none of them. (busybox-static has no mountpoint applet.)
[ -e /proc/mounts ] || mount -t proc proc /proc
mounted() { grep -q "^[^ ]* $1 " /proc/mounts; }
mounted /sys || mount -t sysfs sysfs /sys
mounted /dev || mount -t devtmpfs devtmpfs /dev
mounted /run || mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mounted /tmp || mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -o remount,rw /
hostname -F /etc/hostname
echo "rcS: busybox guest up"
EOF
	chmod 755 "$r.tmp/etc/init.d/rcS"
	# The modules the guest needs from the kernel package: vsock for the
	# agent (virtio_blk and virtio_net are loaded by the initramfs, and
	# listed for a boot without one).
	for p in $(module_closure "$kver" vsock vmw_vsock_virtio_transport virtio_net virtio_blk virtio_pci); do
		mkdir -p "$r.tmp/lib/modules/$kver/$(dirname "$p")"
		cp "$K/rootfs/lib/modules/$kver/$p" "$r.tmp/lib/modules/$kver/$p"
	done
	cp "$K/rootfs/lib/modules/$kver/modules.builtin" "$K/rootfs/lib/modules/$kver/modules.order" "$r.tmp/lib/modules/$kver/"
	[ ! -e "$K/rootfs/lib/modules/$kver/modules.builtin.modinfo" ] ||
		cp "$K/rootfs/lib/modules/$kver/modules.builtin.modinfo" "$r.tmp/lib/modules/$kver/"
	depmod -b "$r.tmp" "$kver"
	log "busybox: $(find "$r.tmp/lib/modules/$kver" -name '*.ko*' | wc -l) modules: $(find "$r.tmp/lib/modules/$kver" -name '*.ko*' -printf '%f ' )"
	mv "$r.tmp" "$r"
}

# installed R PKG: whether dpkg in tree R has PKG installed.
installed() {
	[ "$(chroot "$1" dpkg-query -W -f='${Status}' "$2" 2>/dev/null)" = "install ok installed" ]
}

# install_openrc R: apt-get install openrc in the sysvinit tree R (it
# removes sysv-rc; insserv and startpar stay, unused). Idempotent.
install_openrc() {
	local r=$1 try
	if [ -x "$r/sbin/openrc" ] && ! installed "$r" sysv-rc; then
		log "openrc: installed (cached)"
		return 0
	fi
	mount -t proc proc "$r/proc" && MOUNTED+=("$r/proc")
	for try in 1 2 3; do
		if chroot "$r" apt-get -q update >&2 &&
			chroot "$r" env DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends openrc >&2; then
			break
		fi
		[ "$try" -lt 3 ] || die "apt-get install openrc failed 3 times"
		log "apt-get install openrc failed (try $try); again in 30 s"
		sleep 30
	done
	chroot "$r" apt-get clean
	umount "$r/proc"
	MOUNTED=()
	[ -x "$r/sbin/openrc" ] || die "apt-get install openrc left no /sbin/openrc"
	! installed "$r" sysv-rc || die "sysv-rc still installed beside openrc"
	log "openrc: installed, sysv-rc removed"
}

build_kernel
[ "$GUEST" != kernel ] || exit 0

G=$CACHE/$GUEST
R=$G/rootfs
case $GUEST in
systemd) bootstrap "$G" "$SYSTEMD_INCLUDE" "" ;;
sysvinit) bootstrap "$G" "$SYSVINIT_INCLUDE" "" ;;
openrc)
	bootstrap "$G" "$OPENRC_INCLUDE" ""
	install_openrc "$R"
	;;
esac

if cached "$G" rootfs.tar rootfs-mkfs.ext4; then
	log "configured tree, tar and ext4: cached (recipe $RECIPE)"
	exit 0
fi
rm -f "$G/recipe"

log "configuring $R"
case $GUEST in
systemd)
	common_debian "$R"
	# A persistent journal, so that the test can read the guest's journal
	# back from the image after power-off. The console getty
	# (serial-getty@ttyS0) comes from systemd's getty generator with
	# console=ttyS0; nothing to enable.
	mkdir -p "$R/var/log/journal"
	;;
sysvinit)
	common_debian "$R"
	for f in .depend.boot .depend.start .depend.stop; do
		[ -s "$R/etc/init.d/$f" ] || die "sysv-rc tree without /etc/init.d/$f: no makefile-style boot to test"
	done
	[ -x "$R/sbin/startpar" ] || [ -x "$R/usr/bin/startpar" ] || [ -x "$R/bin/startpar" ] || die "sysv-rc tree without startpar"
	grep -q ':ctrlaltdel:' "$R/etc/inittab" || die "/etc/inittab has no ctrlaltdel entry (the test's shutdown)"
	;;
openrc)
	common_debian "$R"
	[ -x "$R/sbin/openrc" ] || die "no /sbin/openrc"
	[ ! -e "$R/etc/init.d/.depend.start" ] || log "note: openrc tree has /etc/init.d/.depend.start"
	grep -q ':ctrlaltdel:' "$R/etc/inittab" || die "/etc/inittab has no ctrlaltdel entry (the test's shutdown)"
	;;
busybox)
	build_busybox "$R"
	;;
esac

# The tree as one tar layer, for imagepull.BuildExt4.
log "tar: $G/rootfs.tar"
tar --numeric-owner --xattrs --xattrs-include='*' -C "$R" -cf "$G/rootfs.tar.tmp" .
mv "$G/rootfs.tar.tmp" "$G/rootfs.tar"

# The tree as an ext4 made by mkfs.ext4 -d (the alternative builder).
log "mkfs.ext4 -d: $G/rootfs-mkfs.ext4 ($IMAGE_SIZE sparse)"
rm -f "$G/rootfs-mkfs.ext4.tmp"
truncate -s "$IMAGE_SIZE" "$G/rootfs-mkfs.ext4.tmp"
mkfs.ext4 -q -F -L rootfs -d "$R" "$G/rootfs-mkfs.ext4.tmp"
mv "$G/rootfs-mkfs.ext4.tmp" "$G/rootfs-mkfs.ext4"

printf '%s\n' "$RECIPE" >"$G/recipe"
log "done: $(du -sh --apparent-size "$G/rootfs.tar" | cut -f1) tar, kernel $(cat "$K/kernel-version")"
