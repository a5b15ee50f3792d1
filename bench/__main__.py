"""``make bench``: run the benchmarks and print their tables.

python -m bench                      all three, about 15 minutes
python -m bench --quick              all three, shorter runs, about 4 minutes
python -m bench request_cost         one (or several) by name
python -m bench --rounds 5           more rounds, tighter medians
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time

from bench import chat_relay, request_cost, stream_capacity
from bench.stack import BenchError

log = logging.getLogger("bench")

BENCHMARKS = {
    "request_cost": request_cost.run,
    "chat_relay": chat_relay.run,
    "stream_capacity": stream_capacity.run,
}
MIN_ROUNDS = 3
# Printz's own INFO logs (one per start-up, per chat turn) would bury the
# benchmark's progress; its warnings still show.
QUIET_LOGGERS = ("printz", "plugins", "secantus")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "benchmarks",
        nargs="*",
        metavar="NAME",
        help=f"which to run: {', '.join(BENCHMARKS)} (default: all)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="shorter runs, same rounds and variants"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=MIN_ROUNDS,
        help=f"rounds over the variants (at least {MIN_ROUNDS})",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.benchmarks) - set(BENCHMARKS))
    if unknown:
        parser.error(
            f"no benchmark {', '.join(unknown)}; choose from {list(BENCHMARKS)}"
        )
    if args.rounds < MIN_ROUNDS:
        parser.error(f"--rounds must be at least {MIN_ROUNDS}: a spread needs them")

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)

    # SIGTERM unwinds like Ctrl-C, so every server and sink started is stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    chosen = args.benchmarks or list(BENCHMARKS)
    tables = []
    started = time.monotonic()
    for name in chosen:
        log.info("benchmark %s%s", name, " (quick)" if args.quick else "")
        try:
            tables.append(BENCHMARKS[name](quick=args.quick, rounds=args.rounds))
        except BenchError as error:
            log.error("benchmark %s failed: %s", name, error)
            return 1
    log.info(
        "done in %.1f min; results in bench/results/\n\n%s",
        (time.monotonic() - started) / 60,
        "\n".join(tables),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
