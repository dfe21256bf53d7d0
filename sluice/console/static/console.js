// The console's only script: copy buttons and the live events stream. No third-party code, nothing from elsewhere.
"use strict";

document.addEventListener("click", (e) => {
  const button = e.target.closest("button[data-copy]");
  if (!button) return;
  const input = document.getElementById(button.dataset.copy);
  input.select();
  const done = () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy"; }, 1500); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(input.value).then(done, () => { document.execCommand("copy"); done(); });
  } else {
    document.execCommand("copy");
    done();
  }
});

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) node.append(child);  // text is never parsed as HTML
  return node;
}

function pretty(value) { return JSON.stringify(value, null, 2); }

function showEvent(list, item) {
  const title = `${item.received_at} · ${item.type}${item.event ? ": " + item.event : ""} · ${item.message_id}`;
  const raw = el("div", {}, el("h3", {}, "Received"), el("pre", {}, pretty(item.raw)));
  const loaded = el("div", {}, el("h3", {}, `As loaded (schema ${item.schema})`), el("pre", {}, pretty(item.loaded)));
  list.prepend(el("article", { class: "event", "data-message-id": item.message_id },
    el("h3", {}, title), el("div", { class: "twocol" }, raw, loaded)));
}

function showRefusal(list, item) {
  list.prepend(el("article", { class: "event refused" },
    el("h3", {}, `${item.at} · ${item.endpoint} · ${item.status} ${item.code}`),
    el("p", { class: "reason" }, item.reason)));
}

function live() {
  const root = document.getElementById("live");
  if (!root) return;
  const status = document.getElementById("live-status");
  const events = document.getElementById("live-events");
  const refused = document.getElementById("live-refused");
  const stream = new EventSource(root.dataset.stream);
  stream.addEventListener("open", () => { status.textContent = "Connected: waiting for events."; });
  stream.addEventListener("error", () => { status.textContent = "Disconnected: reconnecting…"; });
  stream.addEventListener("message", (e) => {
    const item = JSON.parse(e.data);
    if (item.kind === "refused") showRefusal(refused, item);
    else showEvent(events, item);
    status.textContent = "Connected.";
  });
}

document.addEventListener("DOMContentLoaded", live);
