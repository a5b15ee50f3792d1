"""Load and streaming benchmarks of Printz, run by ``make bench``, never by CI.

Each benchmark starts Printz as ``make run`` does (``python -m printz.devstack``
under gunicorn.conf.py), drives it from other processes over 127.0.0.1, runs
the variants it compares in turn for several rounds, and writes a markdown
table and a JSON file under ``bench/results/``. ``bench/README.md`` says how
to read them.
"""
