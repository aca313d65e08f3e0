"""A private wall clock for one daemon (tests/integration/test_clock_jumps.py).

libfaketime is preloaded into the daemon and reads its offset from a file on
every clock call (FAKETIME_NO_CACHE=1), so the test moves the daemon's wall
clock by rewriting that file; CLOCK_MONOTONIC stays real
(FAKETIME_DONT_FAKE_MONOTONIC=1). The machine's clock is never touched. The
kernel does not know about the jump, so the daemon's timerfd
(TFD_TIMER_CANCEL_ON_SET) stays silent: the daemon notices at its next
wakeup, through the wall-minus-monotonic offset check. `nudge` wakes it with
a control request.
"""
import json
import os
import time
from datetime import datetime

from conftest import Daemon

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def have_libfaketime():
    return os.path.exists(LIBFAKETIME)


class FakeClock:
    """The daemon's wall clock = the real one + an offset kept in a file."""

    def __init__(self, path):
        self.path = str(path)
        self.offset = 0.0
        self.set_offset(0.0)

    def set_offset(self, offset):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("%+.3f\n" % offset)
        os.replace(tmp, self.path)  # never a half-written file for the reader
        self.offset = offset

    def now(self):
        return time.time() + self.offset

    def jump_to(self, fake_unix_time):
        """From now on the daemon's wall clock reads fake_unix_time."""
        self.set_offset(fake_unix_time - time.time())

    def env(self):
        # ASan wants to be first in the library list; with libfaketime
        # preloaded into an ASan build it is not, which is harmless here as
        # libfaketime neither allocates nor frees what ASan tracks
        # differently. The daemon's children (sh) get libfaketime only.
        asan = os.environ.get("ASAN_OPTIONS", "")
        return {
            "LD_PRELOAD": LIBFAKETIME,
            "FAKETIME_TIMESTAMP_FILE": self.path,
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0",
        }


class StampedDaemon(Daemon):
    """A Daemon whose events carry `_rx`, the test's monotonic time of
    arrival: the daemon's own timestamps follow the faked wall clock."""

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.raw.append(line)
                try:
                    ev = json.loads(line)
                except ValueError:
                    ev = {"event": "__unparsable__", "line": line}
                ev["_rx"] = time.monotonic()
                self.events.append(ev)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()


def unix(ts):
    """An event timestamp (RFC 3339) as unix seconds."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def next_minute(t):
    return (int(t) // 60 + 1) * 60
