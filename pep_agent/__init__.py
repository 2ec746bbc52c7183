"""pep-agent: provisions an Izuma/Pelion Edge gateway with its production identity.

No side effects.
"""

__version__ = "0.1.0"
