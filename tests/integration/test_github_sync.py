"""github_sync against the replay server (issue 6): every page, the token sent
but never printed, ETag 304s, retries, rate limits (primary and secondary),
truncated pages, missing after the threshold, recovery, renames (an
organization's, a repository's 301 for a project linked by name), and
libgit2 mirrors."""
import json
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ON_PG, base_env, parse_lines
from replay import Replay

TOKEN = "ghp_SECRETTOKEN1234567890abcdef"
LSAN = "suppressions=%s" % (Path(__file__).parent / "lsan_libgit2.supp")


@pytest.fixture
def replay():
    r = Replay(org="acme", repos=250).start()
    yield r
    r.stop()


def configure(env, replay, extra="", org="acme"):
    tok = env.dir / "gh.token"
    tok.write_text(TOKEN + "\n")
    env.write_config(f"""[github]
api_url = {replay.url}
org = {org}
token_file = {tok}
missing_threshold = 3
timeout = 10s
{extra}

[task.github_sync]
""")


def once(env, **extra_env):
    r = env.run("once", "github_sync", env=base_env(**extra_env) if extra_env else None)
    assert TOKEN not in r.stdout and TOKEN not in r.stderr
    assert "runtime error" not in r.stderr and "Sanitizer" not in r.stderr, r.stderr
    return r, parse_lines(r.stdout)


def named(events, name):
    return [e for e in events if e.get("event") == name]


def complete(events):
    (c,) = named(events, "github_sync_complete")
    return c


def projects(env):
    return {r[0]: r[1:] for r in env.sql(
        "SELECT name, github_repo_id, status, missing_count FROM projects")}


def test_all_pages_token_sent_and_etag_304(env, replay):
    configure(env, replay)
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    (start,) = named(ev, "github_sync_start")
    assert start["org_name"] == "acme"
    c = complete(ev)
    assert c["repos_synced"] == 250 and c["repos_discovered"] == 250
    assert len(named(ev, "github_project_discovered")) == 250
    assert len(projects(env)) == 250
    reqs = replay.requests_to("/orgs/acme/repos")
    assert len(reqs) == 3  # 100 + 100 + 50
    for q in reqs:
        assert q["headers"]["Authorization"] == "Bearer " + TOKEN
        assert q["headers"]["User-Agent"].startswith("fleetkeeper/")
    # Never stored either.
    con = env.connect()
    for (line,) in con.execute("SELECT line FROM events"):
        assert TOKEN not in line
    con.close()

    before = env.sql("SELECT max(updated_at), count(*) FROM projects")
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    c = complete(ev)
    assert c["repos_synced"] == 250 and c["repos_discovered"] == 0 and c["repos_missing"] == 0
    reqs = replay.requests_to("/orgs/acme/repos")[3:]
    assert len(reqs) == 3 and all("If-None-Match" in q["headers"] for q in reqs)
    (lf,) = named(ev, "github_listing_fetched")
    assert lf["not_modified"] == 3
    assert env.sql("SELECT max(updated_at), count(*) FROM projects") == before


def test_502_then_success_is_retried(env, replay):
    configure(env, replay)
    replay.fault("/orgs/acme/repos", "502", times=1)
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    assert complete(ev)["repos_synced"] == 250
    (lf,) = named(ev, "github_listing_fetched")
    assert lf["retries"] == 1


def test_short_rate_limit_is_waited_out(env, replay):
    configure(env, replay)
    replay.fault("/orgs/acme/repos", "ratelimit:1", times=1)
    t0 = time.monotonic()
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    assert complete(ev)["repos_synced"] == 250
    assert time.monotonic() - t0 >= 0.9


def test_long_rate_limit_stops_the_run(env, replay):
    configure(env, replay)
    replay.fault("/orgs/acme/repos", "ratelimit:3600", times=1)
    r, ev = once(env)
    assert r.returncode == 1
    (rl,) = named(ev, "github_rate_limited")
    assert rl["reset_at"] > time.time() + 3000
    (f,) = named(ev, "github_sync_failed")
    assert f["error_type"] == "github_rate_limited"
    assert env.sql("SELECT count(*) FROM projects") == [(0,)]


