#!/usr/bin/python3
"""Baseline for bench_next: croniter (Debian python3-croniter) computing
chained next fire times in UTC.

    croniter_baseline.py [--start UNIX] [--iterations N] EXPR...

For each expression prints one tab-separated line:
    EXPR <TAB> ns_per_next <TAB> first five fire times (unix seconds, space separated)
or EXPR <TAB> error <TAB> message, if croniter rejects it.
"""
import argparse
import sys
import time

try:
    from croniter import croniter
except ImportError as e:  # pragma: no cover
    print("croniter not available: %s" % e, file=sys.stderr)
    sys.exit(2)

DEFAULT_EXPRS = ["*/5 * * * *", "0 * * * *", "30 2 * * *", "0 0 29 2 *"]


def first_fires(expr, start, n=5):
    it = croniter(expr, float(start))
    return [int(it.get_next(float)) for _ in range(n)]


def ns_per_next(expr, start, iterations):
    it = croniter(expr, float(start))
    t0 = time.perf_counter_ns()
    for _ in range(iterations):
        try:
            it.get_next(float)
        except Exception:  # past year 9999 (e.g. Feb 29 chains): start over
            it = croniter(expr, float(start))
    return (time.perf_counter_ns() - t0) / iterations


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", type=int, default=1767225600)  # 2026-01-01T00:00Z
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("exprs", nargs="*")
    args = ap.parse_args()
    for expr in args.exprs or DEFAULT_EXPRS:
        try:
            fires = first_fires(expr, args.start)
            ns = ns_per_next(expr, args.start, args.iterations)
        except Exception as e:  # croniter raises several kinds
            print("%s\terror\t%s" % (expr, e))
            continue
        print("%s\t%.1f\t%s" % (expr, ns, " ".join(str(t) for t in fires)))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
