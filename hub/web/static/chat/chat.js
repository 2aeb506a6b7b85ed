// The chat page's behaviour (/chat and, in the widget's frame, /chat?embed=1). Without this
// script the page is a plain leave-a-message form. With it: connect (transport.js), then show
// the conversation (history, live staff replies, "has joined", typing, each message's status),
// the pre-chat (name, email or phone, topic) when someone can chat, or the leave-a-message form
// when nobody can. Everything the citizen or staff wrote is put in the page as text, never HTML.
import * as store from "./store.js";
import { Connection } from "./transport.js";

const $ = (id) => document.getElementById(id);
const root = $("chat");
const texts = JSON.parse($("chat-texts").textContent);
const lang = root.dataset.lang;
const embed = root.dataset.embed === "1";
// The embedding site's origin, as the hub checked it (hub/web/citizen/chat.py): the only
// window this frame tells its unread count, and the only one it takes "open"/"closed" from.
const parentOrigin = embed && window.parent !== window ? root.dataset.parent || "" : "";
const el = {
  alert: $("chat-alert"), state: $("chat-state"), prechat: $("prechat"),
  prechatForm: $("prechat-form"), conversation: $("conversation"), log: $("chat-messages"),
  typing: $("chat-typing"), composer: $("composer"), message: $("c-message"), file: $("c-file"),
  reference: $("chat-reference"), away: $("chat-away"), leave: $("leave"),
  leaveForm: $("leave-form"), leaveWhy: $("leave-why"), leaveElsewhere: $("leave-elsewhere"),
  left: $("left"),
  leftReference: $("left-reference"),
};
const VIEWS = ["prechat", "conversation", "leave", "left"];
const state = {
  view: null, profile: null, profileAcked: false, online: true, open: true,
  conversation: null, loaded: false, leaving: null, limits: {},
  shown: new Map(), // server message id -> its list item
  pending: new Map(), // client id -> the list item of a message not yet acknowledged
};

const hadBefore = store.after.get(); // the newest message id this browser had already
const say = (text, values = {}) => text.replace(/\{(\w+)\}/g, (_, key) => values[key] ?? "");

function show(view) {
  state.view = view;
  for (const name of VIEWS) el[name].hidden = name !== view;
}

function alertText(text) {
  el.alert.textContent = text || "";
}

// ----- the log -------------------------------------------------------------------------------

function when(iso) {
  const moment = iso ? new Date(iso) : new Date();
  if (Number.isNaN(moment.getTime())) return "";
  return moment.toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
}

function entry(kind, who, body, meta) {
  const li = document.createElement("li");
  li.className = kind;
  const head = document.createElement("p");
  head.className = "head";
  const name = document.createElement("span");
  name.className = "who";
  name.textContent = who;
  const info = document.createElement("span");
  info.className = "meta";
  info.textContent = meta;
  head.append(name, info);
  li.append(head);
  if (body) {
    const text = document.createElement("p");
    text.className = "body";
    text.textContent = body;
    li.append(text);
  }
  el.log.append(li);
  li.scrollIntoView({ block: "nearest" });
  return li;
}

function setMeta(li, iso, status) {
  li.querySelector(".meta").textContent = [when(iso), status].filter(Boolean).join(" · ");
  li.dataset.status = status || "";
}

function addFiles(li, attachments) {
  for (const file of attachments || []) {
    const url = sameOrigin(file.url);
    const p = document.createElement("p");
    p.className = "file";
    if (url) {
      const a = document.createElement("a");
      a.href = url;
      a.textContent = file.filename || texts.attachment;
      p.append(a);
    } else {
      p.textContent = file.filename || texts.attachment;
    }
    li.append(p);
  }
}

function sameOrigin(value) { // a link to the hub's own files, never a javascript: or elsewhere
  try {
    const url = new URL(String(value || ""), location.href);
    return value && url.origin === location.origin ? url.href : null;
  } catch {
    return null;
  }
}

