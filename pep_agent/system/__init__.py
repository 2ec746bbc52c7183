"""The machine boundary: the only package whose code runs processes, does I/O on the system,
talks HTTP, systemd or LEDs. Everything else receives these as injected objects."""
