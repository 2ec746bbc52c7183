"""`make bench`: the performance measurements of pep-agent (see bench/run.py). No side effects."""
