"""What a server sees from inside the proxy's sandbox, then the server itself.

``peek.py REPORT OPS -- SERVER...`` tries each operation of the JSON file OPS (a list of
``["read"|"write"|"rename", path]``; in a file, so the server's command line names none of
the protected paths), writes a JSON report (per path: the text read or the errno name; "ok"
or the errno name for a write or rename; plus pid, uid, cwd, environment and the pids in
/proc), then execs SERVER, so the proxy's first answered request proves the report is done.
"""

from __future__ import annotations

import errno
import json
import os
import sys


def _error(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc))


def main(argv: list[str]) -> None:
    report_path, ops_path = argv[0], argv[1]
    server = argv[argv.index("--") + 1 :]
    with open(ops_path, encoding="utf-8") as f:
        ops = json.load(f)
    report: dict[str, object] = {
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "uid": os.getuid(),
        "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    }
    for op, path in ops:
        key = f"{op} {path}"
        try:
            if op == "read":
                with open(path, encoding="utf-8", errors="replace") as f:
                    report[key] = f.read()
            elif op == "write":
                with open(path, "a", encoding="utf-8") as f:
                    f.write("planted by the server\n")
                report[key] = "ok"
            elif op == "rename":
                os.rename(path, path + ".moved")
                report[key] = "ok"
                os.rename(path + ".moved", path)
        except OSError as exc:
            report[key] = _error(exc)
    with open(report_path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(report, f)
    os.replace(report_path + ".tmp", report_path)
    os.execv(server[0], server)


if __name__ == "__main__":
    main(sys.argv[1:])
