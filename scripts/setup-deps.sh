#!/usr/bin/env bash
# Installs the Debian 12 packages fleetkeeper needs, only those missing.
#   scripts/setup-deps.sh build   what building and running the daemon needs
#   scripts/setup-deps.sh test    that plus what the test suite and benchmarks need
#   scripts/setup-deps.sh package that plus what building and checking the .deb needs
set -euo pipefail

build_pkgs=(gcc pkg-config meson ninja-build libsqlite3-dev libcjson-dev libinih-dev
            libssh2-1-dev libgit2-dev libcurl4-openssl-dev libmicrohttpd-dev tzdata
            libssl-dev libpq-dev libpq5)
test_pkgs=(libcmocka-dev python3 python3-pytest python3-structlog python3-croniter
           sqlite3 clang-format procps openssh-server openssh-client
           prometheus python3-yaml nodejs)
# npm: its own package on stock Debian; nodesource's nodejs bundles it (and conflicts with it).
command -v npm >/dev/null 2>&1 || test_pkgs+=(npm)
# Ansible runner tests (issue 5): the real ansible-playbook, sshpass for password auth, git.
test_pkgs+=(ansible ansible-lint sshpass git)
# Robustness (issue 8): libFuzzer (clang + its runtime), valgrind, mount and nm.
test_pkgs+=(clang libclang-rt-14-dev valgrind binutils mount)
# Wall-clock jumps (tests/integration/test_clock_jumps.py): libfaketime preloaded.
test_pkgs+=(faketime libfaketime)
# The HTTP API's status page in a real browser (tests/integration/test_api.py):
# Debian's chromium, driven by playwright-core (tests/integration/apicheck).
test_pkgs+=(chromium openssl)
# GitHub App (tests/integration/test_github_app.py): the replay server checks
# the JWT's RS256 signature; the mirror test serves git over smart HTTP.
test_pkgs+=(python3-cryptography)
# The state store on PostgreSQL (issue 17): the suite's own server
# (tests/integration/pg.py: initdb + pg_ctl of postgresql-15) and its client.
test_pkgs+=(postgresql postgresql-15 python3-psycopg2)

# The Debian package (issue 19, scripts/package.sh and the CI package
# stage): debhelper, lintian, the man page linter, systemd-analyze, and
# debootstrap + systemd-nspawn for the test under a booted systemd.
package_pkgs=(debhelper dpkg-dev fakeroot lintian mandoc systemd debootstrap systemd-container)

want=("${build_pkgs[@]}")
if [ "${1:-build}" = "test" ]; then
	want+=("${test_pkgs[@]}" mandoc)
elif [ "${1:-build}" = "package" ]; then
	want+=("${package_pkgs[@]}")
fi

# The test suite's npm packages, pinned by their package-lock.json (npm ci):
# the OpenAPI validator and the browser driver of tests/integration/apicheck.
npm_test_deps() {
	[ "${1:-build}" = "test" ] || return 0
	local dir
	dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/integration/apicheck"
	[ -d "$dir/node_modules/playwright-core" ] && [ -d "$dir/node_modules/@redocly/cli" ] && return 0
	(cd "$dir" && npm ci --no-audit --no-fund)
}

missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	npm_test_deps "${1:-build}"
	exit 0
fi

echo "installing: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
npm_test_deps "${1:-build}"
