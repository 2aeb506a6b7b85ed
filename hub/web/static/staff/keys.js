// Keyboard shortcuts of the workspace (never while typing in a field):
//   j / k   next / previous conversation in the list      Enter  opens it (a link)
//   /       search                                         r / n  write a reply / a note
//   e       resolve the open conversation                  a      assign: the "Assign to" control
//   ?       show these shortcuts
// In a reply or note, Ctrl+Enter sends (see live.js).

const typing = (target) =>
  target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));

function moveInList(step) {
  const links = [...document.querySelectorAll(".conversations a.subject")];
  if (!links.length) return;
  const at = links.indexOf(document.activeElement);
  const next = at < 0 ? (step > 0 ? 0 : links.length - 1) : Math.min(links.length - 1, Math.max(0, at + step));
  links[next].focus();
}

function focusField(id) {
  const field = document.getElementById(id);
  if (!field) return false;
  field.focus();
  return true;
}

function resolve() {
  const button = document.querySelector('form[action$="/status"] input[name="status"][value="resolved"] ~ button');
  if (!button) return false;
  button.click();
  return true;
}

function showHelp() {
  const dialog = document.getElementById("shortcuts");
  if (dialog && !dialog.open) dialog.showModal();
  return Boolean(dialog);
}

const ACTIONS = {
  j: () => { moveInList(1); return true; },
  k: () => { moveInList(-1); return true; },
  "/": () => focusField("q"),
  r: () => focusField("reply-body"),
  n: () => focusField("note-body"),
  e: resolve,
  a: () => focusField("assign-staff"),
  "?": showHelp,
};

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
  const action = ACTIONS[event.key];
  if (action && action()) event.preventDefault();
});

for (const button of document.querySelectorAll("[data-close-dialog]")) {
  button.addEventListener("click", () => button.closest("dialog")?.close());
}
