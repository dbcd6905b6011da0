#!/usr/bin/env bash
# make-fixtures.sh [OUTDIR] -- the recipe for the small committed fixtures
# embedded by internal/fixtures (OUTDIR defaults to that directory):
#
#   demo.ext4.gz     an 8 MiB ext4 image (4 KiB blocks, journal,
#                    metadata_csum, 64bit, flex_bg) holding a tiny
#                    Debian-like merged-usr skeleton, made with
#                    `mke2fs -d` from a tree this script builds
#   inject.debugfs   the guest-agent injection script the microVM daemon
#                    feeds to `debugfs -w -f -` today (see below)
#   assets/*         the host files that script writes into the image:
#                    PLACEHOLDERS for the demo and the tests, clearly
#                    labelled; the real assets come with imagepull
#
# Everything is deterministic: a fixed UUID (-U) and directory hash seed
# (-E hash_seed), a pinned mke2fs.conf (host defaults do not leak in),
# E2FSPROGS_FAKE_TIME for the times mke2fs and debugfs stamp, a debugfs
# pass that sets owner 0:0 and atime/mtime/ctime on every inode (mke2fs -d
# copies those from the host tree, and a host ctime cannot be set), LC_ALL=C
# (mke2fs -d reads directories in alphasort order) and `gzip -n`.
# With the same e2fsprogs and gzip (Debian bookworm: e2fsprogs 1.47.0,
# gzip 1.12) a re-run reproduces byte-identical files;
# internal/fixtures/fixtures_test.go checks that.
#
# Run without OUTDIR, it also remakes testdata/demo-oci, the OCI image the
# README's first command pulls, with its own pure-Go recipe
# (go run ./internal/fixtures/mkdemo -o testdata/demo-oci; no e2fsprogs,
# reproducible with the same Go and klauspost/compress; checked by
# internal/fixtures/mkdemo's tests).
#
# Run from anywhere, as any user: bash testdata/make-fixtures.sh
set -euo pipefail
export LC_ALL=C TZ=UTC
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here/../internal/fixtures}
PATH=$PATH:/usr/sbin:/sbin
for tool in mke2fs debugfs e2fsck gzip; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "make-fixtures.sh: $tool not found (install e2fsprogs and gzip)" >&2
		exit 1
	fi
done

EPOCH=1700000000 # 2023-11-14 22:13:20 UTC, every timestamp in the image
UUID=6f1c2a3b-4e5d-4c7b-8a9f-0e1d2c3b4a59
HASH_SEED=2d8f7c1e-3b4a-4f6e-9d0c-1a2b3c4d5e6f
export E2FSPROGS_FAKE_TIME=$EPOCH

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out/assets"
out=$(cd "$out" && pwd)

# --- the host files the injection writes (placeholders) ---------------------

cat >"$out/assets/banger-vsock-agent" <<'EOF'
#!/bin/sh
# PLACEHOLDER made by ext4kit's testdata/make-fixtures.sh for the demo and
# the tests. It is NOT banger's vsock agent: the real
# /usr/local/bin/banger-vsock-agent is a static Go binary built from
# cmd/banger-vsock-agent (a later issue).
echo "banger-vsock-agent: placeholder from the ext4kit demo, no agent installed" >&2
exit 0
EOF

cat >"$out/assets/banger-network-bootstrap" <<'EOF'
#!/bin/sh
# PLACEHOLDER made by ext4kit's testdata/make-fixtures.sh for the demo and
# the tests. The real bootstrap reads its KEY=VALUE config (falling back to
# banger.* kernel command-line parameters) and configures the interface,
# address, route and resolv.conf; it comes with imagepull's assets.
set -eu
echo "banger-network-bootstrap: placeholder from the ext4kit demo, network not configured" >&2
exit 0
EOF

cat >"$out/assets/banger-network.service" <<'EOF'
# PLACEHOLDER unit made by ext4kit's testdata/make-fixtures.sh (demo/tests).
[Unit]
Description=banger guest network bootstrap
Before=network-online.target ssh.service sshd.service
Wants=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/libexec/banger-network-bootstrap

[Install]
WantedBy=multi-user.target
EOF

cat >"$out/assets/banger-vsock-agent.service" <<'EOF'
# PLACEHOLDER unit made by ext4kit's testdata/make-fixtures.sh (demo/tests).
[Unit]
Description=banger vsock agent
After=systemd-modules-load.service

[Service]
ExecStart=/usr/local/bin/banger-vsock-agent
Restart=on-failure

[Install]
WantedBy=multi-user.target
EOF

cat >"$out/assets/banger-vsock.conf" <<'EOF'
# banger: vsock modules for the guest agent (ext4kit demo fixture)
vsock
vmw_vsock_virtio_transport
EOF

# --- the injection script, as the daemon runs it ----------------------------
# One debugfs session (seed InjectGuestAgents): shallow-first mkdir (errors
# for existing directories are tolerated), write, sif, symlink.
# HOST file names are relative: debugfs (and ext4edit) open them against
# their working directory, so run it from the assets directory:
#   (cd internal/fixtures/assets && debugfs -w -f ../inject.debugfs IMG)
# The daemon writes absolute host paths instead; nothing else differs.

