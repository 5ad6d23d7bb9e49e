#!/usr/bin/env bash
# scripts/fuzz.sh: builds the fuzz targets in fuzz/ with libFuzzer (clang, ASan + UBSan) into
# build-fuzz/ and runs each for FUZZ_SECONDS (default 60), starting from its corpus in
# fuzz/corpus/NAME/. New inputs go to build-fuzz/corpus/NAME/, crashes and property violations
# to build-fuzz/crashes/NAME/. FUZZ_MERGE=1 then merges the inputs that add coverage into
# fuzz/corpus/NAME/ (which `make check` replays). FUZZ_TARGETS="codec jws" picks targets.
# Exit status 1 when any target found a failing input.  (make fuzz; docs/testing.md)
set -uo pipefail
cd "$(dirname "$0")/.."
SECS=${FUZZ_SECONDS:-60}
B=build-fuzz
command -v clang >/dev/null || { echo "fuzz: clang missing (scripts/install-deps.sh --fuzz)"; exit 1; }
CC=clang cmake -S . -B "$B" -DSG_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
TARGETS=${FUZZ_TARGETS:-$(cd fuzz && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//')}
# shellcheck disable=SC2046
cmake --build "$B" -j "$(nproc)" --target $(printf 'fuzz_%s ' $TARGETS) >/dev/null || exit 1
failed=0
for t in $TARGETS; do
	mkdir -p "$B/corpus/$t" "$B/crashes/$t"
	# the scratch corpus first (where new inputs are written), the repository's read-only
	"$B/fuzz_$t" -max_total_time="$SECS" -print_final_stats=1 -artifact_prefix="$B/crashes/$t/" \
		"$B/corpus/$t" "fuzz/corpus/$t" >"$B/$t.log" 2>&1
	rc=$?
	runs=$(awk '/stat::number_of_executed_units/{print $NF}' "$B/$t.log")
	cov=$(grep -o 'cov: [0-9]*' "$B/$t.log" | tail -1)
	if [ "$rc" -ne 0 ]; then
		failed=1
		echo "fuzz $t: FAILED after ${runs:-?} runs; input and log in $B/crashes/$t/, $B/$t.log"
		grep -m3 -E 'property violated|ERROR: |SUMMARY' "$B/$t.log" | sed 's/^/  /'
	else
		echo "fuzz $t: ${runs:-?} runs in ${SECS} s, ${cov:-cov: ?} edges, no failure"
	fi
	if [ -n "${FUZZ_MERGE:-}" ] && [ "$rc" -eq 0 ]; then
		"$B/fuzz_$t" -merge=1 "fuzz/corpus/$t" "$B/corpus/$t" >"$B/$t.merge.log" 2>&1 &&
			echo "  corpus: $(ls "fuzz/corpus/$t" | wc -l) inputs in fuzz/corpus/$t"
	fi
done
exit "$failed"
