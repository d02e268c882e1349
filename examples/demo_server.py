"""A small MCP server for the aip-approval demo (built with the official ``mcp`` package).

Tools: ``read_file``, ``write_file``, ``delete_file`` and ``postgres_query``. Everything lives
in memory (a few seeded files and a fake ``users`` table), so nothing the demo allows, asks or
blocks can touch the real machine. Run it behind the proxy:

    aip-proxy --policy examples/policies/demo.yaml -- python examples/demo_server.py
"""

from __future__ import annotations

import re

from mcp.server.mcpserver import MCPServer

server = MCPServer("aip-demo", instructions="A toy file system and database, all in memory.")

FILES: dict[str, str] = {
    "/tmp/aip-demo/notes.txt": "Buy milk.\n",  # noqa: S108 - a key in memory, not a file
    "/etc/config.yaml": "debug: false\n",
    "/home/user/.ssh/id_ed25519": "-----BEGIN OPENSSH PRIVATE KEY----- (fake)\n",
}
USERS: dict[int, str] = {1: "ada", 2: "grace", 3: "linus"}


@server.tool()
def read_file(path: str) -> str:
    """Read a file (in-memory demo file system)."""
    if path not in FILES:
        return f"no such file: {path} (demo files: {', '.join(sorted(FILES))})"
    return FILES[path]


@server.tool()
def write_file(path: str, content: str) -> str:
    """Write a file (in-memory demo file system)."""
    FILES[path] = content
    return f"wrote {len(content)} bytes to {path}"


@server.tool()
def delete_file(path: str) -> str:
    """Delete a file (in-memory demo file system)."""
    return f"deleted {path}" if FILES.pop(path, None) is not None else f"no such file: {path}"


@server.tool()
def postgres_query(query: str) -> str:
    """Run SQL against a fake in-memory ``users`` table (id, name)."""
    q = query.strip().rstrip(";")
    if re.fullmatch(r"(?is)select\b.*", q):
        rows = "\n".join(f"{uid} | {name}" for uid, name in sorted(USERS.items()))
        return f"id | name\n{rows}\n({len(USERS)} rows)"
    insert = re.fullmatch(r"(?is)insert\s+into\s+users\b.*'([^']*)'.*", q)
    if insert:
        uid = max(USERS, default=0) + 1
        USERS[uid] = insert.group(1)
        return f"INSERT 0 1 (id {uid})"
    if re.fullmatch(r"(?is)(update|delete|drop|alter|create|truncate)\b.*", q):
        return f"{q.split()[0].upper()} executed (fake, nothing changed)"
    return "ERROR: the demo database only understands SELECT, INSERT, UPDATE and DELETE"


if __name__ == "__main__":
    server.run("stdio")
