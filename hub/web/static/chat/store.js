// What the chat keeps in the browser (the frame's own localStorage, so only this browser and
// this hub see it): the visitor token, the last server message id seen, and the outbox of
// messages not yet acknowledged (so a message typed offline, or lost with the connection, is
// sent again on reconnect; the server stores a client id once).
const TOKEN = "hub_chat_token";
const AFTER = "hub_chat_after";
const OUTBOX = "hub_chat_outbox";

function storage() {
  try {
    return window.localStorage; // throws where storage is blocked: then nothing is kept
  } catch {
    return null;
  }
}

function read(key) {
  try {
    return storage()?.getItem(key) ?? null;
  } catch {
    return null;
  }
}

function write(key, value) {
  try {
    if (value === null) storage()?.removeItem(key);
    else storage()?.setItem(key, value);
  } catch {
    // full or blocked storage: the chat still works for this page
  }
}

// The page keeps its own copies: storage may be denied (a third-party frame in a browser that
// blocks third-party storage), and then the chat still works until the page is closed.
let tokenHere = null;
let lastSeen = 0;

export const token = {
  get: () => tokenHere || read(TOKEN),
  set(value) {
    tokenHere = value || null;
    write(TOKEN, tokenHere);
  },
};

export const after = {
  get: () => Math.max(lastSeen, Number(read(AFTER)) || 0),
  seen(id) {
    if (!Number.isInteger(id) || id <= after.get()) return;
    lastSeen = id;
    write(AFTER, String(id));
  },
};

export const outbox = {
  all() {
    try {
      const items = JSON.parse(read(OUTBOX) || "[]");
      return Array.isArray(items) ? items.filter((i) => i && typeof i.client_id === "string") : [];
    } catch {
      return [];
    }
  },
  put(item) {
    write(OUTBOX, JSON.stringify([...outbox.all().filter((i) => i.client_id !== item.client_id), item]));
  },
  drop(clientId) {
    const kept = outbox.all().filter((i) => i.client_id !== clientId);
    write(OUTBOX, kept.length ? JSON.stringify(kept) : null);
  },
};

export function newClientId() {
  if (window.crypto?.randomUUID) return window.crypto.randomUUID();
  const bytes = window.crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
