#!/usr/bin/env bash
# make-corpus.sh OUTDIR: the checker's corruption corpus (TestCheckCorpusAgreement).
#
# Images made by mkfs.ext4 -d from one small rootfs-like tree (a directory
# of 300 entries, so an htree; files small and large, a sparse one; fast
# and slow symlinks; a hard link; xattrs in the inode and in a block where
# setfattr exists (Debian's attr package)), in
# each of the editor matrix's feature mixes, each corrupted in ONE known
# way: a debugfs -w request (sif, set_bg, ssv, freeb, setb, freei, seti,
# clri, unlink, link, rmdir, dirty...) or one byte overwritten at a known
# offset of a structure (superblock fields, a group descriptor, both
# bitmaps, an inode, an extent header, a directory block, the dx root, a
# name in an htree leaf, attribute hashes, the journal superblock). Deterministic: fixed UUID, hash seed, times.
#
# OUTDIR/manifest lists one image per line: name, variant, corruption
# class, e2fsck -fn's exit code (0 clean, 4 problems found, 8 or more
# could not check). 510 images of 8 MiB (sparse), made in parallel.
set -euo pipefail
out=${1:?usage: make-corpus.sh OUTDIR}
export PATH=$PATH:/usr/sbin:/sbin
for t in mkfs.ext4 debugfs e2fsck dumpe2fs; do
	command -v "$t" >/dev/null || { echo "make-corpus.sh: $t not found (apt-get install e2fsprogs)" >&2; exit 2; }
done
export E2FSPROGS_FAKE_TIME=1700000000 SOURCE_DATE_EPOCH=1700000000
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out/tree" "$out"/*.img "$out/manifest" "$out/jobs"

# The tree.
tree=$out/tree
mkdir -p "$tree/etc" "$tree/usr/bin" "$tree/usr/share/many" "$tree/var/empty" "$tree/srv/deep/a/b/c"
for i in $(seq -w 1 300); do printf 'entry %s\n' "$i" >"$tree/usr/share/many/file-with-a-longer-name-$i"; done
printf 'corpus\n' >"$tree/etc/hostname"
ln "$tree/etc/hostname" "$tree/etc/hostname.hard"
head -c 300000 /dev/zero | tr '\0' 'x' >"$tree/usr/bin/big"
printf 'end' >>"$tree/usr/bin/big"
dd if=/dev/zero of="$tree/usr/bin/sparse" bs=1 count=0 seek=2M status=none
printf 'data' | dd of="$tree/usr/bin/sparse" bs=1 seek=1M conv=notrunc status=none
ln -s usr/bin "$tree/bin"
ln -s "$(printf 'long/%.0s' $(seq 1 30))target" "$tree/slow-link"
printf 'deep\n' >"$tree/srv/deep/a/b/c/file"
if command -v setfattr >/dev/null; then
	setfattr -n user.corpus -v "$(head -c 200 /dev/zero | tr '\0' 'v')" "$tree/etc/hostname"
	setfattr -n user.small -v 1 "$tree/usr/bin/big"
fi
find "$tree" -exec touch -h -d @1700000000 {} +

# variant name and mkfs options.
variants=(
	"default|"
	"b1024|-b 1024"
	"b2048|-b 2048"
	"nocsum|-O ^metadata_csum"
	"uninitbg|-O ^metadata_csum,uninit_bg"
	"no64bit|-O ^64bit"
	"noflexbg|-O ^flex_bg"
	"noresize|-O ^resize_inode"
	"inode128|-I 128"
	"ext3|-t ext3"
)

# debugfs corruptions: class|requests (\n between requests).
requests=(
	"freeb-metadata|freeb 1"
	"freeb-data|freeb_file /usr/bin/big"
	"setb-free|setb 6000"
	"freei|freei /etc/hostname"
	"seti|seti <1500>"
	"clri-file|clri /usr/bin/big"
	"clri-dir|clri /srv/deep/a"
	"unlink-file|unlink /etc/hostname.hard"
	"unlink-dir|unlink /srv/deep/a/b"
	"link-extra|link /usr/bin/big /usr/bin/big2"
	"links-count|sif /usr/bin/big links_count 7"
	"links-count-dir|sif /srv/deep links_count 9"
	"size-dir|sif /var/empty size 12288"
	"size-file-short|sif /usr/bin/big size 10"
	"i-blocks|sif /usr/bin/big blocks 2"
	"mode-bad|sif /usr/bin/big mode 0170644"
	"mode-type|sif /etc/hostname mode 040755"
	"dtime|sif /usr/bin/big dtime 12345"
	"flags-extents|sif /etc/hostname flags 0x80000"
	"block0|sif /usr/bin/big block[0] 1"
	"block-range|sif /usr/bin/big block[2] 4000000"
	"file-acl|sif /etc/hostname file_acl 5"
	"bg-free-blocks|set_bg 0 free_blocks_count 11\nset_bg 0 checksum calc"
	"bg-free-inodes|set_bg 0 free_inodes_count 3\nset_bg 0 checksum calc"
	"bg-used-dirs|set_bg 0 used_dirs_count 1\nset_bg 0 checksum calc"
	"bg-flags|set_bg 0 flags 7\nset_bg 0 checksum calc"
	"bg-checksum|set_bg 0 free_inodes_count 3"
	"bg-itable-unused|set_bg 0 itable_unused 1\nset_bg 0 checksum calc"
	"ssv-free-blocks|ssv free_blocks_count 17"
	"ssv-state|ssv state 2"
	"ssv-inodes-count|ssv inodes_count 12"
	"dirty|dirty"
	"rmdir-lost-found|rmdir /lost+found"
	"root-mode|sif <2> mode 0100644"
	"journal-block|sif <8> block[0] 0"
)

