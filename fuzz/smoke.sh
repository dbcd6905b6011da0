#!/usr/bin/env bash
# CI smoke fuzzing: every fuzz target of ./fuzz for a short while (1000
# executions by default; FUZZTIME overrides: a count like 5000x or a
# duration like 10m), one worker each (-parallel 1). A count, not a
# duration: Go 1.26's coordinator can fail a duration-bounded run with a
# bare "context deadline exceeded" and no crasher when the deadline races
# a worker (go.dev/issue/75804, fixed in Go 1.27). The seed
# corpus in fuzz/testdata/fuzz already runs as plain tests in go test ./...;
# this adds a little mutation on top. A failure leaves the crashing input in
# fuzz/testdata/fuzz/<Target>/ (commit it as a regression seed once fixed)
# and exits non-zero.
#
# Usage: fuzz/smoke.sh            (from anywhere inside the module)
#        FUZZTIME=10m fuzz/smoke.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin # e2fsck, the FuzzEdits/FuzzBuildTar oracle
fuzztime=${FUZZTIME:-1000x}
targets=$(go test ./fuzz/ -list '^Fuzz' | grep '^Fuzz' || true)
if [ -z "$targets" ]; then
	echo "fuzz/smoke.sh: no fuzz targets found" >&2
	exit 1
fi
status=0
for t in $targets; do
	echo "== fuzz $t for $fuzztime"
	if ! go test ./fuzz/ -run '^$' -fuzz "^${t}\$" -fuzztime "$fuzztime" -fuzzminimizetime 100x -parallel 1 -timeout 0; then
		echo "== fuzz $t FAILED (a failing seed, or a new crasher saved under fuzz/testdata/fuzz/$t/)" >&2
		status=1
	fi
done
exit $status
