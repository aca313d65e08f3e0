"""The shipped playbooks are ansible-lint clean (production profile)."""
import shutil
import subprocess

from conftest import ROOT


def test_playbooks_are_ansible_lint_clean():
    lint = shutil.which("ansible-lint")
    assert lint, "ansible-lint is missing: scripts/setup-deps.sh test installs it"
    playbooks = sorted(str(p) for p in (ROOT / "playbooks").glob("*.yml"))
    assert len(playbooks) >= 4
    r = subprocess.run([lint, "--offline", "--nocolor", "-p", *playbooks], capture_output=True,
                       text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 failure" in r.stdout + r.stderr