@pytest.mark.parametrize("status", ["403", "429"])
def test_secondary_rate_limit_stops_the_run(env, replay, status):
    # GitHub's secondary limit: no Retry-After, X-RateLimit-Remaining not 0,
    # a body that says so. The rule is to wait at least a minute: longer than
    # the longest wait, so the run stops and the next run tries again.
    configure(env, replay)
    assert once(env)[0].returncode == 0
    del replay.repos[10:20]  # would be "missing" if the listing were complete
    replay.changed()
    replay.fault("/orgs/acme/repos", "secondary:" + status, times=1)
    n = len(replay.requests_to("/orgs/acme/repos"))
    t0 = time.time()
    r, ev = once(env)
    assert r.returncode == 1, r.stderr
    (rl,) = named(ev, "github_rate_limited")
    assert t0 + 55 <= rl["reset_at"] <= time.time() + 65
    (f,) = named(ev, "github_sync_failed")
    assert f["error_type"] == "github_rate_limited"
    assert "rate limited (HTTP %s)" % status in f["error"]
    assert len(replay.requests_to("/orgs/acme/repos")) == n + 1  # not retried
    assert not named(ev, "project_missing_from_github")
    assert all(v[1] == "active" and v[2] == 0 for v in projects(env).values())


def test_truncated_page_fails_without_marking_missing(env, replay):
    configure(env, replay)
    assert once(env)[0].returncode == 0
    del replay.repos[10:20]  # would be "missing" if the listing were complete
    replay.changed()
    replay.fault("/orgs/acme/repos", "truncate", times=-1)
    r, ev = once(env)
    assert r.returncode == 1
    (f,) = named(ev, "github_sync_failed")
    assert f["error_type"] == "github_incomplete_listing"
    assert not named(ev, "project_missing_from_github")
    assert all(v[1] == "active" and v[2] == 0 for v in projects(env).values())


def test_missing_after_threshold_then_recovered(env, replay):
    configure(env, replay)
    assert once(env)[0].returncode == 0
    gone = replay.repos.pop(5)
    replay.changed()
    for attempt in (1, 2, 3):
        r, ev = once(env)
        assert r.returncode == 0, r.stderr
        (m,) = named(ev, "project_missing_from_github")
        assert m["project_name"] == gone["name"] and m["github_repo_id"] == gone["id"]
        assert m["attempt"] == attempt and m["threshold"] == 3
        assert complete(ev)["repos_missing"] == 1
        marked = named(ev, "project_marked_missing")
        assert len(marked) == (1 if attempt == 3 else 0)
        assert projects(env)[gone["name"]][1] == ("missing" if attempt == 3 else "active")
    # Already missing: nothing more.
    r, ev = once(env)
    assert not named(ev, "project_missing_from_github")
    replay.repos.insert(5, gone)
    replay.changed()
    r, ev = once(env)
    assert r.returncode == 0
    (rec,) = named(ev, "project_recovered")
    assert rec["project_name"] == gone["name"]
    assert projects(env)[gone["name"]][1:] == ("active", 0)


def test_archived_renamed_and_linked(env, replay):
    configure(env, replay)
    env.state.mkdir(parents=True, exist_ok=True)
    assert once(env)[0].returncode == 0
    con = env.connect()
    with con:
        con.execute("INSERT INTO projects(name, created_at, updated_at) VALUES ('legacy', 0, 0)")
    con.close()
    replay.repos[0]["archived"] = True
    replay.repos[1]["name"] = "renamed-one"
    replay.repos.append(replay.make_repo(99999, "legacy"))
    replay.changed()
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    p = projects(env)
    assert p[replay.repos[0]["name"]][1] == "archived"
    assert p["renamed-one"][0] == replay.repos[1]["id"]
    assert "repo-0001" not in p
    assert named(ev, "project_linked_to_github")[0]["project_name"] == "legacy"
    assert p["legacy"][0] == 99999
    assert complete(ev)["repos_discovered"] == 0 and complete(ev)["repos_missing"] == 0


def test_renamed_org_301_is_followed(env, replay):
    replay.rename_org("old-acme")
    configure(env, replay, org="old-acme")
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    assert complete(ev)["repos_synced"] == 250
    first = replay.requests_to("/orgs/acme/repos")[0]
    assert first["headers"]["Authorization"] == "Bearer " + TOKEN


def insert_unlinked(env, *names):
    con = env.connect()
    with con:
        for n in names:
            con.execute("INSERT INTO projects(name, created_at, updated_at) VALUES (?, 0, 0)", (n,))
    ids = dict(con.execute("SELECT name, id FROM projects WHERE github_repo_id IS NULL"))
    con.close()
    return ids


