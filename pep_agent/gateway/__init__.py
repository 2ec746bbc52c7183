"""What the steps act on: FCC's session, serial discovery, the identity document, and the
credentials' install. Functions here take settings and paths, not the flow's context."""
