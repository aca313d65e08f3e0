#!/usr/bin/python3
"""Baseline for bench_log: the same event through structlog, configured like
the seed's setup_logging (merge_contextvars, add_log_level, TimeStamper(iso,
local time), service, logger, JSONRenderer) printing to /dev/null.

Prints `structlog_ns_per_event: N ns` (median of RUNS runs of N events) and a
JSON line. Exits 3 when structlog cannot be imported.
"""
import json
import logging
import os
import statistics
import sys
import time

try:
    import structlog
    from structlog.contextvars import bind_contextvars, clear_contextvars, merge_contextvars
except ImportError:
    print("structlog unavailable", file=sys.stderr)
    sys.exit(3)

N = int(os.environ.get("FK_BENCH_STRUCTLOG_N", "20000"))
RUNS = 5
SERVICE = "scheduler"


def add_service(logger, method_name, event_dict):
    event_dict["service"] = SERVICE
    return event_dict


def add_logger_name(logger, method_name, event_dict):
    # structlog.stdlib.add_logger_name needs a stdlib logger; with
    # PrintLogger the equivalent is a processor that adds the name.
    event_dict["logger"] = "tasks.health_check"
    return event_dict


def setup():
    devnull = open(os.devnull, "w")
    structlog.configure(
        processors=[
            merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=False),
            add_service,
            add_logger_name,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=devnull),
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger("tasks.health_check")


def run_once(log):
    t0 = time.perf_counter_ns()
    for _ in range(N):
        log.info(
            "server_health_check",
            server_handle="srv-eu-01",
            server_ip="10.0.3.17",
            status="healthy",
            stage="http",
            response_time_ms=123,
            attempt=2,
            http_status=200,
            duration_sec=0.84,
            load_avg=1.25,
            is_ghost=False,
        )
    return (time.perf_counter_ns() - t0) / N


def main():
    log = setup()
    clear_contextvars()
    bind_contextvars(
        correlation_id="run_health_check_1735167345_a1b2", task="health_check", run_id=42
    )
    run_once(log)  # warm up, and cache the logger
    results = [run_once(log) for _ in range(RUNS)]
    med = statistics.median(results)
    print("structlog_ns_per_event: %.0f ns" % med)
    print(json.dumps({"bench": "structlog_baseline", "ns_per_event": round(med), "n": N,
                      "runs": RUNS}))


if __name__ == "__main__":
    main()
