"""The email channel: SMTP intake on the hub's loop, MIME parsing, loop and bounce detection,
threaded replies through a relay.

Modules: `inbound` (SMTP server, `EmailAdapter`), `normalize` (bytes -> InboundMessage),
`body` (text decoding and reply stripping), `loops` (automatic mail), `status` (bounces/DSNs),
`outbound` (MIME building and relay delivery), `relay` (SMTP sessions to the relay, reused).
"""

from .inbound import EmailAdapter, SmtpHandler, SmtpServer
from .normalize import EmailLimits, parse_email
from .outbound import RelaySender, build_message

__all__ = ["EmailAdapter", "EmailLimits", "RelaySender", "SmtpHandler", "SmtpServer",
           "build_message", "parse_email"]
