#!/usr/bin/env bash
# Format the C sources with .clang-format; --check only reports.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find src tasks tests bench -name '*.[ch]')
if [ "${1:-}" = "--check" ]; then
	clang-format --dry-run --Werror $files
	echo "format: OK"
else
	clang-format -i $files
fi
