"""The web chat channel: the server side of the chat widget (`/chat/ws` and `/chat/api/*`).

The citizen's browser is the provider here: the hub serves the widget (hub.web.citizen, the
`/chat` page and `/chat/widget.js`) and this package speaks the chat protocol with it.

Modules: `protocol` (frames in and out, the version, error codes; its docstring is the
protocol's reference), `visitors` (signed visitor tokens), `limits` (rate and connection
limits), `presence` (which visitors are connected, for the reply channel), `normalize` (a
`message` frame -> InboundMessage), `history` (the visitor's conversation as frames, read from
the database), `live` (this process's connections and the events pushed to them), `session`
(what a hello, a message, a typing or a seen does, for both transports), `inbound` (the
adapter and its WebSocket), `fallback` (the HTTP fallback) and `outbound` (staff replies onto
the event bus). Importing the package imports no provider library.
"""
