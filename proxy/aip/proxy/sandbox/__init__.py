"""The kernel layer of protected paths: the MCP server's tree runs where they do not exist.

``plan`` decides what to hide and freeze, ``bwrap`` (Linux) and ``seatbelt`` (macOS) render
it, ``launch`` applies the ``--sandbox`` mode. docs/security.md says what each layer holds.
"""