# No comments in it: debugfs -f echoes comment lines to its output, which
# the daemon scans.
cat >"$out/inject.debugfs" <<'EOF'
mkdir /usr
mkdir /usr/local
mkdir /usr/local/bin
mkdir /usr/local/libexec
mkdir /etc
mkdir /etc/systemd
mkdir /etc/systemd/system
mkdir /etc/systemd/system/multi-user.target.wants
mkdir /etc/modules-load.d
write "banger-vsock-agent" /usr/local/bin/banger-vsock-agent
write "banger-network-bootstrap" /usr/local/libexec/banger-network-bootstrap
write "banger-network.service" /etc/systemd/system/banger-network.service
write "banger-vsock-agent.service" /etc/systemd/system/banger-vsock-agent.service
write "banger-vsock.conf" /etc/modules-load.d/banger-vsock.conf
sif /usr/local/bin/banger-vsock-agent uid 0
sif /usr/local/bin/banger-vsock-agent gid 0
sif /usr/local/bin/banger-vsock-agent mode 0100755
sif /usr/local/libexec/banger-network-bootstrap uid 0
sif /usr/local/libexec/banger-network-bootstrap gid 0
sif /usr/local/libexec/banger-network-bootstrap mode 0100755
sif /etc/systemd/system/banger-network.service uid 0
sif /etc/systemd/system/banger-network.service gid 0
sif /etc/systemd/system/banger-network.service mode 0100644
sif /etc/systemd/system/banger-vsock-agent.service uid 0
sif /etc/systemd/system/banger-vsock-agent.service gid 0
sif /etc/systemd/system/banger-vsock-agent.service mode 0100644
sif /etc/modules-load.d/banger-vsock.conf uid 0
sif /etc/modules-load.d/banger-vsock.conf gid 0
sif /etc/modules-load.d/banger-vsock.conf mode 0100644
symlink /etc/systemd/system/multi-user.target.wants/banger-network.service /etc/systemd/system/banger-network.service
symlink /etc/systemd/system/multi-user.target.wants/banger-vsock-agent.service /etc/systemd/system/banger-vsock-agent.service
EOF

# --- the demo image ---------------------------------------------------------

tree=$work/tree
mkdir -p "$tree"/{etc,usr/bin,usr/sbin,usr/lib,var/tmp,tmp,root}
ln -s usr/bin "$tree/bin"
ln -s usr/sbin "$tree/sbin"
ln -s usr/lib "$tree/lib"
echo ext4kit-demo >"$tree/etc/hostname"
cat >"$tree/usr/lib/os-release" <<'EOF'
PRETTY_NAME="ext4kit demo rootfs (Debian-like skeleton)"
NAME="ext4kit-demo"
ID=ext4kit-demo
ID_LIKE=debian
VERSION_ID="12"
VERSION_CODENAME=bookworm
EOF
ln -s ../usr/lib/os-release "$tree/etc/os-release"
chmod 0755 "$tree" "$tree"/{etc,usr,usr/bin,usr/sbin,usr/lib,var}
chmod 0644 "$tree/etc/hostname" "$tree/usr/lib/os-release"
chmod 1777 "$tree/var/tmp" "$tree/tmp"
chmod 0700 "$tree/root"

cat >"$work/mke2fs.conf" <<'EOF'
[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	small = {
		blocksize = 4096
		inode_ratio = 16384
	}
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
EOF

img=$work/demo.ext4
MKE2FS_CONFIG=$work/mke2fs.conf mke2fs -q -F -t ext4 -b 4096 -I 256 \
	-L demo-rootfs -U "$UUID" \
	-E "hash_seed=$HASH_SEED,root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,nodiscard" \
	-d "$tree" "$img" 8M >/dev/null

# Pin owner and times of every inode mke2fs -d copied from the host.
{
	for p in / /lost+found $(cd "$tree" && find . -mindepth 1 | sed 's|^\.||' | sort); do
		for field in uid gid; do echo "sif $p $field 0"; done
		for field in atime mtime ctime; do echo "sif $p $field @$EPOCH"; done
	done
} >"$work/pin.debugfs"
if debugfs -w -f "$work/pin.debugfs" "$img" 2>&1 >/dev/null | grep -v '^debugfs ' >&2; then
	echo "make-fixtures.sh: debugfs reported errors pinning owners and times" >&2
	exit 1
fi
if ! e2fsck -fn "$img" >"$work/fsck.log" 2>&1; then
	cat "$work/fsck.log" >&2
	echo "make-fixtures.sh: e2fsck -fn does not find the demo image clean" >&2
	exit 1
fi
gzip -n -9 -c "$img" >"$out/demo.ext4.gz"

echo "make-fixtures.sh: wrote $out/{demo.ext4.gz,inject.debugfs,assets/} with $(mke2fs -V 2>&1 | sed -n 1p) and $(gzip --version | sed -n 1p)" >&2

# --- the README demo's OCI image (only when remaking the committed files) ---
if [ $# -eq 0 ]; then
	(cd "$here/.." && go run ./internal/fixtures/mkdemo -o testdata/demo-oci)
fi
