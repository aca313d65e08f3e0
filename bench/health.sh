#!/usr/bin/env bash
# bench/health.sh — the health_check benchmark of issue 4.
#
# One real OpenSSH sshd on loopback (16 listeners: 127.0.0.1-4 x 4 ports,
# the most one sshd takes), 200 servers spread over them, in one run:
#   1. fleetkeeper: `fleetkeeper once health_check` (libssh2, one thread,
#      concurrency 32), wall time of the whole process;
#   2. the seed's approach: one `ssh -o BatchMode=yes` subprocess per server,
#      sequentially (host key checking off, as the seed did);
#   3. fleetkeeper again with 20% of the servers (40) pointed at silent
#      listeners that accept TCP and never speak, at CONCURRENCY (reported:
#      40 dead servers in 32 slots take two deadlines) and with every server
#      at once (concurrency = SERVERS), which must finish within
#      check_timeout + 1 s.
# Prints `name: value unit` lines and one JSON line {"bench": "health", ...}.
# Needs root (sshd), openssh-server, openssh-client. Only 127.0.0.0/8 is used.
#
#   bench/health.sh [FLEETKEEPER_BIN]    env: SERVERS=200 TIMEOUT=3 CONCURRENCY=32
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-${FLEETKEEPER_BIN:-$ROOT/build/fleetkeeper}}
export FK_BENCH_BIN=$BIN FK_ROOT=$ROOT
exec /usr/bin/python3 - <<'EOF'
import json, os, shutil, sqlite3, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(os.environ["FK_ROOT"])
BIN = os.environ["FK_BENCH_BIN"]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from sshd import Sshd, SilentListener, have_sshd  # noqa: E402

N = int(os.environ.get("SERVERS", "200"))
TIMEOUT = float(os.environ.get("TIMEOUT", "3"))
CONC = int(os.environ.get("CONCURRENCY", "32"))
if not have_sshd():
    sys.exit("bench/health.sh: needs root, sshd and ssh-keygen")

tmp = Path(tempfile.mkdtemp(prefix="fk_bench_health_"))
sshd = Sshd(tmp, addrs=[f"127.0.0.{i}" for i in range(1, 5)], nports=4).start()
silent = []
try:
    conf = tmp / "fleetkeeper.conf"
    def write_conf(conc):
        conf.write_text(f"""[daemon]
state_dir = {tmp}/var
[log]
level = info
[ssh]
user = root
key_file = {sshd.client_key}
known_hosts = {tmp}/known_hosts
host_key_policy = accept-new
timeout = 10s
[task.health_check]
concurrency = {conc}
check_timeout = {TIMEOUT:g}s
failure_threshold = 2
""")

    write_conf(CONC)

    def once(expect_complete=True):
        t0 = time.monotonic()
        r = subprocess.run([BIN, "-c", str(conf), "once", "health_check"], capture_output=True,
                           text=True, cwd=tmp)
        wall = time.monotonic() - t0
        ev = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
        done = [e for e in ev if e.get("event") == "health_check_complete"]
        if not expect_complete:
            return wall, None
        if r.returncode != 0 or not done:
            sys.exit(f"once failed ({r.returncode}): {r.stderr}{r.stdout[-2000:]}")
        return wall, done[0]

    once(False)  # creates the schema (skipped: no servers)
    ends = sshd.endpoints
    servers = [(f"srv-{i:03d}", *ends[i % len(ends)]) for i in range(N)]
    con = sqlite3.connect(tmp / "var" / "state.db")
    now = time.time()
    with con:
        con.executemany("INSERT INTO servers (handle, ip, port, ssh_user, status, created_at,"
                        " updated_at) VALUES (?, ?, ?, 'root', 'ready', ?, ?)",
                        [(h, ip, port, now, now) for h, ip, port in servers])
    once()  # warm-up: accept-new records the 16 endpoints
    fk_wall, done = once()
    if done["healthy_count"] != N:
        r = subprocess.run([BIN, "-c", str(conf), "once", "health_check"], capture_output=True,
                           text=True, cwd=tmp)
        bad = [l for l in r.stdout.splitlines() if '"unhealthy"' in l]
        sys.exit(f"not all healthy: {done}\n" + "\n".join(bad[:3]))

    t0 = time.monotonic()
    seed_ok = 0
    for h, ip, port in servers:
        r = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                            "-o", "ConnectTimeout=10", "-i", str(sshd.client_key), "-p", str(port),
                            f"root@{ip}", "true"], capture_output=True, stdin=subprocess.DEVNULL)
        seed_ok += r.returncode == 0
    seed_wall = time.monotonic() - t0
    assert seed_ok == N, seed_ok

    nsilent = N // 5
    silent = [SilentListener(f"127.0.0.{5 + i % 4}") for i in range(nsilent)]
    with con:
        for i, s in enumerate(silent):
            con.execute("UPDATE servers SET ip = ?, port = ? WHERE handle = ?",
                        (s.addr, s.port, servers[i * 5][0]))
    con.close()
    sil_wall_default, sdone = once()
    assert (sdone["healthy_count"], sdone["unhealthy_count"]) == (N - nsilent, nsilent), sdone
    # With more silent servers than slots, a second wave of silent servers
    # starts only when the first one's deadlines pass (about 2 x timeout);
    # with every server in flight at once the run is one deadline long.
    CONC2 = N
    write_conf(CONC2)
    sil_wall, sdone = once()
    assert (sdone["healthy_count"], sdone["unhealthy_count"]) == (N - nsilent, nsilent), sdone

    ratio = seed_wall / fk_wall
    print(f"health_fleetkeeper_{N}: {fk_wall:.3f} s")
    print(f"health_seed_ssh_sequential_{N}: {seed_wall:.3f} s")
    print(f"health_speedup: {ratio:.1f} x (goal >= 10)")
    print(f"health_silent20pct_{N}_concurrency{CONC}: {sil_wall_default:.3f} s")
    print(f"health_silent20pct_{N}_concurrency{CONC2}: {sil_wall:.3f} s"
          f" (limit {TIMEOUT + 1:g} s = timeout + 1 s)")
    print(json.dumps({"bench": "health", "servers": N, "concurrency": CONC,
                      "fleetkeeper_sec": round(fk_wall, 3), "seed_sec": round(seed_wall, 3),
                      "speedup": round(ratio, 1), "silent_servers": nsilent,
                      "timeout_sec": TIMEOUT,
                      "silent_run_sec_at_concurrency": round(sil_wall_default, 3),
                      "silent_concurrency": CONC2, "silent_run_sec": round(sil_wall, 3),
                      "silent_within_limit": sil_wall <= TIMEOUT + 1,
                      "speedup_goal_met": ratio >= 10}))
    ok = ratio >= 10 and sil_wall <= TIMEOUT + 1
finally:
    for s in silent:
        s.close()
    sshd.stop()
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(0 if ok else 1)
EOF
