"""The reference pep-cli's commands (get-one-identity, get-enrollment-id, ...)."""

from __future__ import annotations
