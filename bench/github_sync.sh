#!/usr/bin/env bash
# bench/github_sync.sh — the github_sync benchmark of issue 6.
#
# The replay server of tests/integration/replay.py on loopback serves an
# organization of REPOS (5,000) repositories built from the recorded GitHub
# repository object (about 7 KB each, 100 per page, Link and ETag headers).
# Three runs of `fleetkeeper once github_sync` on one state store:
#   cold  — empty store: every page fetched (200), every project inserted;
#   warm  — same organization: every page a conditional request (304),
#           goal: no project row and no cache row written;
#   warm1 — one repository renamed: one page 200, one row written.
# Reported per run: wall time of the whole process, HTTP requests the
# replay server saw (and how many were conditional / answered 304), and
# rows written (projects and http_cache rows whose updated_at moved).
# Prints `name: value unit` lines and one JSON line {"bench": "github_sync", ...}.
#
#   bench/github_sync.sh [FLEETKEEPER_BIN]    env: REPOS=5000
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-${FLEETKEEPER_BIN:-$ROOT/build/fleetkeeper}}
export FK_BENCH_BIN=$BIN FK_ROOT=$ROOT
exec /usr/bin/python3 - <<'PYEOF'
import json, os, sqlite3, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(os.environ["FK_ROOT"])
BIN = os.environ["FK_BENCH_BIN"]
REPOS = int(os.environ.get("REPOS", "5000"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from replay import Replay  # noqa: E402

tmp = Path(tempfile.mkdtemp(prefix="fk-bench-gh-"))
state = tmp / "var"
(tmp / "token").write_text("bench-token\n")
replay = Replay(org="bench", repos=REPOS).start()
conf = tmp / "fk.conf"
conf.write_text(f"""[daemon]
state_dir = {state}
control_socket = {state}/fk.sock
[log]
level = warning
[github]
api_url = {replay.url}
org = bench
token_file = {tmp / 'token'}
timeout = 60s
[task.github_sync]
""")


def written(since):
    con = sqlite3.connect(state / "state.db")
    try:
        p = con.execute("SELECT count(*) FROM projects WHERE updated_at >= ?", (since,)).fetchone()[0]
        c = con.execute("SELECT count(*) FROM http_cache WHERE updated_at >= ?", (since,)).fetchone()[0]
        return p, c
    finally:
        con.close()


def run(name):
    n0 = len(replay.requests)
    t_wall = time.time()
    t0 = time.monotonic()
    r = subprocess.run([BIN, "-c", str(conf), "once", "github_sync"], capture_output=True, text=True)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit("%s run failed: %s %s" % (name, r.stdout[-2000:], r.stderr[-2000:]))
    reqs = replay.requests[n0:]
    cond = sum(1 for q in reqs if "If-None-Match" in q["headers"])
    rows, cache = written(t_wall)
    res = {"wall_sec": round(wall, 3), "requests": len(reqs), "conditional": cond,
           "rows_written": rows, "cache_rows_written": cache}
    for k, v in res.items():
        print("%s_%s: %s" % (name, k, v))
    return res


cold = run("cold")
warm = run("warm")
replay.repos[1234 % REPOS]["name"] = "renamed-repo"
replay.changed()
warm1 = run("warm1")
replay.stop()
ok = warm["requests"] == warm["conditional"] and warm["rows_written"] == 0 \
    and warm["cache_rows_written"] == 0
print("warm_only_conditional_and_no_writes: %s" % ok)
print(json.dumps({"bench": "github_sync", "repos": REPOS, "cold": cold, "warm": warm,
                  "warm_one_change": warm1, "goal_met": ok}))
PYEOF
