"""The machine boundary: the only package whose code runs processes, talks HTTP, systemd,
sd_notify, the journal or LEDs, and reads the network's interfaces. The flow receives those as
objects of its context (flow/context.py), which tests build from fakes.

Files are the exception: every module reads and writes the files under the configurable root
(`Paths`) itself, the durable writes and renames through fsutil's functions, called directly;
tests give them a temporary root rather than a fake.
"""
