"""The man pages (issue 19): fleetkeeper(8) and fleetkeeper.conf(5) are
clean for `mandoc -T lint` (errors and warnings), fleetkeeper.conf(5) lists
every key `check-config --list-keys` prints with its default, and
fleetkeeper(8) every command `fleetkeeper help` lists.

fleetkeeper.conf(5) is generated from docs/configuration.md by
docs/man/conf_keys.py, as meson does at build time; the test runs the
generator itself so that it does not depend on a build directory.
"""
import re
import shutil
import subprocess
import sys

import pytest

from conftest import BIN, ROOT
from test_config_docs import default_matches, listed_keys

MAN = ROOT / "docs" / "man"

needs_mandoc = pytest.mark.skipif(shutil.which("mandoc") is None,
                                  reason="mandoc not installed (scripts/setup-deps.sh test)")


@pytest.fixture(scope="module")
def conf5(tmp_path_factory):
    out = tmp_path_factory.mktemp("man") / "fleetkeeper.conf.5"
    subprocess.run([sys.executable, str(MAN / "conf_keys.py"),
                    str(ROOT / "docs" / "configuration.md"),
                    str(MAN / "fleetkeeper.conf.5.in"), str(out)], check=True)
    return out


def lint(path):
    r = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", str(path)],
                       capture_output=True, text=True)
    # "outdated mandoc.db" is about the machine's man database, not the page
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if "mandoc.db" not in ln]
    return lines


@needs_mandoc
def test_fleetkeeper_8_lints_clean():
    assert lint(MAN / "fleetkeeper.8") == []


@needs_mandoc
def test_fleetkeeper_conf_5_lints_clean(conf5):
    assert lint(conf5) == []


def unroff(s):
    for a, b in (("\\&", ""), ("\\(en", "\u2013"), ("\\(em", "\u2014"), ("\\e", "\\"),
                 ("\\(>=", "\u2265"), ("\\(<=", "\u2264"), ("\\(dq", '"')):
        s = s.replace(a, b)
    return s


def man_keys(text):
    """{(section, key): default} from the generated page: `.Ss "[daemon]"`
    or `.Ss "type = command"`, then `.It Ic "key"` and its text up to the
    next item, with its "Default: ... ." sentence."""
    keys = {}
    section = None
    item = None
    body = []

    def flush():
        if item is None:
            return
        text = unroff(" ".join(body))
        m = re.search(r"Default: (.*?)\.(?:\s|$)", text)
        keys[(section, item)] = m.group(1) if m else None

    for line in text.splitlines():
        m = re.fullmatch(r'\.Ss "(.*)"', line)
        if m or line.startswith(".Sh"):
            flush()
            item = None
            name = unroff(m.group(1)) if m else ""
            t = re.fullmatch(r"type = ([a-z_]+)", name)
            section = ("task.NAME type=" + t.group(1) if t
                       else name.strip("[]") if name.startswith("[") else None)
            continue
        m = re.fullmatch(r'\.It Ic "(.*)"', line)
        if m:
            flush()
            item = unroff(m.group(1))
            body = []
        elif line.startswith(".El"):
            flush()
            item = None
        elif item is not None and not line.startswith("."):
            body.append(line)
    flush()
    return keys


def test_fleetkeeper_conf_5_lists_every_key_with_its_default(conf5):
    want = listed_keys()
    got = man_keys(conf5.read_text())
    problems = []
    for (section, key), default in want.items():
        if (section, key) not in got:
            problems.append(f"[{section}] {key}: not in fleetkeeper.conf(5)")
        elif got[(section, key)] is None:
            problems.append(f"[{section}] {key}: fleetkeeper.conf(5) gives no default")
        elif not default_matches(got[(section, key)], default):
            problems.append(f"[{section}] {key}: fleetkeeper.conf(5) gives the default "
                            f"{got[(section, key)]!r}, config.c {default!r}")
    for sk in got:
        if sk not in want:
            problems.append(f"[{sk[0]}] {sk[1]}: in fleetkeeper.conf(5) but not accepted")
    assert not problems, "\n".join(problems)


def test_fleetkeeper_8_describes_every_command():
    r = subprocess.run([BIN, "help"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    commands = set()
    for line in r.stdout.splitlines():
        m = re.match(r"  ([a-z][a-z-]+)\b", line)
        if m:
            commands.add(m.group(1))
    assert {"run", "once", "check-config"} <= commands, r.stdout
    page = (MAN / "fleetkeeper.8").read_text()
    documented = set(re.findall(r"^\.It Ic ([a-z][a-z-]+)", page, re.M))
    missing = sorted(commands - documented)
    assert not missing, f"commands in `fleetkeeper help` but not in fleetkeeper(8): {missing}"
