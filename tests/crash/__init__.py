"""The crash-state explorer: a provision recorded under strace, the on-disk states a power cut
could leave at each point of it, and the agent rerun on each (see tests/crash/explore.py)."""
