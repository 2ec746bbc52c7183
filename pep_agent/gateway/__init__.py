"""What the steps act on: FCC's session, serial discovery, the identity document, the
credentials' install, and the format of FCC's stored credentials (esfs.py). Functions here take
settings and paths, not the flow's context."""
