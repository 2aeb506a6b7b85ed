"""Open SMTP sessions to the relay, reused from one send to the next.

A new session costs a TCP handshake, the greeting, EHLO and maybe STARTTLS and AUTH: several
milliseconds per mail when the mail itself takes one or two. So a sender borrows a session
that is already open (or opens one), runs its MAIL/RCPT/DATA, and gives it back after an RSET
when the relay refused something, leaving it clean for the next mail. A session that failed on
the wire is closed, never given back. A session is retired after `max_sends` mails or
`max_idle_seconds` unused (relays limit both), and everything idle is closed on `close()`.

Thread-safe: sends run in worker threads (smtplib blocks), each with a session of its own.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
QUIT_SECONDS = 2.0  # how long a closing session waits for the relay to answer QUIT


@dataclass(eq=False)
class Session:
    """One open SMTP session and what the pool knows of it."""

    client: smtplib.SMTP
    sends: int = 0
    idle_since: float = field(default_factory=time.monotonic)
    reused: bool = False  # opened for an earlier mail: the relay may have closed it since


class RelayConnections:
    """A small pool of open sessions to one relay (host, port, TLS and login from config)."""

    def __init__(self, config: Any, *, max_idle: int = 16, max_sends: int = 100,
                 max_idle_seconds: float = 30.0) -> None:
        self.config = config
        self.max_idle = max_idle
        self.max_sends = max_sends
        self.max_idle_seconds = max_idle_seconds
        self.opened = 0  # sessions opened since start (a figure for tests and benches)
        self._idle: list[Session] = []
        self._lock = threading.Lock()

    def acquire(self) -> Session:
        """A session of our own: the most recently used idle one, else a new one."""
        fresh: Session | None = None
        stale: list[Session] = []
        with self._lock:
            while self._idle and fresh is None:
                session = self._idle.pop()
                if time.monotonic() - session.idle_since < self.max_idle_seconds:
                    fresh = session
                else:
                    stale.append(session)
        for session in stale:  # idle too long: the relay has likely dropped it already
            self.discard(session)
        if fresh is None:
            return self.open()
        fresh.reused = True
        return fresh

    def open(self) -> Session:
        cfg = self.config
        client = smtplib.SMTP(cfg.relay_host, cfg.relay_port, timeout=cfg.relay_timeout_seconds)
        try:
            client.ehlo()
            if cfg.relay_starttls:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if cfg.relay_username:
                client.login(cfg.relay_username, cfg.relay_password.get_secret_value())
        except BaseException:
            client.close()
            raise
        with self._lock:
            self.opened += 1
        return Session(client)

    def release(self, session: Session) -> None:
        """Back to the pool after a completed (or cleanly refused) transaction."""
        session.sends += 1
        session.idle_since = time.monotonic()
        with self._lock:
            if session.sends < self.max_sends and len(self._idle) < self.max_idle:
                self._idle.append(session)
                return
        self._retire(session)

    def release_after_refusal(self, session: Session) -> None:
        """The relay refused this mail but the session is fine: RSET it (the transaction may be
        half open, e.g. after a refused RCPT) and give it back, or close it if RSET fails."""
        try:
            code, _ = session.client.rset()
        except (smtplib.SMTPException, OSError):
            self.discard(session)
            return
        if code == 250:
            self.release(session)
        else:
            self.discard(session)

    def discard(self, session: Session) -> None:
        """A session whose state is unknown (a wire error, a timeout, 421): closed at once."""
        session.client.close()

    def close(self) -> None:
        """QUIT every idle session (on shutdown; sessions in use are closed by their sender)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for session in idle:
            self._retire(session)

    def _retire(self, session: Session) -> None:
        try:
            # A courtesy to the relay: a stopping hub or worker waits for its answer this long,
            # not the whole session's time-out.
            if session.client.sock is not None:
                session.client.sock.settimeout(QUIT_SECONDS)
            session.client.quit()
        except (smtplib.SMTPException, OSError):
            session.client.close()
