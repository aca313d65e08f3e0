#!/usr/bin/env python3
"""Writes fleetkeeper.conf(5): the mdoc frame FRAME with @KEYS@ replaced by
every key table of docs/configuration.md, one .Ss per section.

The key reference has one source, docs/configuration.md, whose tables
tests/integration/test_config_docs.py checks against the code
(`check-config --list-keys`); tests/integration/test_man_pages.py checks
the generated page the same way.

usage: conf_keys.py CONFIGURATION_MD FRAME OUT [FROM=TO ...]
(FROM=TO: path replacements for the frame, as for scripts/subst-paths.py)
"""
import re
import sys
import textwrap

SYMBOLS = {
    "\u2013": "\\(en", "\u2014": "\\(em", "\u2265": "\\(>=", "\u2264": "\\(<=",
    "\u2026": "...", "\u2192": "\\(->", "\u2019": "'", "\u2018": "'",
    "\u201c": "\\(lq", "\u201d": "\\(rq", "\u00d7": "\\(mu", "\u00a0": "\\ ",
}


def heading_section(text):
    m = re.fullmatch(r"\[([^\]]+)\]", text.strip())
    if m:
        return "[" + m.group(1) + "]"
    m = re.fullmatch(r"type = ([a-z_, ]+)", text.strip())
    if m:
        return "type = " + m.group(1)
    return None


def cells(line):
    """The cells of a table row: '|' neither escaped nor inside backticks."""
    out, cur, tick, prev = [], "", False, ""
    for ch in line.strip().strip("|"):
        if ch == "`":
            tick = not tick
        if ch == "|" and not tick and prev != "\\":
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
        prev = ch
    out.append(cur.strip())
    return out


def plain(md):
    """Markdown inline text as roff text (no requests, no font escapes)."""
    s = re.sub(r"\[([^\[\]]+)\]\([^)\s]+\)", r"\1", md)
    s = s.replace("**", "").replace("`", "").replace("\\|", "|")
    s = s.replace("\\", "\\e")
    out = []
    for ch in s:
        if ch in SYMBOLS:
            out.append(SYMBOLS[ch])
        elif ord(ch) > 127:
            out.append("\\[u%04X]" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def text_lines(s):
    """One sentence a line (mdoc style), none starting with a control
    character."""
    lines = []
    for part in re.split(r"(?<=[.!?])\s+(?=[A-Z(])", s):
        for line in textwrap.wrap(part, 78, break_on_hyphens=False, break_long_words=False):
            lines.append("\\&" + line if line[0] in ".'" else line)
    return lines


def macro_arg(s):
    """An argument of a macro line, quoted."""
    return '"' + s.replace('"', "\\(dq") + '"'


def key_tables(md):
    out = []
    section = None
    header = None
    opened = None
    for line in md.splitlines():
        if line.startswith("#"):
            if opened:
                out.append(".El")
                opened = None
            section = heading_section(line.lstrip("#"))
            header = None
            continue
        if not line.startswith("|"):
            if opened:
                out.append(".El")
                opened = None
            header = None
            continue
        row = cells(line)
        if header is None:
            header = row
            continue
        if set("".join(row)) <= set("-: ") or section is None or "key" not in header:
            continue
        if opened != section:
            # "\\&": a closing bracket last is read as a delimiter
            out += [".Ss " + macro_arg(plain(section) + "\\&"), ".Bl -tag -width Ds"]
            opened = section
        get = dict(zip(header, row))
        key = plain(get["key"])
        out.append(".It Ic " + macro_arg(key))
        if get.get("type"):
            out += text_lines("Type: " + plain(get["type"]) + ".")
        out += text_lines("Default: " + plain(get.get("default", "")) + ".")
        md_meaning = get.get("meaning", "")
        meaning = plain(md_meaning)
        if meaning:
            if not md_meaning.startswith("`"):  # a name keeps its case
                meaning = meaning[0].upper() + meaning[1:]
            out += text_lines(meaning + ("" if meaning.endswith(".") else "."))
    if opened:
        out.append(".El")
    return out


def main(argv):
    md_path, frame_path, out_path = argv[1:4]
    frame = open(frame_path, encoding="utf-8").read()
    for pair in argv[4:]:
        old, new = pair.split("=", 1)
        frame = frame.replace(old, new)
    keys = "\n".join(key_tables(open(md_path, encoding="utf-8").read()))
    if "@KEYS@\n" not in frame:
        sys.exit("conf_keys.py: the frame has no @KEYS@ line")
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(frame.replace("@KEYS@\n", keys + "\n"))


if __name__ == "__main__":
    main(sys.argv)
