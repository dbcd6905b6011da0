#!/usr/bin/env bash
# agree.sh E2FSPROGS_CHECKOUT [EXT4EDIT]: runs `ext4edit -check` and
# `e2fsck -fn` on every test image of an e2fsprogs source tree
# (tests/*/image.gz, image.bz2, image) and prints one line per image and a
# tally: "agree" when both call it clean or both find problems, "miss"
# when only e2fsck does, "false" when only Check does, "declined" when
# Check could not check it (exit 8: bigalloc, ...), "crash" when ext4edit
# panicked or ran over 20 s (must never happen). The images are
# e2fsprogs' (GPL), so they are not in this repository: clone
# https://github.com/tytso/e2fsprogs and point this script at it.
#
# e2fsck -n does not replay a journal; Check reads the filesystem as it is
# after the replay (see the README), so images whose log replays a
# damaged state disagree by design (j_recover_csum2_*).
set -euo pipefail
src=${1:?usage: agree.sh E2FSPROGS_CHECKOUT [EXT4EDIT]}
bin=${2:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -z $bin ]]; then
	bin=$work/ext4edit
	(cd "$(dirname "$0")/../../.." && CGO_ENABLED=0 go build -o "$bin" ./cmd/ext4edit)
fi
declare -A tally=()
for p in "$src"/tests/*/image.gz "$src"/tests/*/image.bz2 "$src"/tests/*/image; do
	[[ -e $p ]] || continue
	name=$(basename "$(dirname "$p")")
	img=$work/$name.img
	case $p in
	*.gz) gunzip -c "$p" >"$img" 2>/dev/null || continue ;;
	*.bz2) bunzip2 -c "$p" >"$img" 2>/dev/null || continue ;;
	*) cp "$p" "$img" ;;
	esac
	set +e
	timeout 20 "$bin" -check "$img" >"$work/out" 2>&1
	ours=$?
	timeout 60 e2fsck -fn "$img" >/dev/null 2>&1
	theirs=$?
	set -e
	if grep -q 'panic\|goroutine ' "$work/out" || [[ $ours == 124 ]]; then
		verdict=crash
	elif [[ $ours == 8 ]]; then
		verdict=declined
	elif [[ $ours == 0 && $theirs == 0 ]] || [[ $ours == 4 && $theirs != 0 ]]; then
		verdict=agree
	elif [[ $ours == 0 ]]; then
		verdict=miss
	else
		verdict=false
	fi
	tally[$verdict]=$((${tally[$verdict]:-0} + 1))
	printf '%-40s %-8s ext4edit -check %d, e2fsck -fn %d\n' "$name" "$verdict" "$ours" "$theirs"
	rm -f "$img"
done
for k in agree miss false declined crash; do
	printf '%s %d\n' "$k" "${tally[$k]:-0}"
done
[[ ${tally[crash]:-0} == 0 ]]
