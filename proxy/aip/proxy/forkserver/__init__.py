"""The per-user fork server (issue 16, start-up): a pre-imported proxy that sessions fork from.

``launcher`` (light: runs before anything else in ``aip-proxy``), ``identity`` (what must be
equal for a server to be used), ``wire`` (the one socket format), ``spawn`` (starting the
server detached), ``server`` (the accept/fork/reap loop), ``session`` (a forked child taking
the launcher's inputs). docs/proxy.md "Fast start" says what a user sees.
"""
