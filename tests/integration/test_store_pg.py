"""[store] backend = postgresql and its password (issue 17, item 1): a
password written into dsn is refused by check-config, naming [store] dsn;
the password comes from libpq's passfile (PGPASSFILE) and then appears in no
event, no store row and no child's environment. These tests start the
suite's PostgreSQL (pg.py) whatever FK_TEST_BACKEND says, so they always run
where PostgreSQL 15 is installed."""
import json
import os

import pytest

import pg
from conftest import parse_lines

pytestmark = pytest.mark.skipif(not pg.available(), reason="PostgreSQL 15 is not installed")

SECRET = "inline-Pw-93xk"

TASK = """
[task.envdump]
type = command
schedule = @every 1s
command = sh {out}.sh
"""


def task(env):
    """The envdump task: its command writes its environment to env.out."""
    out = env.dir / "env.out"
    (env.dir / "env.out.sh").write_text(f"env > {out}.tmp && mv {out}.tmp {out}\n")
    return TASK.format(out=out)


@pytest.mark.parametrize("dsn", [
    f"host=127.0.0.1 dbname=fk user=fk password={SECRET}",
    f"host=127.0.0.1 dbname=fk user=fk password = '{SECRET}'",
    f"postgresql://fk:{SECRET}@127.0.0.1/fk",
    f"postgresql://fk@127.0.0.1/fk?password={SECRET}",
])
def test_password_inline_in_dsn_is_refused(env, dsn):
    env.store_dsn = dsn
    env.write_config(task(env))
    line = env.conf.read_text().splitlines().index(f"dsn = {dsn}") + 1
    r = env.run("check-config")
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert f"{env.conf}:{line}:" in r.stderr and "[store] dsn" in r.stderr, r.stderr
    assert "password" in r.stderr and "passfile" in r.stderr.lower(), r.stderr
    assert SECRET not in r.stdout + r.stderr, "the refusal repeats the password"
    # nor does the daemon start on it
    r = env.run("run", timeout=30)
    assert r.returncode == 2 and "[store] dsn" in r.stderr, (r.returncode, r.stderr)
    assert SECRET not in r.stdout + r.stderr


def test_dsn_without_backend_postgresql_is_refused(env):
    env.write_config(task(env))
    text = env.conf.read_text()
    if "[store]" in text:  # the PostgreSQL run's section: say sqlite instead
        text = text.replace("backend = postgresql", "backend = sqlite")
    else:
        text += "\n[store]\ndsn = host=127.0.0.1 dbname=fk user=fk\n"
    env.conf.write_text(text)
    r = env.run("check-config")
    assert r.returncode == 2 and "[store] dsn" in r.stderr, (r.returncode, r.stderr)


@pytest.fixture
def pw_database():
    srv = pg.server()
    name = srv.new_database(owner=pg.PW_ROLE)
    yield srv, name
    srv.drop_database(name)


def test_password_from_pgpassfile_never_shows(env, daemons, pw_database, tmp_path):
    srv, dbname = pw_database
    pw = pg.PW_ROLE_PASSWORD
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{srv.port}:{dbname}:{pg.PW_ROLE}:{pw}\n")
    os.chmod(passfile, 0o600)
    out = env.dir / "env.out"
    # TCP to 127.0.0.1, where pg_hba.conf wants the role's password (scram)
    env.store_dsn = srv.dsn(dbname, user=pg.PW_ROLE, tcp=True)
    env.write_config(task(env), metrics_listen=None)
    env.extra_env["PGPASSFILE"] = str(passfile)
    assert env.run("check-config").returncode == 0

    d = daemons(env)
    d.wait_for("scheduler_started")
    d.wait_for("envdump_complete", count=2)
    con = srv.connect(dbname)
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute("SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = %s"
                        " AND pid <> pg_backend_pid()", (dbname,))
            assert cur.fetchall() == [(pg.PW_ROLE,)]
            cur.execute("SELECT count(*) FROM task_runs WHERE task = 'envdump'"
                        " AND status = 'success'")
            assert cur.fetchone()[0] >= 2
            cur.execute("SELECT count(*) FROM events WHERE event = 'envdump_complete'")
            assert cur.fetchone()[0] >= 1
    finally:
        con.close()
    status = env.run("status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["tasks"][0]["name"] == "envdump"
    err = d.stop()
    assert d.proc.returncode == 0, err[-3000:]

    # nowhere: the daemon's events and stderr, a command's environment,
    # any row of any table, the CLI's output
    with d.lock:
        lines = "".join(d.raw)
    assert parse_lines(lines)
    assert pw not in lines and pw not in err
    child_env = out.read_text()
    assert "FLEETKEEPER_CORRELATION_ID=" in child_env  # it is the task's environment
    assert pw not in child_env
    assert pw not in status.stdout + status.stderr
    dump = srv._run([str(pg.PG_BIN / "pg_dump"), "--data-only", "-h", srv.host,
                     "-p", str(srv.port), "-U", srv.superuser, dbname])
    assert dump.returncode == 0, dump.stderr
    assert "envdump_complete" in dump.stdout
    assert pw not in dump.stdout


def test_wrong_password_is_a_clear_store_error_without_the_password(env, pw_database, tmp_path):
    srv, dbname = pw_database
    passfile = tmp_path / "pgpass"
    wrong = "wrong-Pw-55"
    passfile.write_text(f"*:*:*:{pg.PW_ROLE}:{wrong}\n")
    os.chmod(passfile, 0o600)
    env.store_dsn = srv.dsn(dbname, user=pg.PW_ROLE, tcp=True)
    env.write_config(task(env))
    env.extra_env["PGPASSFILE"] = str(passfile)
    r = env.run("once", "envdump", timeout=60)
    assert r.returncode != 0, r.stdout
    assert "password authentication failed" in r.stdout + r.stderr, (r.stdout, r.stderr)
    assert wrong not in r.stdout + r.stderr
    assert not (env.dir / "env.out").exists()
