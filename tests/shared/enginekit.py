"""Helpers for the policy tests: wrap guide fragments, build tools/call messages, decide."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from aip.shared.policy.decision import Context, Decision
from aip.shared.policy.engine import decide
from aip.shared.policy.load import load_policy_text
from aip.shared.policy.model import Policy
from aip.shared.policy.ratelimit import RateLimiter

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "policies"
CTX = Context(cwd="/srv/work")


def wrap(fragment: str, name: str = "test") -> str:
    """A guide fragment as a full policy (DESIGN \u00a74.9)."""
    body = textwrap.indent(textwrap.dedent(fragment).strip("\n"), "  ")
    return (
        "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\n"
        f"metadata:\n  name: {name}\nspec:\n{body}\n"
    )


def policy(fragment: str) -> Policy:
    return load_policy_text(wrap(fragment))


def call(tool: str, args: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"name": tool}
    if args is not None or kwargs:
        params["arguments"] = {**(args or {}), **kwargs}
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}


def run(
    pol: Policy,
    message: dict[str, Any],
    limiter: RateLimiter | None = None,
    context: Context = CTX,
) -> Decision:
    return decide(pol, message, limiter if limiter is not None else RateLimiter(), context)
