"""The provisioning flow: context.py (what a run may touch), steps.py (the steps, in order),
request.py (the server requests and their retry), recovery.py (the recovery rule) and
runner.py (provision()). No side effects on import."""

from pep_agent.flow.context import Context, build_context, make_led_for
from pep_agent.flow.runner import provision
from pep_agent.flow.steps import STEP_NAMES

__all__ = ["STEP_NAMES", "Context", "build_context", "make_led_for", "provision"]
