"""The agent's settings: config.py (the settings, their sources and checks), envfile.py (the
env file), serials.py, urls.py, identity_query.py (the identity request's query and its size,
checked when the settings load), paths.py (every path from one root) and profiles.py (the
platforms' facts).

No side effects. A plain package face: it imports none of its modules, so that importing one
(status and --help import few) loads only that one and what it needs.
"""