function showMessage(m) {
  if (!m) return;
  // Only a message this browser had not had when the page loaded is reported seen: a long
  // history brings no burst of `seen` frames (the server drops those past its frame budget).
  const fresh = Number.isInteger(m.id) && m.id > hadBefore;
  store.after.seen(m.id); // also for one shown already: the long-poll starts after it
  if (state.shown.has(m.id)) return;
  const mine = m.direction === "inbound";
  const waiting = mine && m.client_id ? state.pending.get(m.client_id) : null;
  if (waiting) { // our own message, stored: it was only waiting for its ack
    acknowledged(m.client_id, m.id, m.created_at);
    return;
  }
  const li = entry(mine ? "mine" : "theirs", mine ? texts.you : m.author || texts.staff, m.body,
                   "");
  setMeta(li, m.created_at, mine ? texts.sent : "");
  addFiles(li, m.attachments);
  state.shown.set(m.id, li);
  if (mine && m.client_id) store.outbox.drop(m.client_id);
  if (!mine && fresh) {
    conn.send({ v: 1, type: "seen", id: m.id });
    unseen();
  }
}

// ----- the widget's launcher: replies that arrive while it is closed -------------------------

const widget = { open: true, unread: 0 }; // the frame is made when the widget opens

function tellParent(message) {
  if (parentOrigin) window.parent.postMessage(message, parentOrigin);
}

function unseen() {
  if (widget.open || !parentOrigin) return;
  widget.unread += 1;
  tellParent({ type: "hub-chat:unread", count: widget.unread });
}

window.addEventListener("message", (event) => {
  if (!parentOrigin || event.origin !== parentOrigin || event.source !== window.parent) return;
  if (event.data?.type !== "hub-chat:state") return;
  widget.open = event.data.open === true;
  if (widget.open) widget.unread = 0;
});

function showPending(item) {
  if (state.pending.has(item.client_id)) return;
  const li = entry("mine", texts.you, item.body, "");
  if (item.filename) addFiles(li, [{ filename: item.filename }]);
  setMeta(li, null, texts.sending);
  state.pending.set(item.client_id, li);
}

function acknowledged(clientId, id, createdAt) {
  store.outbox.drop(clientId);
  const li = state.pending.get(clientId);
  if (!li) return;
  state.pending.delete(clientId);
  setMeta(li, createdAt, texts.sent);
  if (Number.isInteger(id)) state.shown.set(id, li);
}

function setConversation(conversation) {
  if (!conversation) return;
  state.conversation = conversation;
  el.reference.textContent = say(texts.reference, { reference: conversation.reference });
  el.reference.hidden = false;
}

// ----- sending -------------------------------------------------------------------------------

function frameOf(item) {
  const frame = { v: 1, type: "message", client_id: item.client_id, body: item.body };
  if (item.profile && (!state.profileAcked || item.profile.leave_message)) {
    frame.profile = item.profile;
  }
  return frame;
}

function send(body, profile) {
  const item = { client_id: store.newClientId(), body, profile: profile || undefined };
  store.outbox.put(item);
  showPending(item);
  conn.send(frameOf(item));
  return item.client_id;
}

// A message over the server's cap: the server would refuse it (or, far over, close the
// socket, and a resend on every reconnect would close it again).
const tooLong = (body) => Number.isInteger(state.limits.max_body) &&
  [...body].length > state.limits.max_body;

function flush() {
  for (const item of store.outbox.all()) {
    if (tooLong(String(item.body || ""))) { // from an older page: refused, not resent
      store.outbox.drop(item.client_id);
      continue;
    }
    showPending(item);
    conn.send(frameOf(item));
  }
}

async function sendFile(body, file) {
  const clientId = store.newClientId();
  showPending({ client_id: clientId, body, filename: file.name });
  const form = new FormData();
  form.append("client_id", clientId);
  if (body) form.append("body", body);
  form.append("file", file, file.name);
  try {
    onFrame(await conn.upload(form));
  } catch {
    failed(clientId, texts.file_failed);
  }
}

function failed(clientId, message) {
  store.outbox.drop(clientId);
  const li = state.pending.get(clientId);
  state.pending.delete(clientId);
  if (li) setMeta(li, null, message);
  alertText(message);
}

