"""Code both programs import: wire protocol, JSON-RPC framing, outcomes, paths, and the policy, DLP
and audit contracts.
"""