# byte overwrites: class|where|value (hex). where is resolved per image.
flips=(
	"sb-magic|sb:56|00"
	"sb-log-block-size|sb:24|09"
	"sb-blocks-per-group|sb:32|00"
	"gd-block-bitmap|gd:0|ff"
	"gd-inode-table|gd:8|03"
	"block-bitmap-byte|bbm:0|00"
	"inode-bitmap-byte|ibm:0|00"
	"inode-mode|ino:/usr/bin/big:1|f0"
	"extent-magic|ino:/usr/bin/big:40|00"
	"dir-rec-len|dir:/srv/deep:4|01"
	"dx-root-levels|dir:/usr/share/many:30|07"
	"dir-entry-inode|dir:/srv/deep:24|ff"
	"htree-leaf-name|dirblk:/usr/share/many:2:20|5a"
	"xattr-inode-hash|ino:/usr/bin/big:176|5a"
	"xattr-block-hash|xattr:/etc/hostname:44|5a"
	"journal-sb|jsb:0|00"
)

base=$out/base
mkdir -p "$base"
uuid=2d3c0f0e-1b2a-4c5d-8e9f-000000000001
for v in "${variants[@]}"; do
	name=${v%%|*} opts=${v#*|}
	# shellcheck disable=SC2086
	mkfs.ext4 -q -F -U "$uuid" -E hash_seed=$uuid -d "$tree" $opts "$base/$name.img" 8M >/dev/null 2>&1
done

jobs=$out/jobs
: >"$jobs"
for v in "${variants[@]}"; do
	name=${v%%|*}
	for r in "${requests[@]}"; do printf 'req\t%s\t%s\t%s\n' "$name" "${r%%|*}" "${r#*|}" >>"$jobs"; done
	for f in "${flips[@]}"; do printf 'flip\t%s\t%s\t%s\n' "$name" "${f%%|*}" "${f#*|}" >>"$jobs"; done
done

one() {
	local kind=$1 variant=$2 class=$3 what=$4 img=$out/$2--$3.img
	cp --sparse=always "$base/$variant.img" "$img"
	if [ "$kind" = req ]; then
		printf '%b\n' "$what" | debugfs -w -f - "$img" >/dev/null 2>&1 || true
	else
		local where=${what%|*} val=${what##*|} bs off blk rest
		bs=$(dumpe2fs -h "$img" 2>/dev/null | sed -n 's/^Block size: *//p')
		case $where in
		sb:*) off=$((1024 + ${where#sb:})) ;;
		gd:*) blk=$((bs == 1024 ? 2 : 1)); off=$((blk * bs + ${where#gd:})) ;;
		bbm:* | ibm:*)
			local field='Block bitmap at' ; [ "${where%%:*}" = ibm ] && field='Inode bitmap at'
			blk=$(dumpe2fs "$img" 2>/dev/null | sed -n "s/^ *$field \([0-9]*\).*/\1/p" | head -n1)
			off=$((blk * bs + ${where#*:})) ;;
		ino:*)
			rest=${where#ino:}
			local loc; loc=$(debugfs -R "imap ${rest%:*}" "$img" 2>/dev/null | sed -n 's/.*located at block \([0-9]*\), offset 0x\([0-9a-f]*\).*/\1 \2/p')
			off=$(( ${loc% *} * bs + 0x${loc#* } + ${rest##*:} )) ;;
		dir:*)
			rest=${where#dir:}
			blk=$(debugfs -R "bmap ${rest%:*} 0" "$img" 2>/dev/null | tr -dc 0-9)
			off=$((blk * bs + ${rest##*:})) ;;
		dirblk:*)
			rest=${where#dirblk:}
			local p=${rest%%:*} lb
			rest=${rest#*:}
			lb=${rest%%:*}
			blk=$(debugfs -R "bmap $p $lb" "$img" 2>/dev/null | tr -dc 0-9)
			off=$((blk * bs + ${rest#*:})) ;;
		xattr:*)
			rest=${where#xattr:}
			blk=$(debugfs -R "stat ${rest%:*}" "$img" 2>/dev/null | sed -n 's/.*File ACL: \([0-9]*\).*/\1/p')
			off=$((blk * bs + ${rest##*:})) ;;
		jsb:*)
			blk=$(debugfs -R "bmap <8> 0" "$img" 2>/dev/null | tr -dc 0-9)
			off=$((blk * bs + ${where#jsb:})) ;;
		esac
		printf "\\x$val" | dd of="$img" bs=1 seek="$off" conv=notrunc status=none
	fi
	local rc=0
	e2fsck -fn "$img" >/dev/null 2>&1 || rc=$?
	printf '%s\t%s\t%s\t%s\n' "$(basename "$img")" "$variant" "$class" "$rc"
}
export -f one
export out base
tr '\t' '\037' <"$jobs" | xargs -P "$(nproc)" -d '\n' -I{} bash -c 'IFS=$'"'"'\037'"'"' read -r k v c w <<<"{}"; one "$k" "$v" "$c" "$w"' | sort >"$out/manifest"
rm -rf "$base" "$tree" "$jobs"
echo "make-corpus.sh: $(wc -l <"$out/manifest") images in $out" >&2
