"""MMS media: each `MediaUrlN` fetched from Twilio with the account's credentials (Twilio answers
with a redirect to its CDN, which is followed), size-capped, kept as an attachment.

Media go through the spool as an item of their own, behind the text (see `inbound`): the text is
stored at once, whatever happens to the media; a fetch that fails (Twilio down, a timeout, a 5xx)
raises `MediaUnavailable`, and the spool worker tries that item again later. Credentials are
sent only to the account's own media URLs on the configured API base URL.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass

import requests

from hub.adapters.base import FetchLater
from hub.model import DroppedAttachment, InboundAttachment

TWILIO_API = "https://api.twilio.com"
CONNECT_SECONDS = 5.0
READ_SECONDS = 20.0
CHUNK = 64 * 1024


class MediaUnavailable(FetchLater):
    """A media file could not be fetched now; the spool item is worth another try."""


@dataclass(frozen=True, slots=True)
class Fetched:
    attachments: tuple[InboundAttachment, ...] = ()
    dropped: tuple[DroppedAttachment, ...] = ()
    skipped: tuple[str, ...] = ()  # URLs not fetched: not the account's, or gone (404)


@dataclass(frozen=True, slots=True)
class MediaFetcher:
    """Plain data (it travels to a parse process with the spool parser)."""

    account_sid: str
    auth_token: str
    api_base_url: str = ""
    max_bytes: int = 5 * 1024 * 1024

    @property
    def prefix(self) -> str:
        base = (self.api_base_url or TWILIO_API).rstrip("/")
        return f"{base}/2010-04-01/Accounts/{self.account_sid}/Messages/"

    def fetch_all(self, media: Sequence[dict[str, str]]) -> Fetched:
        attachments: list[InboundAttachment] = []
        dropped: list[DroppedAttachment] = []
        skipped: list[str] = []
        with requests.Session() as session:
            for index, item in enumerate(media):
                url = item.get("url", "")
                if not url.startswith(self.prefix):
                    skipped.append(url[:300])
                    continue
                got = self._fetch(session, url, item.get("content_type", ""))
                if got is None:
                    skipped.append(url[:300])
                    continue
                data, content_type, size = got
                filename = f"mms-{index + 1}{_extension(content_type)}"
                if data is None:
                    dropped.append(DroppedAttachment(filename, size, content_type,
                                                     "attachment_too_large"))
                else:
                    attachments.append(InboundAttachment(filename, content_type, data))
        return Fetched(tuple(attachments), tuple(dropped), tuple(skipped))

    def _fetch(self, session: requests.Session, url: str,
               given_type: str) -> tuple[bytes | None, str, int] | None:
        """(data or None when over the cap, content type, size); None when gone for good."""
        try:
            with session.get(url, auth=(self.account_sid, self.auth_token), stream=True,
                             timeout=(CONNECT_SECONDS, READ_SECONDS),
                             allow_redirects=True) as response:
                if response.status_code in (404, 410):
                    return None
                if response.status_code >= 400:
                    raise MediaUnavailable(f"HTTP {response.status_code}")
                content_type = (response.headers.get("Content-Type") or given_type
                                or "application/octet-stream").split(";")[0].strip().lower()
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_content(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        length = response.headers.get("Content-Length", "")
                        return None, content_type, int(length) if length.isdigit() else size
                    chunks.append(chunk)
                return b"".join(chunks), content_type, size
        except requests.RequestException as exc:
            raise MediaUnavailable(type(exc).__name__) from None


def _extension(content_type: str) -> str:
    known = {"image/jpeg": ".jpg", "audio/mpeg": ".mp3", "text/vcard": ".vcf"}
    return known.get(content_type) or mimetypes.guess_extension(content_type) or ".bin"
