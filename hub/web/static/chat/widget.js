/* The hub's chat widget: one <script src="https://HUB/chat/widget.js" async></script> on a site
   listed in [webchat] allowed_origins. It adds one launcher button (in a shadow root, so the
   site's CSS cannot change it and its styles cannot leak out; an open one, so accessibility
   checkers see it) and nothing else until the button is pressed; then the chat opens in an
   iframe served by the hub (/chat?embed=1), which the site's scripts and styles cannot reach.
   Close (or Escape) hides it and gives the focus back to the button. While it is closed, staff
   replies that arrive are counted by the frame and shown in the button's name ("Chat with us
   (1 new)") and said once by a polite status. Messages between the two are origin-checked
   both ways: the frame posts only to this page's origin (which the hub checked against
   [webchat] allowed_origins), this script hears only the hub's own frame. No dependencies, no
   globals but one guard. */
(function () {
  "use strict";
  var GUARD = "__hubChatWidget";
  if (window[GUARD]) return;
  window[GUARD] = true;

  var script = document.currentScript ||
    document.querySelector('script[src$="/chat/widget.js"]');
  if (!script || !script.src) return;
  var hub = new URL(script.src).origin;
  var lang = (document.documentElement.lang || navigator.language || "en").slice(0, 2).toLowerCase();
  var TEXTS = {
    en: { open: "Chat with us", close: "Close the chat", title: "Chat with City Hall",
          unread: function (n) { return "Chat with us (" + n + " new)"; },
          said: function (n) { return n === 1 ? "1 new message in the chat" : n + " new messages in the chat"; } },
    es: { open: "Chatee con nosotros", close: "Cerrar el chat", title: "Chat con el Ayuntamiento",
          unread: function (n) { return "Chatee con nosotros (" + n + (n === 1 ? " nuevo)" : " nuevos)"); },
          said: function (n) { return n === 1 ? "1 mensaje nuevo en el chat" : n + " mensajes nuevos en el chat"; } }
  };
  var text = TEXTS[lang] || TEXTS.en;
  var CSS = [
    ":host{all:initial}",
    "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}",
    ".launcher{position:fixed;right:1rem;bottom:1rem;z-index:2147483000;font-size:1rem;",
    "font-weight:700;line-height:1.25;min-height:2.75rem;padding:.6rem 1.1rem;color:#fff;",
    "background:#1d4f91;border:2px solid #fff;border-radius:1.5rem;cursor:pointer;",
    "box-shadow:0 2px 6px rgba(0,0,0,.35)}",
    ".launcher:hover{background:#163d70}",
    "button:focus-visible{outline:3px solid #0b0c0c;outline-offset:0;",
    "box-shadow:0 0 0 6px #fd0;background:#fd0;color:#0b0c0c}",
    ".panel{position:fixed;right:1rem;bottom:1rem;z-index:2147483001;width:min(26rem,calc(100vw - 2rem));",
    "height:min(40rem,calc(100vh - 2rem));display:flex;flex-direction:column;background:#fff;",
    "border:2px solid #0b0c0c;box-shadow:0 4px 16px rgba(0,0,0,.35)}",
    ".panel[hidden],.launcher[hidden]{display:none}",
    ".bar{display:flex;justify-content:flex-end;background:#1d4f91;padding:.25rem}",
    ".close{font-size:1rem;font-weight:700;min-height:2.75rem;padding:.4rem .9rem;color:#fff;",
    "background:transparent;border:2px solid #fff;cursor:pointer}",
    "iframe{flex:1;width:100%;border:0;display:block}",
    ".said{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);",
    "clip-path:inset(50%);white-space:nowrap}"
  ].join("");

  var host = document.createElement("div");
  host.setAttribute("data-hub-chat", "");
  var shadow = host.attachShadow({ mode: "open" });
  try { // a constructed sheet is not refused by the site's style-src policy
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    shadow.adoptedStyleSheets = [sheet];
  } catch (e) {
    var style = document.createElement("style");
    style.textContent = CSS;
    shadow.appendChild(style);
  }
  var launcher = document.createElement("button");
  launcher.type = "button";
  launcher.className = "launcher";
  launcher.textContent = text.open;
  launcher.setAttribute("aria-expanded", "false");
  shadow.appendChild(launcher);
  var said = document.createElement("span"); // a polite live region: "1 new message"
  said.className = "said";
  said.setAttribute("role", "status");
  shadow.appendChild(said);
  var panel = null;
  var frame = null;
  var unread = 0;

  function setUnread(count) {
    var more = count > unread;
    unread = count;
    launcher.textContent = count ? text.unread(count) : text.open;
    said.textContent = more ? text.said(count) : "";
  }

  function tell(open) { // the frame counts what arrives while it is closed
    if (frame && frame.contentWindow) {
      frame.contentWindow.postMessage({ type: "hub-chat:state", open: open }, hub);
    }
  }

  function build() {
    panel = document.createElement("div");
    panel.className = "panel";
    panel.setAttribute("role", "region");
    panel.setAttribute("aria-label", text.title);
    var bar = document.createElement("div");
    bar.className = "bar";
    var close = document.createElement("button");
    close.type = "button";
    close.className = "close";
    close.textContent = text.close;
    close.addEventListener("click", hide);
    bar.appendChild(close);
    frame = document.createElement("iframe");
    frame.title = text.title;
    frame.referrerPolicy = "no-referrer"; // the hub learns nothing of the page the citizen is on
    // `host`: where the frame may post its unread count (the hub checks it is allowed)
    frame.src = hub + "/chat?embed=1&lang=" + encodeURIComponent(lang) +
      "&host=" + encodeURIComponent(location.origin);
    frame.addEventListener("load", function () { if (!panel.hidden) frame.focus(); });
    panel.appendChild(bar);
    panel.appendChild(frame);
    panel.addEventListener("keydown", function (event) {
      if (event.key === "Escape") hide();
    });
    shadow.appendChild(panel);
  }

  function show() {
    if (!panel) build();
    panel.hidden = false;
    launcher.hidden = true;
    launcher.setAttribute("aria-expanded", "true");
    setUnread(0);
    tell(true);
    frame.focus();
  }

  function hide() {
    if (!panel || panel.hidden) return;
    panel.hidden = true;
    launcher.hidden = false;
    launcher.setAttribute("aria-expanded", "false");
    tell(false);
    launcher.focus();
  }

  launcher.addEventListener("click", show);
  window.addEventListener("message", function (event) {
    // only the chat's own frame may close it or count for it
    if (!frame || event.origin !== hub || event.source !== frame.contentWindow || !event.data) return;
    if (event.data.type === "hub-chat:close") hide();
    if (event.data.type === "hub-chat:unread" && panel.hidden) {
      var count = Number(event.data.count);
      setUnread(Number.isInteger(count) && count > 0 ? Math.min(count, 99) : 0);
    }
  });

  function attach() { document.body.appendChild(host); }
  if (document.body) attach();
  else document.addEventListener("DOMContentLoaded", attach);
})();
