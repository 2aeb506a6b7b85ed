// Collision presence on a conversation page: says on the events socket (live.js, "hub:send")
// that this staff member views the conversation and when they type in the reply or the note,
// and shows who else views or types there, and whether the citizen is typing in a web chat
// ("hub:presence" events). The line is a polite live region that changes only when the
// set of people changes; typing expires after a few seconds without news, viewing after a
// minute without the heartbeat every open page sends.

const main = document.getElementById("main");
const line = document.getElementById("collision");
const conversationId = Number(main?.dataset.conversation || 0);
const me = Number(main?.dataset.me || 0);
const TYPING_MS = 6000;
const TYPING_REPEAT_MS = 3000;
const HEARTBEAT_MS = 20000;
const VIEWING_MS = 50000;
const viewers = new Map();  // staff id -> { name, until }
const typists = new Map();  // staff id -> { name, until }
let citizenUntil = 0;
let typingSentAt = 0;
let typingStop = null;

// `reply`: typing in the reply to the citizen (a web chat visitor sees "is typing"); false for
// the internal note, which only colleagues hear of.
function send(kind, on, reply = false) {
  const detail = { kind, conversation_id: conversationId, on, reply };
  document.dispatchEvent(new CustomEvent("hub:send", { detail }));
}

// The texts come translated from the page: data-viewing="{names} is viewing" and so on.
function say(key, names) {
  const template = line.dataset[names.length > 1 ? `${key}Many` : key] || "";
  return template.replace("{names}", names.join(", "));
}

function render() {
  const now = Date.now();
  for (const people of [viewers, typists]) {
    for (const [id, person] of people) if (person.until < now) people.delete(id);
  }
  const typing = [...typists.values()].map((p) => p.name);
  const viewing = [...viewers].filter(([id]) => !typists.has(id)).map(([, p]) => p.name);
  const parts = [];
  if (typing.length) parts.push(say("typing", typing));
  if (viewing.length) parts.push(say("viewing", viewing));
  if (citizenUntil > now) parts.push(line.dataset.citizen);
  const text = parts.join(" · ");
  if (line.textContent !== text) line.textContent = text;
}

function heard(event) {
  if (event.conversation_id !== conversationId) return;
  if (event.kind === "citizen.typing") {
    citizenUntil = event.on ? Date.now() + TYPING_MS : 0;
  } else if (event.staff_id !== me && typeof event.name === "string") {
    const people = event.kind === "staff.typing" ? typists : viewers;
    const fresh = event.kind === "staff.viewing" && event.on && !viewers.has(event.staff_id);
    if (event.on) {
      people.set(event.staff_id, { name: event.name, until: Date.now() + (people === typists ? TYPING_MS : VIEWING_MS) });
    } else {
      people.delete(event.staff_id);
      if (people === viewers) typists.delete(event.staff_id);
    }
    if (fresh) send("viewing", true);  // the newcomer learns of us too
  }
  render();
}

function typed(event) {
  const now = Date.now();
  if (now - typingSentAt > TYPING_REPEAT_MS) {
    typingSentAt = now;
    send("typing", true, event?.target?.id === "reply-body");
  }
  clearTimeout(typingStop);
  typingStop = setTimeout(stoppedTyping, TYPING_REPEAT_MS + 1000);
}

function stoppedTyping() {
  clearTimeout(typingStop);
  if (!typingSentAt) return;
  typingSentAt = 0;
  send("typing", false);
}

if (line && conversationId) {
  document.addEventListener("hub:presence", (event) => heard(event.detail));
  document.addEventListener("hub:ready", () => send("viewing", true));
  if (document.documentElement.dataset.live === "ready") send("viewing", true);
  setInterval(() => send("viewing", true), HEARTBEAT_MS);
  setInterval(render, 1000);
  for (const area of document.querySelectorAll("#reply-body, #note-body")) {
    area.addEventListener("input", typed);
    area.addEventListener("blur", stoppedTyping);
    area.form?.addEventListener("submit", stoppedTyping);
  }
}
