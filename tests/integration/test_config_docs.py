"""docs/configuration.md documents every key config.c accepts, with its
default (issue 14, item 8).

The keys come from `fleetkeeper check-config --list-keys --json`, which
prints config.c's own key tables (key_spec: the keys config_load validates
with) and each task type's keys table (task_type.keys, tasks/*.c), each
with the default as documented (`.def`). The documentation side is every
table with a `key` and a `default` column under a heading that names a
section: `## [daemon]`, `### [provider.inventory]`, `## [notify.NAME]`,
`## [task.NAME]`, `### type = command` (the keys of [task.NAME] with that
type).

A default cell matches `.def` when, with its backticks removed, it is
`.def` itself or starts with `.def` followed by " (", ", " or "; ":
"`0` (none)" documents "0", "the local zone (`TZ`, ...)" "the local zone".

Adding a key: give it `.def = "..."` in its table in config.c (or a line in
the type's keys table) and a row in docs/configuration.md; the failures
below name the section and the key that lacks either.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

from conftest import BIN, ROOT

# the man page generator's table-row parser: one reading of the docs' tables
sys.path.insert(0, str(ROOT / "docs" / "man"))
from conf_keys import cells  # noqa: E402

DOC = ROOT / "docs" / "configuration.md"


def listed_keys():
    r = subprocess.run([BIN, "check-config", "--list-keys", "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    keys = {}
    for line in r.stdout.splitlines():
        o = json.loads(line)
        keys[(o["section"], o["key"])] = o["default"]
    assert keys, "check-config --list-keys printed nothing"
    return keys


def heading_section(text):
    """The section a heading documents, or None."""
    m = re.fullmatch(r"\[([^\]]+)\]", text.strip())
    if m:
        return m.group(1)
    m = re.fullmatch(r"type = ([a-z_]+)", text.strip())
    if m:
        return "task.NAME type=" + m.group(1)
    return None


def documented_keys(text):
    """{(section, key): default cell} and [(section, key, problem)]."""
    docs, problems = {}, []
    section = None
    header = None
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            section = heading_section(line.lstrip("#"))
            header = None
            continue
        if not line.startswith("|"):
            header = None
            continue
        row = cells(line)
        if header is None:
            header = row
            continue
        if set("".join(row)) <= set("-: "):
            continue
        if section is None or "key" not in header:
            continue
        key = row[header.index("key")].strip("`")
        if "default" not in header:
            problems.append(f"docs/configuration.md:{n}: [{section}] {key}: the table has no "
                            f"default column")
            continue
        if (section, key) in docs:
            problems.append(f"docs/configuration.md:{n}: [{section}] {key} documented twice")
        docs[(section, key)] = row[header.index("default")]
    return docs, problems


def default_matches(cell, want):
    plain = cell.replace("`", "").strip()
    return plain == want or any(plain.startswith(want + sep) for sep in (" (", ", ", "; "))


def test_every_accepted_key_is_documented_with_its_default():
    keys = listed_keys()
    docs, problems = documented_keys(DOC.read_text())
    for (section, key), want in keys.items():
        if not want:
            problems.append(f"[{section}] {key}: config.c gives no documented default "
                            f"(add .def to its key table)")
        if (section, key) not in docs:
            problems.append(f"[{section}] {key}: accepted by config.c but not documented in "
                            f"docs/configuration.md")
        elif want and not default_matches(docs[(section, key)], want):
            problems.append(f"[{section}] {key}: docs/configuration.md gives the default "
                            f"{docs[(section, key)]!r}, config.c {want!r}")
    for (section, key) in docs:
        if (section, key) not in keys:
            problems.append(f"[{section}] {key}: documented in docs/configuration.md but not "
                            f"accepted by config.c")
    assert not problems, "\n".join(problems)


def test_task_type_keys_tables_list_every_key_the_type_parses():
    """A task type validates its keys in config_key (strcmp chains); its
    keys table is what is listed and documented. A key parsed but missing
    from the table would be accepted and undocumented."""
    keys = listed_keys()
    problems = []
    for src in sorted((ROOT / "tasks").glob("*.c")):
        text = src.read_text()
        m = re.search(r'const task_type task_type_\w+ = \{\s*\.name = "(\w+)"', text)
        if not m or "config_key =" not in text:
            continue
        section = "task.NAME type=" + m.group(1)
        for key in sorted(set(re.findall(r'strcmp\(key, "(\w+)"\)', text))):
            if (section, key) not in keys:
                problems.append(f"{src.relative_to(ROOT)}: type {m.group(1)} parses key "
                                f"'{key}' but its keys table does not list it")
    assert not problems, "\n".join(problems)


def test_notifier_defaults_are_the_ones_in_use():
    """The notifier defaults documented (and listed) are notifiers.c's:
    min_level info, rate_limit_per_minute 10, max_age 24h."""
    src = (ROOT / "src" / "notifiers.h").read_text()
    rate = int(re.search(r"#define NOTIFY_RATE_DEFAULT\s+(\d+)", src).group(1))
    age = float(re.search(r"#define NOTIFY_MAX_AGE_DEFAULT\s+([\d.]+)", src).group(1))
    level = re.search(r"nf->min_level = LOG_(\w+);",
                      (ROOT / "src" / "notifiers.c").read_text()).group(1).lower()
    keys = listed_keys()
    assert keys[("notify.NAME", "rate_limit_per_minute")] == str(rate)
    assert keys[("notify.NAME", "max_age")] == "%dh" % (age // 3600)
    assert keys[("notify.NAME", "min_level")] == level
