#!/usr/bin/env bash
# bench/health_scale.sh — fleet-scale health checks (issue 16, "Checks").
#
# Real OpenSSH sshd instances on loopback (SSHDS of them, 16 listeners each:
# 127.0.0.1-4 x 4 ports; MaxStartups 10000:30:10000, tests/integration/
# sshd.py), logged into as a dedicated user `fkbench` (created if missing,
# shell /bin/sh, an empty home: no rc file is read, so the remote side costs
# what sshd costs). Host keys are pre-recorded (policy strict). In one run:
#   1. 1,000 servers, 20% of them pointed at silent listeners (accept TCP,
#      never speak), check_timeout 5 s, concurrency auto (all 1,000 at
#      once), handshake_concurrency auto (the handshake gate, docs/ssh.md):
#      `fleetkeeper once health_check`, its wall, its own CPU (wait4
#      rusage) per 1,000 checks and how many of the 800 live servers were
#      found healthy; goal wall <= check_timeout + 2 s. Baseline in the
#      same run: the gate open (handshake_concurrency = 1000, every answering
#      server in its handshake at once, as before the gate).
#   2. On 200 healthy servers (the same 200 for each): fleetkeeper (all at
#      once), `ansible all -m ping -f 32` with an inventory of the 200, and
#      the seed's sequential `ssh`; ratio to ansible (goal >= 20x).
#   3. Growth: 100, 1,000 and 10,000 handles over the same sshd endpoints
#      (many handles per endpoint), all healthy, concurrency min(n, CONC10K),
#      handshake gate auto: each run's wall, CPU and peak RSS (wait4). The
#      10,000 run (goal <= 60 s on 2 cores) against sshd's ceiling: the rate
#      at which the machine could run sshd sessions if the client cost
#      nothing, i.e. cores / (sshd CPU per session), sshd CPU measured over
#      that very run (cutime+cstime of the sshd parents, which reap every
#      session). Also printed: what 32 parallel `ssh` clients get from the
#      same sshds.
# Prints `name: value unit` lines and one JSON line {"bench": "health_scale", ...}.
# Needs root (sshd, useradd), openssh-server, openssh-client, ansible.
# Only 127.0.0.0/8 is used.
#
#   bench/health_scale.sh [FLEETKEEPER_BIN]
#   env: SERVERS=1000 HANDLES=10000 BASE=200 TIMEOUT=5 SSHDS=4 CONC10K=256 SSHD_ARGS=-r
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-${FLEETKEEPER_BIN:-$ROOT/build/fleetkeeper}}
export FK_BENCH_BIN=$BIN FK_ROOT=$ROOT
exec /usr/bin/python3 - <<'EOF'
import json, os, pwd, shutil, sqlite3, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(os.environ["FK_ROOT"])
BIN = os.environ["FK_BENCH_BIN"]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from sshd import Sshd, SilentListener, have_sshd  # noqa: E402

N = int(os.environ.get("SERVERS", "1000"))
H = int(os.environ.get("HANDLES", "10000"))
BASE = int(os.environ.get("BASE", "200"))
TIMEOUT = float(os.environ.get("TIMEOUT", "5"))
NSSHD = int(os.environ.get("SSHDS", "4"))
CONC10K = int(os.environ.get("CONC10K", "256"))
# -r: no re-exec of sshd per connection (halves sshd's CPU per session here,
# 20 -> 10 ms); SSHD_ARGS= (empty) measures the stock behaviour.
SSHD_ARGS = os.environ.get("SSHD_ARGS", "-r").split()
USER = "fkbench"
CORES = os.cpu_count() or 1
TICK = os.sysconf("SC_CLK_TCK")
if not have_sshd() or not shutil.which("ansible"):
    sys.exit("bench/health_scale.sh: needs root, sshd, ssh-keygen and ansible")


