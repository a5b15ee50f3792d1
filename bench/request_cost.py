"""Benchmark 1: what observability costs an ordinary request.

Three Printz servers run side by side on the same MongoDB and Redis: Sentry
off, Sentry at the default trace rate (0.2) and Sentry tracing every request
(1.0), the last two sending to a local ingest sink. Each round loads each
route on each server in turn for a fixed time, with a signed-in customer's
cookie: ``GET /api/products`` (answered from the Redis cache after the first
call) and ``GET /api/orders`` (a MongoDB query over the customer's orders).

Per run: requests per second, p50 and p99 latency, and CPU per request, the
CPU time of the gunicorn master and workers (from /proc) over the measured
window divided by the requests answered in it. The load generator's and the
sink's own CPU are reported beside them, to show neither was the bottleneck.
"""

from __future__ import annotations

import contextlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from bench import runner, stack
from bench.sink import Arrivals, CountingSink
from bench.stats import ratio, summary

log = logging.getLogger(__name__)

NAME = "request_cost"
ROUTES = ("/api/products", "/api/orders")
ORDERS_PER_CUSTOMER = 5
# Issue 7: throughput with Sentry on, as a share of Sentry off, at least this.
TARGETS = {"rate-0.2": 0.85, "rate-1.0": 0.60}


@dataclass(frozen=True)
class Variant:
    name: str
    trace_rate: float | None  # None: Sentry off

    def settings(self, dsn: str) -> dict[str, str]:
        if self.trace_rate is None:
            return {}
        return {
            "PRINTZ_SENTRY_DSN": dsn,
            "PRINTZ_SENTRY_TRACES_SAMPLE_RATE": str(self.trace_rate),
        }


VARIANTS = (
    Variant("sentry-off", None),
    Variant("rate-0.2", 0.2),
    Variant("rate-1.0", 1.0),
)
BASELINE = VARIANTS[0].name


@dataclass(frozen=True)
class Plan:
    quick: bool
    rounds: int
    duration_s: float
    warmup_s: float
    settle_s: float
    connections: int


def plan(quick: bool, rounds: int) -> Plan:
    connections = int(os.environ.get("PRINTZ_BENCH_CONNECTIONS", "16"))
    if quick:
        return Plan(quick, rounds, 1.5, 0.5, 0.3, connections)
    return Plan(quick, rounds, 8.0, 1.0, 1.0, connections)


def start_servers(
    services: stack.Services,
    scratch,
    sinks: dict[str, CountingSink],
    exits: contextlib.ExitStack,
) -> dict[str, stack.PrintzServer]:
    """One Printz per variant; the first alone, as it seeds the shared database."""
    servers = {
        variant.name: stack.PrintzServer(
            variant.name,
            services,
            scratch,
            variant.settings(sinks[variant.name].dsn) if variant.name in sinks else {},
        )
        for variant in VARIANTS
    }
    first, *others = servers.values()
    exits.enter_context(first).wait_until_serving()
    for server in others:
        exits.enter_context(server)
    with ThreadPoolExecutor(len(others)) as pool:
        list(pool.map(lambda server: server.wait_until_serving(), others))
    return servers


def warm_up(server: stack.PrintzServer, customer: stack.Customer) -> None:
    """Fill the catalogue cache and open each worker's connections."""
    for _ in range(20):
        for route in ROUTES:
            status, _, _ = stack.request(
                server.port, "GET", route, headers={"Cookie": customer.cookie}
            )
            if status != 200:
                raise stack.BenchError(f"{server.name} {route} answered {status}")


