#!/usr/bin/env bash
# Builds the Debian package: build-pkg/fleetkeeper_<version>_<arch>.deb (and
# its .changes and .buildinfo), then runs lintian on it.
#   scripts/package.sh            install what is missing, build, lintian
#   FK_PKG_JOBS=N                 parallel jobs (default 2)
#   FK_PKG_OUT=DIR                where the files go (default build-pkg/)
# The build runs in a copy of the tree (the files git knows, plus new ones
# it does not ignore), so the tree stays as it was; debian/rules runs no
# test suite (CI runs it separately). See docs/packaging.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/setup-deps.sh package

jobs=${FK_PKG_JOBS:-2}
out=${FK_PKG_OUT:-$root/build-pkg}
version=$(dpkg-parsechangelog -l debian/changelog -S Version)
work=$(mktemp -d /tmp/fleetkeeper-pkg.XXXXXX)
trap 'rm -rf "$work"' EXIT

src="$work/fleetkeeper-$version"
mkdir -p "$src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
		tar --null -T - -cf - | tar -xf - -C "$src"
else
	tar --exclude='./build*' --exclude=./var -cf - . | tar -xf - -C "$src"
fi

start=$(date +%s)
(cd "$src" && dpkg-buildpackage -us -uc -b -j"$jobs") >"$work/build.log" 2>&1 || {
	tail -n 60 "$work/build.log" >&2
	echo "package: dpkg-buildpackage failed (log above)" >&2
	exit 1
}
mkdir -p "$out"
rm -f "$out"/fleetkeeper_* "$out"/fleetkeeper-dbgsym_*
cp "$work"/fleetkeeper*_"$version"_* "$out"/
deb=$(ls "$out"/fleetkeeper_"$version"_*.deb)
echo "package: built $deb in $(($(date +%s) - start)) s"

# Errors and warnings fail; info tags are shown. Overrides, each with its
# reason: debian/fleetkeeper.lintian-overrides.
lintian --fail-on error,warning --info --display-info "$out"/fleetkeeper_"$version"_*.changes
echo "package: lintian clean"