def ensure_user():
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--shell", "/bin/sh", "--home-dir",
                        f"/var/lib/{USER}", USER], check=True)
    # no password, but not locked ("!"): sshd without PAM refuses locked accounts
    subprocess.run(["usermod", "-p", "*", USER], check=True)
    pw = pwd.getpwnam(USER)
    home = Path(pw.pw_dir)
    home.mkdir(mode=0o755, exist_ok=True)
    os.chown(home, pw.pw_uid, pw.pw_gid)
    for rc in (".bashrc", ".profile", ".ssh/rc"):
        if (home / rc).exists():
            sys.exit(f"{home / rc} exists: the bench user must read no rc file")


ensure_user()
tmp = Path(tempfile.mkdtemp(prefix="fk_bench_scale_"))
os.chmod(tmp, 0o755)  # sshd reads authorized_keys as the user
client_key = None
sshds, silent = [], []
try:
    for i in range(NSSHD):
        s = Sshd(tmp, name=f"sshd{i}", addrs=[f"127.0.0.{a}" for a in range(1, 5)], nports=4,
                 client_key=client_key, extra_args=SSHD_ARGS)
        client_key = s.client_key
        os.chmod(s.dir, 0o755)
        os.chmod(s.authorized, 0o644)
        sshds.append(s.start())
    endpoints = [(s, a, p) for s in sshds for a, p in s.endpoints]
    kh = tmp / "known_hosts"
    kh.write_text("".join(s.known_hosts_line(a, p) for s, a, p in endpoints))
    silent = [SilentListener(f"127.0.0.{5 + i % 4}") for i in range(8)]

    def state(name, conc, handshakes="auto"):
        d = tmp / name
        d.mkdir()
        conf = d / "fleetkeeper.conf"
        conf.write_text(f"""[daemon]
state_dir = {d}/var
[log]
level = warning
[ssh]
user = {USER}
key_file = {client_key}
known_hosts = {kh}
host_key_policy = strict
timeout = {TIMEOUT:g}s
[task.health_check]
concurrency = {conc}
handshake_concurrency = {handshakes}
check_timeout = {TIMEOUT:g}s
failure_threshold = 1
""")
        return d, conf

    peak_rss = [0.0]

    def run_fk(conf, n):
        """once health_check with its own rusage; the counts from the store."""
        t0 = time.monotonic()
        p = subprocess.Popen([BIN, "-c", str(conf), "once", "health_check"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             cwd=conf.parent)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        peak_rss[0] = ru.ru_maxrss / 1024  # MiB
        err = p.stderr.read().decode(errors="replace")
        p.stderr.close()
        con = sqlite3.connect(conf.parent / "var" / "state.db")
        ok = con.execute("SELECT count(*) FROM servers WHERE response_time_ms IS NOT NULL").fetchone()[0]
        con.close()
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"once failed: {err[-2000:]}")
        return wall, ru.ru_utime + ru.ru_stime, ok

    def fill(d, conf, rows):
        subprocess.run([BIN, "-c", str(conf), "once", "health_check"], capture_output=True,
                       cwd=d)  # creates the schema (skipped: no servers)
        con = sqlite3.connect(d / "var" / "state.db")
        now = time.time()
        with con:
            con.executemany("INSERT INTO servers (handle, ip, port, ssh_user, status, created_at,"
                            " updated_at) VALUES (?, ?, ?, ?, 'ready', ?, ?)",
                            [(h, ip, port, USER, now, now) for h, ip, port in rows])
        con.close()

    def sshd_cpu():
        t = 0
        for s in sshds:
            f = open(f"/proc/{s.proc.pid}/stat").read().rsplit(")", 1)[1].split()
            t += sum(int(x) for x in f[11:15])  # utime stime cutime cstime
        return t / TICK

    # ---- 1. 1,000 servers, 20% silent ----
    nsilent = N // 5
    rows = []
    for i in range(N):
        if i % 5 == 4:
            l = silent[i % len(silent)]
            rows.append((f"srv-{i:05d}", l.addr, l.port))
        else:
            _, a, p = endpoints[i % len(endpoints)]
            rows.append((f"srv-{i:05d}", a, p))
    d0, c0 = state("fleet1000_gate_open", N, N)
    fill(d0, c0, rows)
    wall0, cpu0, ok0 = run_fk(c0, N)
    d1, c1 = state("fleet1000", N)
    fill(d1, c1, rows)
    wall1, cpu1, ok1 = run_fk(c1, N)

    # ---- 2. the same 200 healthy servers: fleetkeeper, ansible, seed ssh ----
    base = [r for i, r in enumerate(rows) if i % 5 != 4][:BASE]
    d2, c2 = state("base200", BASE)
    fill(d2, c2, base)
    fk200, fkcpu200, ok2 = run_fk(c2, BASE)
    assert ok2 == BASE, ok2
    inv = tmp / "inventory.ini"
    inv.write_text("[all]\n" + "".join(
        f"{h} ansible_host={ip} ansible_port={port}\n" for h, ip, port in base) +
        f"[all:vars]\nansible_user={USER}\nansible_ssh_private_key_file={client_key}\n"
        f"ansible_python_interpreter=/usr/bin/python3\nansible_remote_tmp=/tmp/.fkbench-ansible\n")
    aenv = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_LOCAL_TEMP": str(tmp / "at"),
            "ANSIBLE_SSH_ARGS": "-o ControlMaster=no -o UserKnownHostsFile=/dev/null",
            "ANSIBLE_TIMEOUT": f"{TIMEOUT:g}", "ANSIBLE_GATHERING": "explicit"}
    t0 = time.monotonic()
    r = subprocess.run(["ansible", "all", "-i", str(inv), "-m", "ping", "-f", "32", "-o"],
                       capture_output=True, text=True, env=aenv, cwd=tmp)
    ans200 = time.monotonic() - t0
    ans_ok = r.stdout.count("SUCCESS")
    if ans_ok != BASE:
        sys.exit(f"ansible: {ans_ok}/{BASE} pinged\n{r.stdout[-1500:]}{r.stderr[-1500:]}")

    def seed_ssh(ip, port):
        return subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                               "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                               "-o", "ConnectTimeout=10", "-i", str(client_key), "-p", str(port),
                               f"{USER}@{ip}", "true"], capture_output=True,
                              stdin=subprocess.DEVNULL).returncode == 0

    t0 = time.monotonic()
    seed_ok = sum(seed_ssh(ip, port) for _, ip, port in base)
    seed200 = time.monotonic() - t0
    assert seed_ok == BASE, seed_ok

    # ---- 3. growth: 100, 1,000, 10,000 handles; sshd's ceiling at 10,000 ----
    growth = {}
    for n in (100, 1000, H):
        rows_n = [(f"h-{i:05d}", *endpoints[i % len(endpoints)][1:]) for i in range(n)]
        d3, c3 = state(f"growth{n}", min(n, CONC10K))
        fill(d3, c3, rows_n)
        s0 = sshd_cpu()
        wall_n, cpu_n, ok_n = run_fk(c3, n)
        growth[n] = {"wall_sec": round(wall_n, 3), "cpu_sec": round(cpu_n, 3),
                     "peak_rss_mib": round(peak_rss[0], 1), "healthy": ok_n,
                     "sshd_cpu_sec": sshd_cpu() - s0}
        print(f"health_scale_growth_{n}: wall {wall_n:.3f} s, CPU {cpu_n:.3f} s, peak RSS"
              f" {peak_rss[0]:.1f} MiB, {ok_n} of {n} healthy")
    wall10, cpu10, ok10 = growth[H]["wall_sec"], growth[H]["cpu_sec"], growth[H]["healthy"]
    sshd_cpu10 = growth[H]["sshd_cpu_sec"]
    per_session = sshd_cpu10 / max(ok10, 1)
    ceiling = CORES / per_session
    rate10 = ok10 / wall10
    # what real ssh clients get: 32 at a time, 640 sessions
    k = 640
    t0 = time.monotonic()
    with ThreadPoolExecutor(32) as ex:
        par_ok = sum(ex.map(lambda e: seed_ssh(e[1], e[2]),
                            [endpoints[i % len(endpoints)] for i in range(k)]))
    par_rate = par_ok / (time.monotonic() - t0)

    ratio_ans = ans200 / fk200
    fig = {
        "bench": "health_scale", "cores": CORES, "sshd_instances": NSSHD,
        "endpoints": len(endpoints), "check_timeout_sec": TIMEOUT,
        "servers": N, "silent_servers": nsilent, "concurrency": N,
        "run_sec": round(wall1, 3), "run_goal_sec": TIMEOUT + 2,
        "healthy": ok1, "client_cpu_sec_per_1000_checks": round(cpu1 / N * 1000, 3),
        "gate_open_run_sec": round(wall0, 3), "gate_open_healthy": ok0,
        "base_servers": BASE, "fleetkeeper_base_sec": round(fk200, 3),
        "fleetkeeper_base_cpu_sec": round(fkcpu200, 3),
        "ansible_ping_f32_sec": round(ans200, 3), "seed_ssh_sequential_sec": round(seed200, 3),
        "speedup_vs_ansible": round(ratio_ans, 1), "speedup_vs_seed": round(seed200 / fk200, 1),
        "handles": H, "handles_concurrency": CONC10K, "handles_run_sec": round(wall10, 3),
        "handles_healthy": ok10, "handles_client_cpu_sec_per_1000": round(cpu10 / H * 1000, 3),
        "handles_rate_per_sec": round(rate10, 1),
        "sshd_cpu_ms_per_session": round(per_session * 1000, 2),
        "sshd_ceiling_sessions_per_sec": round(ceiling, 1),
        "ratio_to_ceiling": round(rate10 / ceiling, 3),
        "ssh_32_parallel_sessions_per_sec": round(par_rate, 1),
        "growth": {str(n): {k: v for k, v in g.items() if k != "sshd_cpu_sec"}
                   for n, g in growth.items()},
    }
    fig["goals_met"] = (wall1 <= TIMEOUT + 2 and ok1 == N - nsilent and ratio_ans >= 20
                        and wall10 <= 60 and ok10 == H)
    print(f"health_scale_{N}_silent{nsilent}_run: {wall1:.3f} s (goal <= {TIMEOUT + 2:g} s;"
          f" {ok1} of {N - nsilent} live servers healthy)")
    print(f"health_scale_{N}_silent{nsilent}_gate_open_run: {wall0:.3f} s ({ok0} of"
          f" {N - nsilent} live servers healthy; handshake_concurrency = {N})")
    print(f"health_scale_{N}_client_cpu_per_1000_checks: {cpu1 / N * 1000:.3f} s")
    print(f"health_scale_fleetkeeper_{BASE}: {fk200:.3f} s")
    print(f"health_scale_ansible_ping_f32_{BASE}: {ans200:.3f} s")
    print(f"health_scale_seed_ssh_sequential_{BASE}: {seed200:.3f} s")
    print(f"health_scale_speedup_vs_ansible: {ratio_ans:.1f} x (goal >= 20)")
    print(f"health_scale_{H}_handles_run: {wall10:.3f} s (goal <= 60 s; {ok10} healthy,"
          f" concurrency {CONC10K})")
    print(f"health_scale_{H}_handles_rate: {rate10:.1f} checks/s")
    print(f"health_scale_{H}_client_cpu_per_1000_checks: {cpu10 / H * 1000:.3f} s")
    print(f"health_scale_sshd_cpu_per_session: {per_session * 1000:.2f} ms")
    print(f"health_scale_sshd_ceiling: {ceiling:.1f} sessions/s ({CORES} cores / sshd CPU)")
    print(f"health_scale_ratio_to_ceiling: {rate10 / ceiling:.3f}")
    print(f"health_scale_ssh_32_parallel: {par_rate:.1f} sessions/s")
    print(json.dumps(fig))
    ok = fig["goals_met"]
finally:
    for s in silent:
        s.close()
    for s in sshds:
        s.stop()
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(0 if ok else 1)
EOF