def run(quick: bool = False, rounds: int = 3) -> str:
    """Run the benchmark, write its results, return the markdown table."""
    settings = plan(quick, rounds)
    facts = stack.environment_facts()
    runs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as exits:
        scratch = exits.enter_context(runner.scratch_dir())
        services = exits.enter_context(stack.shared_services(scratch))
        # A sink per variant: what a server sends late is still its own.
        sinks = {
            variant.name: exits.enter_context(CountingSink())
            for variant in VARIANTS
            if variant.trace_rate is not None
        }
        servers = start_servers(services, scratch, sinks, exits)
        customers = {
            name: stack.sign_up(server, ORDERS_PER_CUSTOMER)
            for name, server in servers.items()
        }
        for name, server in servers.items():
            warm_up(server, customers[name])
        for sink in sinks.values():
            sink.take()

        for round_index in range(settings.rounds):
            for route in ROUTES:
                for variant in runner.round_robin(VARIANTS, round_index):
                    server = servers[variant.name]
                    runs.append(
                        _one_run(
                            server,
                            customers[variant.name],
                            route,
                            variant,
                            round_index,
                            settings,
                            services,
                            sinks.get(variant.name),
                        )
                    )
        configs = {name: server.config for name, server in servers.items()}
        database = services.description

    facts["load_average_at_end"] = os.getloadavg()
    figures = summarise(runs, settings.rounds)
    table = render(figures, settings, configs, database, facts)
    data = {
        "benchmark": NAME,
        "plan": asdict(settings),
        "environment": facts,
        "database": database,
        "serving": configs,
        "targets": TARGETS,
        "figures": figures,
        "runs": runs,
    }
    runner.write_results(NAME, table, data)
    return table