let typingOn = false;
let typingTimer = null;

function typing(on) {
  clearTimeout(typingTimer);
  if (on) typingTimer = setTimeout(() => typing(false), 4000);
  if (on !== typingOn && conn.send({ v: 1, type: "typing", on })) typingOn = on;
}

// ----- server frames -------------------------------------------------------------------------

function onWelcome(w) {
  store.token.set(w.token);
  state.online = w.online !== false;
  state.open = w.open !== false;
  state.loaded = true;
  state.limits = w.limits || {};
  if (w.conversation) {
    setConversation(w.conversation);
    state.profileAcked = true;
  }
  for (const m of w.messages || []) showMessage(m);
  flush();
  choose();
}

function choose() {
  const available = state.online && state.open;
  el.away.hidden = available;
  el.away.textContent = state.open ? texts.nobody : texts.closed_hours;
  if (state.view === "left" || (state.view === "leave" && (state.leaving || typedLeave()))) {
    return; // never take away a form the citizen has started
  }
  if (state.view === "conversation" || state.shown.size || state.pending.size) {
    if (state.view !== "conversation") enter("conversation");
  } else if (available) {
    if (state.view !== "prechat") enter("prechat");
  } else {
    el.leaveWhy.textContent = state.open ? texts.nobody : texts.closed_hours;
    el.leaveWhy.hidden = false;
    if (state.view !== "leave") enter("leave");
  }
}

function typedLeave() {
  return ["name", "email", "phone", "message"].some((name) => value(el.leaveForm, name) !== "");
}

function enter(view) {
  const before = state.view;
  show(view);
  // In the widget's frame (opened by the citizen) the first field takes the focus; on the full
  // page only a change the citizen made (not the first load) moves it.
  if ((embed && before === null) || before === "prechat") firstField(view)?.focus();
}

function firstField(view) {
  if (view === "conversation") return el.message;
  return el[view]?.querySelector("input:not([type=hidden]):not([tabindex='-1']), textarea");
}

function onError(e) {
  alertText(e.message || texts.error);
  if (!e.client_id) return;
  if (e.code === "rate_limited" || e.code === "unavailable") {
    setTimeout(flush, Math.max(1, Number(e.retry_after) || 5) * 1000);
  } else {
    failed(e.client_id, e.message || texts.error);
  }
  if (e.client_id === state.leaving) {
    state.leaving = null;
    el.leaveForm.querySelector("button[type=submit]").disabled = false;
  }
}

function onFrame(frame) {
  switch (frame.type) {
    case "welcome": onWelcome(frame); break;
    case "ack":
      setConversation(frame.conversation);
      if (frame.conversation) state.profileAcked = true;
      acknowledged(frame.client_id, frame.id, frame.created_at);
      if (frame.client_id === state.leaving) finishLeave(frame.conversation);
      break;
    case "message": showMessage(frame); el.typing.textContent = ""; break;
    case "typing":
      el.typing.textContent = frame.on ? say(texts.typing, { author: frame.author || texts.staff }) : "";
      break;
    case "joined": {
      const li = entry("notice", "", say(texts.joined, { author: frame.author || texts.staff }), "");
      li.querySelector(".head").remove();
      break;
    }
    case "status":
      state.online = frame.online !== false;
      state.open = frame.open !== false;
      setConversation(frame.conversation);
      choose();
      break;
    case "error": onError(frame); break;
    default: break; // pong, and kinds a later server adds
  }
}

function onState(kind) {
  el.state.textContent = { connecting: texts.connecting, lost: texts.reconnecting,
                           offline: texts.offline, open: "" }[kind] ?? "";
  if (kind === "open") alertText("");
  // Nobody waits at a spinner: with no connection yet, the plain form (it posts without us).
  if ((kind === "lost" || kind === "offline") && !state.loaded && state.view === null) show("leave");
}

