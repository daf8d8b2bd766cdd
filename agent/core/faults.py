"""Fault injection for the tests that prove recovery (``EDGE_AGENT_FAILPOINT=<step>``).

Off unless the variable names a step; the agent's unit never sets it. A failpoint either
kills the process outright (``kill_if``: what power loss or the OOM killer would do) or makes
a stage raise (``raise_if``: a stage that keeps failing).
"""

from __future__ import annotations

import os
import signal

from agent.errors import EdgeAgentError

ENV = "EDGE_AGENT_FAILPOINT"


class InjectedFault(EdgeAgentError):
    """Raised by ``raise_if``; never seen in production."""


def active(step: str) -> bool:
    return os.environ.get(ENV) == step


def kill_if(step: str) -> None:
    if active(step):
        os.kill(os.getpid(), signal.SIGKILL)


def raise_if(step: str) -> None:
    if active(step):
        raise InjectedFault(f"injected failure at {step}")
