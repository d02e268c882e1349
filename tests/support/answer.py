"""An ``exec:`` answer program for tests: reads the approver's JSON line, answers as told.

Behaviour: argv[1] if given, else the first line of the file named by $AIP_TEST_ANSWER_FILE
(re-read on every call, so a test can change it), else $AIP_TEST_ANSWER, else "deny".
  allow | deny  -> print it, exit 0          never   -> wait until killed or orphaned
  slow:SECONDS:WORD -> wait, then answer     garbage -> print junk, exit 0
  fail  -> exit 3 with no output             dump    -> print the request back (debug)
With $AIP_TEST_RECORD set, appends one JSON line per call: {pid, open, close, request}
("close" is written only when the program answered; a killed call has no close line).
Stdlib only: it runs with PATH=/usr/bin:/bin and no PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _behaviour() -> str:
    if len(sys.argv) > 1:
        return sys.argv[1]
    path = os.environ.get("AIP_TEST_ANSWER_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.readline().strip() or "deny"
        except OSError:
            return "deny"
    return os.environ.get("AIP_TEST_ANSWER", "deny")


def _record(event: str, request: object) -> None:
    path = os.environ.get("AIP_TEST_RECORD")
    if not path:
        return
    line = json.dumps({"pid": os.getpid(), "event": event, "t": time.time(), "request": request})
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


NEVER_CEILING_S = 300.0


def main() -> int:
    parent = os.getppid()  # the approver (through sh's exec), taken before anything can wait
    raw = sys.stdin.readline()
    try:
        request = json.loads(raw)
    except ValueError:
        request = {"unparsed": raw}
    _record("open", request)
    word = _behaviour()
    if word.startswith("slow:"):
        _, seconds, word = word.split(":", 2)
        time.sleep(float(seconds))
    if word == "never":
        # Until killed, or until the approver that started us is gone (a SIGKILLed approver
        # cannot kill its dialogs' groups; an orphaned "never" would outlive the test run).
        # Orphaned before this point (parent taken at start, so a kill between our start and
        # here is seen), our parent is already init: stop at once. A ceiling ends us anyway,
        # far beyond any test's (injected) deadline.
        give_up = time.monotonic() + NEVER_CEILING_S
        while os.getppid() == parent != 1 and time.monotonic() < give_up:
            time.sleep(0.2)
        return 1
    if word == "fail":
        _record("close", None)
        return 3
    out = {"garbage": "maybe?\n", "dump": json.dumps(request) + "\n"}.get(word, word + "\n")
    _record("close", None)
    sys.stdout.write(out)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
