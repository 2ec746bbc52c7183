"""Stand-ins for the pep server and for FCC, speaking the real protocols. No side effects.

The two simulators only meet through the factory-tool wire protocol, so either one can be
replaced by the real program: the pep server's factory tool talks to a real FCC, and a real
pep server can inject a simulated FCC.
"""