const conn = new Connection({
  token: () => store.token.get(),
  after: () => store.after.get(),
  hello: () => {
    const hello = { v: 1, type: "hello", language: lang };
    const token = store.token.get();
    if (token) hello.token = token;
    // A fresh page asks for the whole history; a reconnect only for what it missed.
    if (state.loaded) hello.after = store.after.get();
    return hello;
  },
  onFrame, onState,
});

// ----- the citizen's actions -----------------------------------------------------------------

function value(form, name) {
  return (form.elements[name]?.value || "").trim();
}

function profileOf(form, extra) {
  const profile = { consent: true, ...extra };
  for (const name of ["name", "email", "phone", "topic"]) {
    const v = value(form, name);
    if (v) profile[name] = v;
  }
  return profile;
}

el.prechatForm.addEventListener("submit", (event) => {
  event.preventDefault();
  state.profile = profileOf(el.prechatForm, {});
  enter("conversation");
  el.message.focus();
});

el.message.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    el.composer.requestSubmit();
  }
});
el.message.addEventListener("input", () => typing(el.message.value.trim() !== ""));

el.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const body = el.message.value.trim();
  const file = el.file.files[0];
  if (!body && !file) {
    alertText(texts.need_message);
    el.message.focus();
    return;
  }
  if (tooLong(body)) { // kept in the box to shorten; never sent (nor kept in the outbox)
    alertText(say(texts.too_long, { max: state.limits.max_body }));
    el.message.focus();
    return;
  }
  if (file && file.size > (state.limits.max_file_bytes || Infinity)) {
    alertText(texts.file_failed); // refused anyway: not worth the upload
    el.file.focus();
    return;
  }
  alertText("");
  typing(false);
  if (file) sendFile(body, file);
  else send(body, state.profileAcked ? null : state.profile);
  el.message.value = "";
  el.file.value = "";
  el.message.focus(); // the citizen goes on writing
});

el.leaveForm.addEventListener("submit", (event) => {
  if (!conn.ready && !embed) return; // not connected: the form posts as without JavaScript
  event.preventDefault();
  if (!conn.ready) { // in a site's frame the form's cookie is not sent: a window of our own
    el.leaveElsewhere.hidden = false;
    el.leaveElsewhere.querySelector("a").focus();
    return;
  }
  const form = el.leaveForm;
  const missing = !value(form, "email") && !value(form, "phone") ? ["l-email", texts.need_contact]
    : !value(form, "message") ? ["l-message", texts.need_message] : null;
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  const tooBig = !missing && tooLong(value(form, "message"))
    ? ["l-message", say(texts.too_long, { max: state.limits.max_body })] : null;
  if (missing || tooBig) {
    const [field, text] = missing || tooBig;
    alertText(text);
    $(field).setAttribute("aria-invalid", "true");
    $(field).focus();
    return;
  }
  alertText("");
  form.querySelector("button[type=submit]").disabled = true;
  state.leaving = send(value(form, "message"), profileOf(form, { leave_message: true }));
});

function finishLeave(conversation) {
  state.leaving = null;
  el.leftReference.textContent = "";
  if (conversation?.reference) {
    el.leftReference.append(say(texts.left_reference, { reference: conversation.reference }), " ");
    const a = document.createElement("a");
    a.href = `/track/${encodeURIComponent(conversation.reference)}`;
    a.textContent = texts.track;
    el.leftReference.append(a);
  }
  show("left");
  el.left.focus();
}

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && embed && window.parent !== window) {
    // the widget closes the frame (nothing but that is said, so any parent may hear it)
    window.parent.postMessage({ type: "hub-chat:close" }, parentOrigin || "*");
  }
});
// The widget focuses the frame when it opens: then the view's first field takes the focus. Not
// when a click brought the focus in (moving it would scroll away what was clicked).
let pointedAt = 0;
document.addEventListener("pointerdown", () => { pointedAt = Date.now(); }, true);
window.addEventListener("focus", () => {
  if (!embed || Date.now() - pointedAt < 1000) return;
  if (document.activeElement === document.body) firstField(state.view)?.focus();
});

show(null);
conn.connect();