def _one_run(
    server: stack.PrintzServer,
    customer: stack.Customer,
    route: str,
    variant: Variant,
    round_index: int,
    settings: Plan,
    services: stack.Services,
    sink: CountingSink | None,
) -> dict[str, Any]:
    log.info("round %d: %s on %s", round_index + 1, route, variant.name)
    measured = runner.run_loadgen(
        server,
        route,
        customer.cookie,
        settings.connections,
        settings.warmup_s,
        settings.duration_s,
        probes={
            "printz": server.cpu,
            "services": services.cpu,
            "sink": runner.own_cpu,
        },
    )
    # Transactions still queued in the workers are sent during the pause and
    # counted with this run.
    runner.settle(settings.settle_s)
    arrivals = sink.take() if sink is not None else Arrivals()
    result = measured.result
    requests, seconds = result["requests"], result["seconds"]
    return {
        "round": round_index,
        "route": route,
        "variant": variant.name,
        "requests": requests,
        "ok": result["ok"],
        "errors": result["errors"],
        "statuses": result["statuses"],
        "rps": result["rps"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "printz_cpu_ms_per_request": _per_request(measured.cpu_s["printz"], requests),
        "services_cpu_ms_per_request": _per_request(
            measured.cpu_s["services"], requests
        ),
        "printz_cores": measured.cpu_s["printz"] / seconds,
        "loadgen_cpu_share": result["loadgen_cpu_share"],
        "sink_cpu_share": measured.cpu_s["sink"] / seconds,
        "workers_replaced": bool(measured.pids_changed),
        "sentry": arrivals.as_dict(),
        "transactions_per_request": arrivals.transactions / requests
        if requests
        else None,
    }


def _per_request(cpu_s: float, requests: int) -> float | None:
    return cpu_s * 1000 / requests if requests else None


METRICS = (
    "rps",
    "p50_ms",
    "p99_ms",
    "printz_cpu_ms_per_request",
    "services_cpu_ms_per_request",
    "printz_cores",
    "loadgen_cpu_share",
    "sink_cpu_share",
    "transactions_per_request",
)


def summarise(runs: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    """Median and spread per route and variant; ratios paired round by round."""
    by_key = {(r["route"], r["variant"], r["round"]): r for r in runs}
    figures: dict[str, Any] = {}
    for route in ROUTES:
        for variant in VARIANTS:
            mine = [by_key[(route, variant.name, i)] for i in range(rounds)]
            base = [by_key[(route, BASELINE, i)] for i in range(rounds)]
            entry = {metric: summary([r[metric] for r in mine]) for metric in METRICS}
            entry["rps_vs_off"] = summary(
                [ratio(r["rps"], b["rps"]) for r, b in zip(mine, base, strict=True)]
            )
            entry["cpu_vs_off"] = summary(
                [
                    ratio(
                        r["printz_cpu_ms_per_request"], b["printz_cpu_ms_per_request"]
                    )
                    for r, b in zip(mine, base, strict=True)
                ]
            )
            entry["failed_requests"] = sum(r["requests"] - r["ok"] for r in mine)
            entry["sentry_discarded"] = _add_discarded(mine)
            entry["target"] = TARGETS.get(variant.name)
            met = None
            if entry["target"] is not None and entry["rps_vs_off"]["median"]:
                met = entry["rps_vs_off"]["median"] >= entry["target"]
            entry["target_met"] = met
            figures[f"{route} {variant.name}"] = entry
    return figures


def _add_discarded(runs: list[dict[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for run_ in runs:
        for key, count in run_["sentry"]["discarded"].items():
            # Unsampled transactions are reported too; they are not losses.
            if not key.startswith("sample_rate/"):
                total[key] = total.get(key, 0) + count
    return total


def render(
    figures: dict[str, Any],
    settings: Plan,
    configs: dict[str, Any],
    database: dict[str, Any],
    facts: dict[str, Any],
) -> str:
    header = (
        "route",
        "Sentry",
        "req/s",
        "x off",
        "p50 ms",
        "p99 ms",
        "CPU ms/req",
        "CPU x off",
        "DB CPU ms/req",
        "tx sent/req",
        "target",
    )
    rows = []
    for key, entry in figures.items():
        route, variant = key.split(" ")
        target = entry["target"]
        verdict = "-"
        if target is not None:
            met = "met" if entry["target_met"] else "MISSED"
            verdict = f">= {target:.2f}: {met}"
        rows.append(
            (
                route,
                variant,
                runner.fmt_spread(entry["rps"], 0),
                runner.fmt_spread(entry["rps_vs_off"], 2),
                runner.fmt_spread(entry["p50_ms"], 1),
                runner.fmt_spread(entry["p99_ms"], 1),
                runner.fmt_spread(entry["printz_cpu_ms_per_request"], 2),
                runner.fmt_spread(entry["cpu_vs_off"], 2),
                runner.fmt(entry["services_cpu_ms_per_request"]["median"], 2),
                runner.fmt(entry["transactions_per_request"]["median"], 2),
                verdict,
            )
        )
    config = next(iter(configs.values()))
    loadgen = max(entry["loadgen_cpu_share"]["max"] or 0 for entry in figures.values())
    sink = max(entry["sink_cpu_share"]["max"] or 0 for entry in figures.values())
    failed = sum(entry["failed_requests"] for entry in figures.values())
    discarded = {
        key: entry["sentry_discarded"]
        for key, entry in figures.items()
        if entry["sentry_discarded"]
    }
    notes = [
        f"Median over {settings.rounds} rounds (± half the min-max range); "
        f"{settings.duration_s:.0f} s per run, {settings.connections} kept-alive "
        "connections, variants in rotating order each round.",
        f"gunicorn: {config['workers']} {config['worker_class']} workers x "
        f"{config['threads']} threads; database: {database['mongodb']}, "
        f"{database['redis']}.",
        f"Python {facts['python']}, "
        + ", ".join(f"{k} {v}" for k, v in facts["packages"].items() if v)
        + f"; {facts['cpu_count']} CPUs, load average at start "
        f"{facts['load_average_at_start'][0]:.1f}.",
        f"Load generator CPU at most {loadgen:.0%} of one core, the sink "
        f"(Sentry at 1.0) at most {sink:.0%}: the server was the bottleneck "
        "when both stay well under 100%.",
        f"Failed requests: {failed}. Sentry drops reported by the SDK: "
        f"{discarded or 'none'}.",
    ]
    return (
        "## Request cost\n\n"
        + runner.markdown_table(header, rows)
        + "\n"
        + "\n".join(f"- {note}" for note in notes)
        + "\n"
    )
