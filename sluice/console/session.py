"""Sign-in, sessions and CSRF tokens: the console's rules, kept apart from HTTP so they can be tested alone.

Sessions live in the memory of the one process that serves the admin listener: signing out (or a
restart) ends them for good, and nothing about them is ever written to disk. A one-time sign-in link
(`sluice console`) is good for one use within `link_seconds`.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

COOKIE = "sluice_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = b"x-csrf-token"


@dataclass
class Session:
    id: str
    csrf: str  # the synchronizer token every change must carry (a form field or the X-CSRF-Token header)
    expires_at: float


class SessionStore:
    def __init__(self, admin_token: str, session_seconds: float = 12 * 3600, link_seconds: float = 300,
                 clock: object = time.monotonic) -> None:
        self._token = admin_token.encode()
        self.session_seconds = session_seconds
        self.link_seconds = link_seconds
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._links: dict[str, float] = {}  # one-time code -> expiry
        self._lock = threading.Lock()

    def _now(self) -> float:
        return self._clock()  # type: ignore[operator, no-any-return]

    def _new_session(self) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), self._now() + self.session_seconds)
        with self._lock:
            self._sessions[session.id] = session
        return session

    def sign_in(self, token: str) -> Session | None:
        """A new session for the admin token; None for anything else (a write key never opens the console)."""
        given = token.strip().encode()
        if not given or not hmac.compare_digest(given, self._token):
            return None
        return self._new_session()

    def new_link_code(self) -> str:
        code = secrets.token_urlsafe(32)
        with self._lock:
            now = self._now()
            self._links = {c: t for c, t in self._links.items() if t > now}  # forget expired codes
            self._links[code] = now + self.link_seconds
        return code

    def sign_in_with_link(self, code: str) -> Session | None:
        """A session for a code `new_link_code` made, used once, before it expires."""
        with self._lock:
            expires = self._links.pop(code, None)
        if expires is None or expires <= self._now():
            return None
        return self._new_session()

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires_at <= self._now():
                del self._sessions[session_id]
                return None
        return session

    def sign_out(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)


def csrf_ok(session: Session, submitted: str | None) -> bool:
    """The CSRF rule: a change is allowed only with this session's token."""
    return bool(submitted) and hmac.compare_digest(submitted.encode(), session.csrf.encode())  # type: ignore[union-attr]


def same_origin(headers: dict[bytes, bytes], scheme: str) -> bool:
    """A change must not come from another site: when the browser says where the request comes from (Origin,
    Sec-Fetch-Site), it must be this host. Browsers send Origin on every POST; tools such as curl send none."""
    site = headers.get(b"sec-fetch-site")
    if site is not None and site not in (b"same-origin", b"none"):
        return False
    origin = headers.get(b"origin")
    if origin is None:
        return True
    host = headers.get(b"host", b"")
    return origin == f"{scheme}://".encode() + host
