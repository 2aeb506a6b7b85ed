// The chat's connection to the hub (protocol v1, see hub/adapters/webchat/protocol.py):
// a WebSocket to /chat/ws first; when the upgrade fails (a proxy that blocks WebSockets) the
// HTTP fallback: POST /chat/api/<kind> to send, GET /chat/api/events long-poll to receive, the
// token in the X-Chat-Token header (never in the URL). Lost connections come back with
// exponential back-off (and at once when the browser says it is online again); every
// (re)connect starts with the `hello` the caller builds.
const WS_FAILURES_BEFORE_HTTP = 2; // upgrade failures while online before falling back
const MAX_DELAY = 30_000;

export class Connection {
  constructor({ hello, onFrame, onState, token, after }) {
    this.hello = hello; // () => the hello frame for this (re)connect
    this.onFrame = onFrame; // (frame) => void, every server frame
    this.onState = onState; // ("connecting" | "open" | "lost" | "offline") => void
    this.token = token; // () => the visitor token or null
    this.after = after; // () => the last server message id seen (the long-poll's start)
    this.mode = window.WebSocket ? "ws" : "http";
    this.ws = null;
    this.ready = false; // welcome received on this connection
    this.failures = 0;
    this.wsFailures = 0;
    this.timer = null;
    this.generation = 0; // bumps on every (re)connect: stale sockets and polls are ignored
    window.addEventListener("online", () => this.connect());
    window.addEventListener("offline", () => this.drop("offline"));
  }

  connect() {
    clearTimeout(this.timer);
    this.close();
    const generation = ++this.generation;
    if (!navigator.onLine) {
      this.onState("offline");
      return;
    }
    this.onState("connecting");
    if (this.mode === "ws") this.openSocket(generation);
    else this.httpHello(generation);
  }

  close() {
    this.ready = false;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch { /* already closed */ }
    }
  }

  drop(state) {
    this.generation++;
    this.close();
    this.onState(state);
  }

  retry(generation) {
    if (generation !== this.generation) return;
    this.close();
    this.onState(navigator.onLine ? "lost" : "offline");
    const delay = Math.min(MAX_DELAY, 1000 * 2 ** Math.min(this.failures, 5));
    this.failures += 1;
    this.timer = setTimeout(() => this.connect(), delay * (0.75 + Math.random() / 2));
  }

  welcomed() {
    this.ready = true;
    this.failures = 0;
    this.onState("open");
  }

  openSocket(generation) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let welcomed = false;
    const ws = new WebSocket(`${scheme}//${location.host}/chat/ws`);
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify(this.hello()));
    ws.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      if (generation !== this.generation) return;
      if (frame.type === "welcome") {
        welcomed = true;
        this.wsFailures = 0;
        this.welcomed();
      }
      this.onFrame(frame);
    };
    ws.onclose = () => {
      // Refused, or cut before the welcome, while the network works: a proxy that blocks
      // WebSockets (some accept the upgrade and drop it). Then the HTTP fallback.
      if (!welcomed && navigator.onLine && ++this.wsFailures >= WS_FAILURES_BEFORE_HTTP) {
        this.mode = "http";
        this.failures = 0;
        if (generation === this.generation) { this.connect(); return; }
      }
      this.retry(generation);
    };
  }

  async request(path, { method = "POST", body, form } = {}) {
    const headers = {};
    const token = this.token();
    if (token) headers["X-Chat-Token"] = token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, credentials: "same-origin", cache: "no-store",
      body: form ?? (body === undefined ? undefined : JSON.stringify(body)),
    });
    let frame = null;
    try { frame = await response.json(); } catch { /* not JSON: a proxy's page */ }
    if (!frame || typeof frame.type !== "string") {
      throw new Error(`HTTP ${response.status}`);
    }
    return frame;
  }

  async httpHello(generation) {
    try {
      const welcome = await this.request("/chat/api/hello", { body: this.hello() });
      if (generation !== this.generation) return;
      if (welcome.type === "welcome") this.welcomed();
      this.onFrame(welcome);
      if (welcome.type === "welcome") this.poll(generation);
      else this.retry(generation);
    } catch {
      this.retry(generation);
    }
  }

  async poll(generation) {
    while (generation === this.generation) {
      try {
        const after = this.after();
        const batch = await this.request(`/chat/api/events?after=${after}`, { method: "GET" });
        if (generation !== this.generation) return;
        for (const frame of batch.events || []) this.onFrame(frame);
      } catch {
        this.retry(generation);
        return;
      }
    }
  }

  // Sends one frame; false when it cannot go now (the caller keeps it for the reconnect).
  send(frame) {
    if (!this.ready) return false;
    if (this.mode === "ws") {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    const generation = this.generation;
    const path = frame.type === "message" ? "/chat/api/messages" : `/chat/api/${frame.type}`;
    this.request(path, { body: frame })
      .then((answer) => { if (generation === this.generation) this.onFrame(answer); })
      .catch(() => { if (frame.type === "message") this.retry(generation); });
    return true;
  }

  // An attachment always goes over HTTP (multipart); its answer is an ack or an error frame.
  async upload(form) {
    return this.request("/chat/api/attachments", { form });
  }
}
