"""Benchmark 2: what Printz adds to a streamed answer, one customer at a time.

The scripted model (``printz.devmodel``) is asked the same thing three ways
each round: directly, as the reference, and through two Printz servers, one
with Sentry on (sending to a local sink; chat turns are always traced) and
one with Sentry off, so the table shows what the relay costs and how much of
that is observability. Every answer is scripted the same: text chunks at a
fixed pace.

Per variant: time to first token and total time (p50 of the round's turns),
and for Printz the CPU per relayed chunk, the CPU time of its gunicorn
processes over a batch of turns divided by the model's text chunks the client
got (counted by their scripted words, as Printz may group several into one
event).
Each round also runs a batch of short turns, so the CPU splits into a fixed
cost per turn (the request, the database writes, the trace) and a marginal
cost per chunk, found by comparing the two batches.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from bench import runner, stack, streams
from bench.sink import CountingSink
from bench.stats import percentile, summary
from printz import config

log = logging.getLogger(__name__)

NAME = "chat_relay"
MODEL_NAME = "gpt-4o-mini"
CHUNKS_PER_SECOND = 50.0
LONG_CHUNKS = 100
SHORT_CHUNKS = 20
# Issue 7: Printz adds at most this to the time to first token (p50), and
# spends at most this CPU per relayed chunk.
TTFT_ADDED_TARGET_MS = 25.0
CPU_PER_CHUNK_TARGET_US = 100.0

MODEL_ALONE = "model-alone"
PRINTZ_SENTRY = "printz-sentry"
PRINTZ_NO_SENTRY = "printz-sentry-off"
VARIANTS = (MODEL_ALONE, PRINTZ_SENTRY, PRINTZ_NO_SENTRY)


@dataclass(frozen=True)
class Plan:
    quick: bool
    rounds: int
    long_turns: int
    short_turns: int
    settle_s: float
    idle_s: float


def plan(quick: bool, rounds: int) -> Plan:
    if quick:
        return Plan(quick, rounds, 1, 1, 0.3, 1.0)
    return Plan(quick, rounds, 4, 4, 0.5, 3.0)


def scripted_turn(chunks: int) -> dict[str, Any]:
    """One answer of ``chunks`` text pieces at the benchmark's pace."""
    return {
        "text": [f"word{index} " for index in range(chunks)],
        "chunks_per_second": CHUNKS_PER_SECOND,
    }


