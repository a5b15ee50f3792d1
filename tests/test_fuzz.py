"""The short form of `make fuzz` that CI runs: about a minute, start to end."""

from __future__ import annotations

from tests.fuzz import fuzz

# Fuzzing time; serving the backend and stopping it take about 20 s more.
CI_SECONDS = 45
CI_MAX_EXAMPLES = 10


def test_fuzzing_the_api_finds_no_server_error_and_no_broken_contract(tmp_path):
    result = fuzz(
        seconds=CI_SECONDS,
        max_examples=CI_MAX_EXAMPLES,
        workdir=tmp_path,
        capture=True,
    )

    # The report has each failure's curl command and the seed to repeat the run
    # with `python -m tests.fuzz --seed N`.
    assert result.passed, result.output
