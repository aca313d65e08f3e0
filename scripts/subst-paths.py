#!/usr/bin/env python3
"""Copies IN to OUT with the installed paths of this build in place of the
Debian layout's (meson.build: the systemd unit, the production
configuration, tmpfiles.d and the man pages are written for /usr and /etc
and rewritten for another --prefix or --sysconfdir).

usage: subst-paths.py IN OUT [FROM=TO ...]   (applied in the order given)
"""
import sys


def main(argv):
    text = open(argv[1], encoding="utf-8").read()
    for pair in argv[3:]:
        old, new = pair.split("=", 1)
        text = text.replace(old, new)
    with open(argv[2], "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main(sys.argv)