def queue_turns(model: runner.ModelProcess, count: int, chunks: int) -> None:
    """Tell the model server what to answer to the next ``count`` requests."""
    body = json.dumps([scripted_turn(chunks)] * count).encode()
    request = urllib.request.Request(
        f"{model.url}/_script",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def reset_script(model: runner.ModelProcess) -> None:
    request = urllib.request.Request(f"{model.url}/_reset", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def job_for(
    variant: str,
    servers: dict[str, stack.PrintzServer],
    customers: dict[str, stack.Customer],
    model: runner.ModelProcess,
    count: int,
    label: str,
) -> dict[str, Any]:
    if variant == MODEL_ALONE:
        return {
            "port": model.port,
            "path": "/v1/chat/completions",
            "kind": "model",
            "count": count,
            "concurrency": 1,
            "body": streams.model_request_body(MODEL_NAME, "hi"),
        }
    return {
        "port": servers[variant].port,
        "path": "/api/chat",
        "kind": "printz",
        "count": count,
        "concurrency": 1,
        "headers": {"Cookie": customers[variant].cookie},
        "body": streams.chat_request_body(f"{label}-{{index}}", "hi"),
    }


def run(quick: bool = False, rounds: int = 3) -> str:
    """Run the benchmark, write its results, return the markdown table."""
    settings = plan(quick, rounds)
    facts = stack.environment_facts()
    runs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as exits:
        scratch = exits.enter_context(runner.scratch_dir())
        services = exits.enter_context(stack.shared_services(scratch))
        sink = exits.enter_context(CountingSink())
        model = exits.enter_context(
            runner.ModelProcess("printz.devmodel", ["--log-level", "WARNING"])
        )
        chat = {
            "PRINTZ_OPENAI_BASE_URL": model.base_url,
            "PRINTZ_OPENAI_API_KEY": "bench-key",
            "PRINTZ_CHAT_MODEL": MODEL_NAME,
        }
        servers = {
            PRINTZ_SENTRY: stack.PrintzServer(
                PRINTZ_SENTRY,
                services,
                scratch,
                {**chat, "PRINTZ_SENTRY_DSN": sink.dsn},
            ),
            PRINTZ_NO_SENTRY: stack.PrintzServer(
                PRINTZ_NO_SENTRY, services, scratch, chat
            ),
        }
        for server in servers.values():
            exits.enter_context(server).wait_until_serving()
        customers = {name: stack.sign_up(server) for name, server in servers.items()}
        _warm_up(servers, customers, model)
        sink.take()

        for round_index in range(settings.rounds):
            for variant in runner.round_robin(VARIANTS, round_index):
                runs.append(
                    _one_round(
                        variant, round_index, settings, servers, customers, model
                    )
                )
        runner.settle(2.0)
        arrivals = sink.take()
        configs = {name: server.config for name, server in servers.items()}
        database = services.description

    facts["load_average_at_end"] = os.getloadavg()
    figures = summarise(runs, settings.rounds)
    traced_turns = sum(
        batch["turns"]
        for r in runs
        if r["variant"] == PRINTZ_SENTRY
        for batch in r["batches"].values()
    )
    figures["traces"] = {"turns": traced_turns, "sink": arrivals.as_dict()}
    table = render(figures, settings, configs, database, facts)
    data = {
        "benchmark": NAME,
        "plan": asdict(settings),
        "model": {
            "server": "printz.devmodel",
            "chunks_per_second": CHUNKS_PER_SECOND,
            "long_chunks": LONG_CHUNKS,
            "short_chunks": SHORT_CHUNKS,
        },
        "environment": facts,
        "database": database,
        "serving": configs,
        "targets": {
            "ttft_added_ms": TTFT_ADDED_TARGET_MS,
            "cpu_per_chunk_us": CPU_PER_CHUNK_TARGET_US,
        },
        "figures": figures,
        "runs": runs,
    }
    runner.write_results(NAME, table, data)
    return table


def _warm_up(servers, customers, model) -> None:
    """A few short turns per server: every worker has loaded its model client."""
    for variant, server in servers.items():
        workers = server.config["workers"]
        queue_turns(model, 2 * workers, 3)
        job = job_for(variant, servers, customers, model, 2 * workers, "warm")
        runner.run_stream_client(job, probes={})
    reset_script(model)


def _one_round(
    variant: str,
    round_index: int,
    settings: Plan,
    servers: dict[str, stack.PrintzServer],
    customers: dict[str, stack.Customer],
    model: runner.ModelProcess,
) -> dict[str, Any]:
    log.info("round %d: %s", round_index + 1, variant)
    probes = {} if variant == MODEL_ALONE else {"printz": servers[variant].cpu}
    idle_rate = None
    if variant != MODEL_ALONE:
        idle_rate = runner.idle_cpu_rate(servers[variant].cpu, settings.idle_s)
    batches = {}
    for size, count in (("long", settings.long_turns), ("short", settings.short_turns)):
        if variant == MODEL_ALONE and size == "short":
            continue
        chunks = LONG_CHUNKS if size == "long" else SHORT_CHUNKS
        queue_turns(model, count, chunks)
        label = f"relay-{variant}-{round_index}-{size}"
        job = job_for(variant, servers, customers, model, count, label)
        measured = runner.run_stream_client(job, probes, settle_s=settings.settle_s)
        batches[size] = _batch_figures(measured, idle_rate)
    return {
        "variant": variant,
        "round": round_index,
        "idle_cpu_ms_per_s": idle_rate * 1e3 if idle_rate is not None else None,
        **_round_figures(batches),
    }


def _batch_figures(
    measured: runner.Measured, idle_rate: float | None
) -> dict[str, Any]:
    cpu = measured.cpu_s.get("printz")
    done = [s for s in measured.result["streams"] if s["done"] and s["status"] == 200]
    return {
        "turns": len(measured.result["streams"]),
        "complete": len(done),
        # The model's chunks relayed: Printz may send several in one event.
        "chunks": sum(s["words"] for s in done),
        "text_events": sum(s["tokens"] for s in done),
        "ttft_ms": [s["ttft_s"] * 1000 for s in done if s["ttft_s"] is not None],
        "total_s": [s["duration_s"] for s in done],
        "printz_cpu_s": cpu,
        # What the turns cost: the CPU an idle server spends over as long a
        # window taken away.
        "printz_busy_cpu_s": cpu - idle_rate * measured.window_s
        if cpu is not None and idle_rate is not None
        else None,
        "window_s": measured.window_s,
        "client_cpu_share": measured.result["client_cpu_share"],
        "errors": [s["error"] for s in measured.result["streams"] if s["error"]],
    }


def _round_figures(batches: dict[str, dict[str, Any]]) -> dict[str, Any]:
    long = batches["long"]
    figures: dict[str, Any] = {
        "turns": long["turns"],
        "complete": long["complete"],
        "ttft_p50_ms": percentile(long["ttft_ms"], 0.5),
        "total_p50_s": percentile(long["total_s"], 0.5),
        "chunks_per_turn": long["chunks"] / long["complete"]
        if long["complete"]
        else None,
        "batches": batches,
    }
    short = batches.get("short")
    if long["printz_busy_cpu_s"] is None or short is None or not long["chunks"]:
        return figures
    figures["cpu_per_chunk_us"] = long["printz_busy_cpu_s"] * 1e6 / long["chunks"]
    figures["all_in_cpu_per_chunk_us"] = long["printz_cpu_s"] * 1e6 / long["chunks"]
    # Two batches, two unknowns: cpu per turn = fixed + chunks * marginal.
    if long["complete"] and short["complete"]:
        long_turn = long["printz_busy_cpu_s"] / long["complete"]
        short_turn = short["printz_busy_cpu_s"] / short["complete"]
        long_chunks = long["chunks"] / long["complete"]
        short_chunks = short["chunks"] / short["complete"]
        if long_chunks > short_chunks:
            marginal = (long_turn - short_turn) / (long_chunks - short_chunks)
            figures["marginal_cpu_per_chunk_us"] = marginal * 1e6
            figures["fixed_cpu_per_turn_ms"] = (
                short_turn - marginal * short_chunks
            ) * 1e3
    return figures


def summarise(runs: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    by_key = {(r["variant"], r["round"]): r for r in runs}
    figures: dict[str, Any] = {}
    for variant in VARIANTS:
        mine = [by_key[(variant, i)] for i in range(rounds)]
        alone = [by_key[(MODEL_ALONE, i)] for i in range(rounds)]
        entry = {
            name: summary([r.get(name) for r in mine])
            for name in (
                "ttft_p50_ms",
                "total_p50_s",
                "chunks_per_turn",
                "cpu_per_chunk_us",
                "all_in_cpu_per_chunk_us",
                "idle_cpu_ms_per_s",
                "marginal_cpu_per_chunk_us",
                "fixed_cpu_per_turn_ms",
            )
        }
        entry["ttft_added_ms"] = summary(
            [
                _difference(r["ttft_p50_ms"], a["ttft_p50_ms"])
                for r, a in zip(mine, alone, strict=True)
            ]
        )
        entry["total_added_ms"] = summary(
            [
                _difference(r["total_p50_s"], a["total_p50_s"], scale=1000)
                for r, a in zip(mine, alone, strict=True)
            ]
        )
        entry["incomplete_turns"] = sum(r["turns"] - r["complete"] for r in mine)
        figures[variant] = entry
    return figures


def _difference(
    value: float | None, reference: float | None, scale: float = 1.0
) -> float | None:
    if value is None or reference is None:
        return None
    return (value - reference) * scale


def render(figures, settings, configs, database, facts) -> str:
    header = (
        "variant",
        "TTFT p50 ms",
        "TTFT added ms",
        "total p50 s",
        "total added ms",
        "CPU us/chunk",
        "all-in us/chunk",
        "idle ms/s",
        "marginal us/chunk",
        "fixed ms/turn",
        "targets",
    )
    rows = []
    for variant in VARIANTS:
        entry = figures[variant]
        verdict = "-"
        if variant != MODEL_ALONE:
            added = entry["ttft_added_ms"]["median"]
            cpu = entry["cpu_per_chunk_us"]["median"]
            verdict = "; ".join(
                (
                    _verdict("TTFT", added, TTFT_ADDED_TARGET_MS, "ms"),
                    _verdict("CPU", cpu, CPU_PER_CHUNK_TARGET_US, "us"),
                )
            )
        rows.append(
            (
                variant,
                runner.fmt_spread(entry["ttft_p50_ms"], 1),
                runner.fmt_spread(entry["ttft_added_ms"], 1)
                if variant != MODEL_ALONE
                else "-",
                runner.fmt_spread(entry["total_p50_s"], 3),
                runner.fmt_spread(entry["total_added_ms"], 0)
                if variant != MODEL_ALONE
                else "-",
                runner.fmt_spread(entry["cpu_per_chunk_us"], 0),
                runner.fmt_spread(entry["all_in_cpu_per_chunk_us"], 0),
                runner.fmt_spread(entry["idle_cpu_ms_per_s"], 1),
                runner.fmt_spread(entry["marginal_cpu_per_chunk_us"], 0),
                runner.fmt_spread(entry["fixed_cpu_per_turn_ms"], 1),
                verdict,
            )
        )
    config = configs[PRINTZ_SENTRY]
    traces = figures["traces"]
    relay_window_ms = _relay_window_ms()
    notes = [
        f"Median over {settings.rounds} rounds, each with {settings.long_turns} "
        f"turns of {LONG_CHUNKS} text chunks and {settings.short_turns} of "
        f"{SHORT_CHUNKS}, at {CHUNKS_PER_SECOND:.0f} chunks/s from "
        "printz.devmodel; one turn at a time; variants in rotating order.",
        "TTFT: request sent to first text chunk received. Added: Printz minus "
        "the model alone, paired round by round. CPU us/chunk: gunicorn CPU "
        "over the long turns, less what the same server spends idle over as "
        f"long (idle ms/s, read for {settings.idle_s:.0f} s before each "
        "round), / model text chunks relayed; the per-turn work (request, "
        "database writes, trace) is in it. all-in: without taking idle away. "
        "The client may get several chunks in one text-delta: the relay "
        f"gathers {relay_window_ms} ms (PRINTZ_CHAT_RELAY_WINDOW_MS). Marginal "
        "and fixed split the busy CPU using the short turns.",
        f"AI traces: {traces['sink']['ai_traces']} reached the sink for "
        f"{traces['turns']} traced turns; SDK-reported drops: "
        f"{_losses(traces['sink']['discarded']) or 'none'}.",
        f"gunicorn: {config['workers']} {config['worker_class']} workers x "
        f"{config['threads']} threads; database: {database['mongodb']}, "
        f"{database['redis']}; Python {facts['python']}, sentry-sdk "
        f"{facts['packages']['sentry-sdk']}, flask {facts['packages']['flask']}, "
        f"gunicorn {facts['packages']['gunicorn']}, openai "
        f"{facts['packages']['openai']}.",
    ]
    return (
        "## Chat relay\n\n"
        + runner.markdown_table(header, rows)
        + "\n"
        + "\n".join(f"- {note}" for note in notes)
        + "\n"
    )


def _relay_window_ms() -> str:
    """The relay window the servers ran with: the environment's, or the default."""
    default = next(
        setting.default
        for setting in config.SETTINGS
        if setting.name == "PRINTZ_CHAT_RELAY_WINDOW_MS"
    )
    return os.environ.get("PRINTZ_CHAT_RELAY_WINDOW_MS", str(default))


def _verdict(label: str, value: float | None, target: float, unit: str) -> str:
    if value is None:
        return f"{label}: -"
    met = "met" if value <= target else "MISSED"
    return f"{label} <= {target:.0f} {unit}: {met}"


def _losses(discarded: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in discarded.items() if not k.startswith("sample_rate/")}
