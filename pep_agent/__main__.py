"""`python -m pep_agent`: the same entry point as the console script."""

from pep_agent.cli import main

main()