def test_renamed_repository_links_the_project_linked_by_name(env, replay):
    # A project known only by name ("old-name") whose repository was renamed
    # to "new-name" before it was ever linked: the listing only has the new
    # name, and GET /repos/acme/old-name answers the recorded 301 to
    # /repositories/<id> (rename-repository.json).
    configure(env, replay)
    assert once(env)[0].returncode == 0
    ids = insert_unlinked(env, "old-name", "local-only")
    replay.repos.append(replay.make_repo(99999, "new-name"))
    replay.rename_repo("old-name", 99999)
    replay.changed()
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    (old,) = replay.requests_to("/repos/acme/old-name")
    (moved,) = replay.requests_to("/repositories/99999")
    assert moved["headers"]["Authorization"] == "Bearer " + TOKEN
    assert len(replay.requests_to("/repos/acme/local-only")) == 1  # 404: stays unlinked
    (link,) = named(ev, "project_linked_to_github")
    assert link == {**link, "project_name": "new-name", "previous_name": "old-name",
                    "github_repo_id": 99999}
    assert not named(ev, "github_project_discovered")
    assert complete(ev)["repos_discovered"] == 0
    rows = {n: (i, rid) for i, n, rid in env.sql("SELECT id, name, github_repo_id FROM projects")}
    assert rows["new-name"] == (ids["old-name"], 99999)  # the same row, linked and renamed
    assert "old-name" not in rows
    assert rows["local-only"] == (ids["local-only"], None)
    # Linked now: no more lookups of the old name.
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    assert len(replay.requests_to("/repos/acme/old-name")) == 1
    assert not named(ev, "project_linked_to_github")


def test_failed_rename_lookup_changes_nothing(env, replay):
    configure(env, replay)
    assert once(env)[0].returncode == 0
    insert_unlinked(env, "old-name")
    replay.repos.append(replay.make_repo(99999, "new-name"))
    replay.rename_repo("old-name", 99999)
    del replay.repos[10:20]
    replay.changed()
    replay.fault("/repos/acme/old-name", "502", times=-1)
    r, ev = once(env)
    assert r.returncode == 1
    (f,) = named(ev, "github_sync_failed")
    assert f["error_type"] == "github_incomplete_listing" and "old-name" in f["error"]
    assert not named(ev, "github_project_discovered")
    assert not named(ev, "project_missing_from_github")
    assert env.sql("SELECT github_repo_id FROM projects WHERE name = 'old-name'") == [(None,)]
    assert env.sql("SELECT count(*) FROM projects WHERE name = 'new-name'") == [(0,)]


def test_store_failure_inside_the_listing_changes_nothing(env, replay):
    # The last write of the listing's transaction fails (counting a project
    # missing): the archive flag, the rename and the new project written
    # before it in the same run are rolled back with it.
    configure(env, replay)
    assert once(env)[0].returncode == 0
    before = env.sql("SELECT id, name, github_repo_id, status, missing_count, updated_at"
                     " FROM projects ORDER BY id")
    con = env.connect()
    with con:
        if ON_PG:
            con.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
                        " $$BEGIN RAISE EXCEPTION 'missing count refused'; END$$")
            con.execute("CREATE TRIGGER refuse BEFORE UPDATE OF missing_count ON projects"
                        " FOR EACH ROW WHEN (NEW.missing_count > 0) EXECUTE FUNCTION refuse()")
        else:
            con.execute("CREATE TRIGGER refuse BEFORE UPDATE OF missing_count ON projects"
                        " WHEN NEW.missing_count > 0"
                        " BEGIN SELECT RAISE(ABORT, 'missing count refused'); END")
    con.close()
    replay.repos[0]["archived"] = True
    replay.repos[1]["name"] = "renamed-one"
    del replay.repos[5]
    replay.repos.append(replay.make_repo(99999, "newcomer"))
    replay.changed()
    r, ev = once(env)
    assert r.returncode == 1
    (f,) = named(ev, "github_sync_failed")
    assert f["error_type"] == "store_error" and "missing count refused" in f["error"]
    assert env.sql("SELECT id, name, github_repo_id, status, missing_count, updated_at"
                   " FROM projects ORDER BY id") == before
    # The store accepts it again: the same listing is applied whole.
    con = env.connect()
    with con:
        con.execute("DROP TRIGGER refuse ON projects" if ON_PG else "DROP TRIGGER refuse")
    con.close()
    r, ev = once(env)
    assert r.returncode == 0, r.stderr
    c = complete(ev)
    assert c["repos_discovered"] == 1 and c["repos_missing"] == 1
    p = projects(env)
    assert p["newcomer"][0] == 99999 and p["renamed-one"][0] == replay.repos[1]["id"]
    assert p[replay.repos[0]["name"]][1] == "archived"


