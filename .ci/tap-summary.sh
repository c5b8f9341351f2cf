#!/bin/sh
# Usage: .ci/tap-summary.sh TAPFILE...
#
# Prints one line "N passed, N failed" (", N skipped" when some were) over all
# the TAP files, and exits non-zero when a test failed or no test ran.
set -eu

for f in "$@"; do [ -f "$f" ] && cat "$f"; done | awk '
	/^not ok /             { failed++; next }
	/^ok [0-9]+ - # SKIP / { skipped++; next }
	/^ok /                 { passed++ }
	END {
		line = sprintf("%d passed, %d failed", passed, failed)
		if (skipped) line = line sprintf(", %d skipped", skipped)
		print line
		exit (failed > 0 || passed + failed == 0) ? 1 : 0
	}'
