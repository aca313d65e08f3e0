#!/usr/bin/python3
"""Baseline for bench_log: the same event through structlog, configured like
the seed's setup_logging: structlog on top of the standard logging module
(the seed keeps stdlib compatibility and names the logger with
add_logger_name), processors merge_contextvars, add_log_level,
add_logger_name, TimeStamper(iso, local time), service, JSONRenderer, and a
logging.StreamHandler on /dev/null, which flushes (one write) per event, like
fleetkeeper's one write(2) per line.

For comparison it also measures a leaner structlog (PrintLoggerFactory, no
stdlib), whose print() is buffered: `structlog_print_ns_per_event`.

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


def setup_stdlib():
    devnull = open(os.devnull, "w")
    handler = logging.StreamHandler(devnull)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    structlog.reset_defaults()
    structlog.configure(
        processors=[
            merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=False),
            add_service,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger("tasks.health_check")


def setup_print():
    devnull = open(os.devnull, "w")
    structlog.reset_defaults()
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


def measure(log):
    clear_contextvars()
    bind_contextvars(
        correlation_id="run_health_check_1735167345_a1b2", task="health_check", run_id=42
    )
    run_once(log)  # warm up, and cache the logger
    return statistics.median(run_once(log) for _ in range(RUNS))


def main():
    med = measure(setup_stdlib())
    lean = measure(setup_print())
    print("structlog_ns_per_event: %.0f ns" % med)
    print("structlog_print_ns_per_event: %.0f ns" % lean)
    print(json.dumps({"bench": "structlog_baseline", "ns_per_event": round(med),
                      "print_ns_per_event": round(lean), "n": N, "runs": RUNS}))


if __name__ == "__main__":
    main()