def test_no_token_is_skipped(env, replay):
    env.write_config(f"""[github]
api_url = {replay.url}
org = acme
token_env = FK_TEST_NO_SUCH_TOKEN

[task.github_sync]
""")
    r, ev = once(env)
    assert r.returncode == 0
    (s,) = named(ev, "github_sync_skipped")
    assert s["reason"] == "no_credentials"
    assert replay.requests == []


def test_token_from_env(env, replay):
    env.write_config(f"""[github]
api_url = {replay.url}
org = acme
token_env = FK_TEST_GH_TOKEN

[task.github_sync]
""")
    r = env.run("once", "github_sync", env=base_env(FK_TEST_GH_TOKEN=TOKEN))
    assert r.returncode == 0, r.stderr
    assert TOKEN not in r.stdout + r.stderr
    assert replay.requests_to("/orgs/")[0]["headers"]["Authorization"] == "Bearer " + TOKEN


@pytest.mark.parametrize("body", [
    b"{}", b"null", b"[1, 2]", b'[{"id": "x", "name": "a"}]', b'[{"id": 5}]',
    b'[{"id": 1e300, "name": "a"}]', b"[" * 5000, b'\xff\xfe[]',
])
def test_malformed_pages_fail_cleanly(env, replay, body):
    configure(env, replay)
    replay._pages[(100, 1)] = (body, '"bad"')
    r, ev = once(env)
    assert r.returncode == 1, r.stderr
    assert named(ev, "github_sync_failed")[0]["error_type"] == "github_incomplete_listing"


def git(*args, cwd=None):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env=base_env(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
                                GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com"))


def make_bare(tmp, name, spec=None, readme=None):
    work = tmp / ("work-" + name)
    work.mkdir()
    git("init", "-q", "-b", "main", str(work))
    if spec is not None:
        (work / ".project-spec.yaml").write_text(spec)
    (work / "README.md").write_text(readme or "# %s\n" % name)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "init", cwd=work)
    bare = tmp / ("%s.git" % name)
    git("clone", "-q", "--bare", str(work), str(bare))
    return work, bare


def test_mirror_clone_then_fetch_reads_spec_and_readme(env, replay, tmp_path):
    w1, b1 = make_bare(tmp_path, "alpha", spec="name: alpha\nport: 8080\n", readme="# Alpha\n")
    _, b2 = make_bare(tmp_path, "beta")
    replay.repos = [replay.make_repo(1, "alpha", clone_url="file://%s" % b1),
                    replay.make_repo(2, "beta", clone_url="file://%s" % b2)]
    replay.changed()
    mirrors = tmp_path / "mirrors"
    configure(env, replay, extra=f"mirror_dir = {mirrors}")
    r, ev = once(env, LSAN_OPTIONS=LSAN)
    assert r.returncode == 0, r.stderr
    assert complete(ev)["repos_fetched"] == 2
    assert all(e["cloned"] for e in named(ev, "github_repo_mirrored"))
    assert (mirrors / "alpha.git" / "HEAD").exists()
    rows = dict(((n, (s, rd)) for n, s, rd in env.sql("SELECT name, spec, readme FROM projects")))
    assert rows["alpha"] == ("name: alpha\nport: 8080\n", "# Alpha\n")
    assert rows["beta"] == (None, "# beta\n")

    # A new commit upstream arrives with a fetch.
    (w1 / ".project-spec.yaml").write_text("name: alpha\nport: 9090\n")
    git("commit", "-q", "-am", "port", cwd=w1)
    git("push", "-q", str(b1), "main", cwd=w1)
    r, ev = once(env, LSAN_OPTIONS=LSAN)
    assert r.returncode == 0, r.stderr
    assert not any(e["cloned"] for e in named(ev, "github_repo_mirrored"))
    assert env.sql("SELECT spec FROM projects WHERE name='alpha'") == [("name: alpha\nport: 9090\n",)]
    cfg = (mirrors / "alpha.git" / "config").read_text()
    assert TOKEN not in cfg
