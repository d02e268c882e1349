"""Policy hot reload (issue 6): watch the policy file (stat poll + SIGHUP) and swap in a new
policy only when it loads cleanly and passes the file-safety check; otherwise keep the old one
and say why. Every attempt becomes an ``event: policy_reload`` audit record. The file is read
through the folder opened at start (``PolicyPin``): a folder moved away and another put in its
place is refused, never loaded (issue 11).

A swap is one assignment of ``session.state`` (policy, a fresh RateLimiter, context), so a
relay thread sees old or new, never a mix; asks in flight keep the decision they already got.
"""

from __future__ import annotations

import os
import threading
import time

from aip.proxy.audit.recorder import Recorder, record_event
from aip.proxy.protection import Protection
from aip.proxy.relay import dlp_filter
from aip.proxy.relay.session import Session
from aip.shared import logs
from aip.shared.audit.record import Event, meta_record
from aip.shared.errors import PolicyError
from aip.shared.own_pid import own_pid
from aip.shared.policy.file import PolicyPin
from aip.shared.policy.load import load_policy
from aip.shared.policy.model import Policy
from aip.shared.policy.ratelimit import RateLimiter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

log = logs.get(__name__)

POLL_INTERVAL_S: Final = 1.0
# An editor that rewrites the file in place can be caught half-way: a change is acted on only
# once two stats this far apart agree (at most SETTLE_ROUNDS times, then it is tried anyway).
SETTLE_S: Final = 0.05
SETTLE_ROUNDS: Final = 20
MAX_DETAIL_CHARS: Final = 2000

StatKey = tuple[int, int, int] | None


def stat_key(path: str) -> StatKey:
    """What tells us the file changed: (st_mtime_ns, st_size, st_ino); None when missing.
    ``os.stat`` follows symlinks, so re-pointing a link to another file counts as a change."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class PolicyReloader:
    """Owns the ``policy-watch`` daemon thread of one proxy session."""

    def __init__(
        self,
        session: Session,
        recorder: Recorder,
        *,
        path: str,
        protection: Protection,
        poll_interval_s: float = POLL_INTERVAL_S,
        stderr_filtered: bool = False,
        pin: PolicyPin | None = None,
    ) -> None:
        """``poll_interval_s`` 0 turns polling off (SIGHUP still reloads). ``stderr_filtered``
        says whether the child's stderr runs through a DLP pump: that is fixed at start.
        ``pin``: the folder the policy was loaded through (else opened now)."""
        if pin is None:
            try:
                pin = PolicyPin(path)
            except PolicyError as exc:  # every reload is then refused, saying why
                log.warning("policy reloads will be refused: %s", exc)
        self._pin = pin
        self._session = session
        self._recorder = recorder
        self._path = path
        self._protection = protection  # builds the Context, swaps session.state
        self._interval_s = poll_interval_s
        self._stderr_filtered = stderr_filtered
        self._key = stat_key(path)
        self._wake = threading.Event()
        self._hup = False
        self._stopped = False
        self._lock = threading.Lock()  # one attempt at a time (a direct reload() vs the thread)

    def start(self) -> None:
        threading.Thread(target=self._run, name="policy-watch", daemon=True).start()

    def request(self) -> None:
        """Ask for a reload now (SIGHUP). Safe in a signal handler: it only sets an event."""
        self._hup = True
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    # ---- the watch thread ----

    def _run(self) -> None:
        timeout = self._interval_s if self._interval_s > 0 else None
        while not self._stopped:
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stopped:
                return
            try:
                if self._hup:
                    self._hup = False
                    self._key = stat_key(self._path)
                    self.reload("SIGHUP")
                elif self._changed():
                    self.reload("file changed")
            except Exception:  # thread boundary: the old policy stays, the watch goes on
                log.exception("policy reload failed; keeping the current policy")

    def _changed(self) -> bool:
        key = stat_key(self._path)
        if key == self._key:
            return False
        for _ in range(SETTLE_ROUNDS):
            time.sleep(SETTLE_S)  # debounce a write in progress, not test synchronisation
            again = stat_key(self._path)
            if again == key:
                break
            key = again
        self._key = key  # a refused file is tried again only when it changes again
        return True

    # ---- one attempt ----

    def reload(self, trigger: str) -> bool:
        """Load the file and swap it in if valid and safe; True when the policy changed."""
        with self._lock:
            return self._reload(trigger)

    def _reload(self, trigger: str) -> bool:
        old = self._session.policy
        try:
            # Owner and mode are checked on the descriptor that is then read, opened in the
            # folder kept open since start.
            if self._pin is None:
                raise PolicyError.single(self._path, "refused: the policy's folder is not open")
            new = load_policy(self._path, pin=self._pin, cache=True)
            dlp = dlp_filter.for_policy(new)  # compiled before the swap, off the relay threads
        except PolicyError as exc:
            log.warning(
                "policy reload (%s) refused; keeping policy %r (sha256 %s):\n%s",
                trigger,
                old.name,
                old.sha256[:12],
                exc,
            )
            self._record(old, None, f"refused ({trigger}): {exc}")
            return False
        except Exception as exc:  # e.g. a DLP pattern set that cannot be compiled
            log.exception("policy reload (%s) failed; keeping policy %r", trigger, old.name)
            self._record(old, None, f"refused ({trigger}): {type(exc).__name__}: {exc}")
            return False
        if new.sha256 == old.sha256 and new.name == old.name:
            log.info("policy reload (%s): %s unchanged", trigger, self._path)
            return False
        if new.dlp.filter_stderr != self._stderr_filtered:
            log.warning(
                "policy reload: dlp.filter_stderr changed to %s; the server's stderr handling "
                "is fixed at start and changes only when the proxy restarts",
                new.dlp.filter_stderr,
            )
        rec = self._recorder
        rec.redact = dlp.display_value
        rec.scan = dlp.display_scan
        rec.use_policy(new.name, new.sha256, new.mode.value)
        self._protection.install(new, RateLimiter())  # the swap: one reference assignment
        if self._session.asks is not None:
            self._session.asks.policy_changed(new.name, new.sha256)  # the approver's records
        log.info(
            "policy reloaded (%s): %r sha256 %s -> %r sha256 %s (%s mode)",
            trigger,
            old.name,
            old.sha256[:12],
            new.name,
            new.sha256[:12],
            new.mode.value,
        )
        self._record(new, old, f"reloaded ({trigger}) from {self._path}")
        return True

    def _record(self, policy: Policy, previous: Policy | None, detail: str) -> None:
        rec = self._recorder
        shown = rec.redact(detail)  # a refused file's text can echo its content: DLP first
        if not isinstance(shown, str):
            shown = "refused: the problem text could not be scanned for secrets"
        if len(shown) > MAX_DETAIL_CHARS:
            shown = shown[: MAX_DETAIL_CHARS - 3] + "..."
        record: dict[str, Any] = meta_record(
            Event.POLICY_RELOAD,
            policy=_ref(policy),
            previous_policy=_ref(previous) if previous is not None else None,
            session=rec.session,
            agent_id=rec.agent_id,
            server=rec.server,
            pid=own_pid(),
            detail=shown,
        )
        record_event(rec, record)


def _ref(policy: Policy) -> dict[str, str]:
    return {"name": policy.name, "sha256": policy.sha256}
