// Live updates for the workspace: listens to /staff/events (the caller's queues). On a
// conversation page it reloads the timeline when something happens to that conversation, so a
// reply's delivery status moves on without a reload; on the first page of a list it reloads the
// list and the sidebar's counts (unless the focus is inside the list: then it only says so).
// Reconnects with back-off and catches up once connected again. Also: Ctrl+Enter sends the form
// being typed in. Presence news (staff.* and citizen.typing events) goes to collision.js as a
// `hub:presence` DOM event; `hub:ready` says the socket is (again) live.

const main = document.getElementById("main");
const conversationId = main ? Number(main.dataset.conversation || 0) : 0;
const timelineUrl = main ? main.dataset.timelineUrl : undefined;
const status = document.getElementById("live-status");
let delay = 1000;
let current = null;  // the open socket, for what the page says (see "hub:send")
let refreshing = null;
let again = false;

async function fetchTimeline() {
  const response = await fetch(timelineUrl, { credentials: "same-origin", headers: { Accept: "text/html" } });
  if (!response.ok) return;
  const target = document.getElementById("timeline");
  if (target) target.innerHTML = await response.text();  // server-rendered and escaped
}

// One reload at a time; news during a reload means one more after it (that one may have read
// the database before the change the news is about).
function refreshTimeline() {
  if (!timelineUrl) return Promise.resolve();
  if (refreshing) {
    again = true;
    return refreshing;
  }
  refreshing = (async () => {
    try {
      do {
        again = false;
        await fetchTimeline();
      } while (again);
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

let listTimer = null;

async function refreshList() {
  const listing = document.getElementById("listing");
  if (!listing || !("liveList" in listing.dataset)) return;
  if (listing.contains(document.activeElement) || listing.querySelector("input:checked")) {
    announce(status?.dataset.newActivity || "New activity in your queues: reload the page to see it.");
    return;
  }
  const response = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const id of ["listing", "sidebar"]) {
    const now = document.getElementById(id);
    const next = fresh.getElementById(id);
    if (now && next && !now.contains(document.activeElement)) now.replaceChildren(...next.childNodes);
  }
}

function listChanged() {
  clearTimeout(listTimer);
  listTimer = setTimeout(refreshList, 300);  // a burst of events: one reload
}

function announce(text) {
  if (status) status.textContent = text;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/staff/events`);
  let opened = false;
  socket.addEventListener("message", (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    if (event.kind === "ready") {
      if (opened) return;
      opened = true;
      delay = 1000;
      current = socket;
      document.documentElement.dataset.live = "ready";
      document.dispatchEvent(new CustomEvent("hub:ready"));
      refreshTimeline();  // whatever happened while we were away
      listChanged();
      return;
    }
    // Who is viewing or typing (collision.js): news about people, not about the records.
    if (event.kind.startsWith("staff.") || event.kind === "citizen.typing") {
      document.dispatchEvent(new CustomEvent("hub:presence", { detail: event }));
      return;
    }
    listChanged();
    if (conversationId && event.conversation_id === conversationId) {
      refreshTimeline().then(() => {
        if (event.kind === "delivery.status") {
          const text = status?.dataset.replyStatus || "Reply status: {status}";
          let words = {};  // the status words in the page's language (layout.html)
          try { words = JSON.parse(status?.dataset.deliveryWords || "{}"); } catch { /* none */ }
          announce(text.replace("{status}", words[event.status] || event.status || "updated"));
        }
      });
    }
  });
  socket.addEventListener("close", () => {
    if (current === socket) current = null;
    document.documentElement.dataset.live = "closed";
    setTimeout(connect, delay);
    delay = Math.min(delay * 2, 30000);
  });
}

function sendOnCtrlEnter() {
  for (const area of document.querySelectorAll("form.compose textarea")) {
    area.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        area.form.requestSubmit();
      }
    });
  }
}

// Other modules (collision.js) talk on the same socket: `hub:send` with the frame as detail.
document.addEventListener("hub:send", (event) => {
  if (current && current.readyState === WebSocket.OPEN) current.send(JSON.stringify(event.detail));
});

sendOnCtrlEnter();
if (main && "WebSocket" in window) connect();
