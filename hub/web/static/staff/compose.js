// The reply box, enhanced (without this module the form works on its own: "Insert" goes
// through the server):
// - "Insert" fetches the canned response filled in for this conversation and puts it where
//   the cursor is, keeping what was typed;
// - a reply that starts with "/" filters the canned responses by name; Enter inserts the
//   first match in place of "/name";
// - the SMS counter follows the text and the chosen channel. The server counts
//   (POST /staff/sms-segments, the SMS channel's own rule): one source of truth.

const form = document.getElementById("reply-form");
const body = document.getElementById("reply-body");
const picker = document.getElementById("canned");
const insertButton = document.getElementById("canned-insert");
const match = document.getElementById("canned-match");
const counter = document.getElementById("sms-counter");
const csrf = form?.querySelector('input[name="csrf"]')?.value ?? "";

function insertAtCursor(text) {
  const start = body.selectionStart;
  const before = body.value.slice(0, start);
  const glue = before && !before.endsWith("\n") ? "\n" : "";
  body.setRangeText(glue + text, start, body.selectionEnd, "end");
  body.dispatchEvent(new Event("input", { bubbles: true }));
  body.focus();
}

async function insertCanned() {
  const url = picker.dataset.url + encodeURIComponent(picker.value);
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) {
    form.requestSubmit(insertButton);  // the server shows why
    return;
  }
  insertAtCursor((await response.json()).text);
}

function slashQuery() {
  const found = /^\/([^\n]*)$/.exec(body.value);
  return found ? found[1].toLowerCase() : null;
}

function filterCanned() {
  const query = slashQuery();
  let first = null;
  for (const option of picker.options) {
    const shown = query === null || option.text.toLowerCase().includes(query);
    option.hidden = !shown;
    if (shown && first === null) first = option;
  }
  if (query === null) {
    match.textContent = "";
    return;
  }
  if (first) picker.value = first.value;
  // The texts come translated from the page (data-found with {name}, data-none).
  const found = match.dataset.found || "Enter inserts the canned response “{name}”.";
  match.textContent = first ? found.replace("{name}", first.text) : (match.dataset.none || "No canned response has that name.");
}

async function slashEnter(event) {
  if (event.key !== "Enter" || event.ctrlKey || event.metaKey || event.shiftKey) return;
  const query = slashQuery();
  if (query === null) return;
  event.preventDefault();
  if ([...picker.options].every((option) => option.hidden)) return;
  body.value = "";
  filterCanned();
  await insertCanned();
}

if (form && body && picker && insertButton && match) {
  insertButton.addEventListener("click", (event) => {
    event.preventDefault();
    insertCanned();
  });
  body.addEventListener("input", filterCanned);
  body.addEventListener("keydown", slashEnter);
}

let counting = null;

async function count() {
  const response = await fetch(counter.dataset.url, {
    method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf },
    body: new URLSearchParams({ text: body.value }),
  });
  if (response.ok) counter.textContent = (await response.json()).label;
}

function showCounter() {
  counter.hidden = form.querySelector('input[name="channel"]:checked')?.value !== "sms";
}

if (form && body && counter) {
  body.addEventListener("input", () => {
    clearTimeout(counting);
    counting = setTimeout(count, 250);
  });
  form.addEventListener("change", (event) => {
    if (event.target.name === "channel") showCounter();
  });
}

// The file input: shown only while the chosen channel carries files (its data-channels);
// files chosen for a channel that cannot carry them are let go when it is hidden.
const files = document.getElementById("reply-files");

function showFiles() {
  const chosen = form.querySelector('input[name="channel"]:checked')?.value;
  files.hidden = !files.dataset.channels.split(" ").includes(chosen);
  if (files.hidden) files.querySelector("input").value = "";
}

if (form && files) {
  showFiles();
  form.addEventListener("change", (event) => {
    if (event.target.name === "channel") showFiles();
  });
}
