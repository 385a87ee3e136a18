/* durable-sync console: what both pages share. Everything from the server is put into the page as text
   (textContent / text nodes), never as markup. */
"use strict";

window.DurableConsole = (function () {
  const tokenMeta = document.querySelector('meta[name="durable-console-token"]');
  const TOKEN = tokenMeta ? tokenMeta.content : "";

  /* el("div", {className: "x", dataset: {a: "1"}, title: "t"}, "text", child, ...) */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null) continue;
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "style") Object.assign(node.style, value);
      else if (key === "onclick") node.addEventListener("click", value);
      else node[key] = value;
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.appendChild(typeof child === "string" || typeof child === "number"
        ? document.createTextNode(String(child)) : child);
    }
    return node;
  }

  class ConsoleError extends Error {
    constructor(message, status, code) { super(message); this.status = status; this.code = code; }
  }

  async function answer(response) {
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const message = (body && body.message) || (response.status + " " + response.statusText);
      throw new ConsoleError(message, response.status, body && body.code);
    }
    return body;
  }

  async function getJSON(url) {
    return answer(await fetch(url, {headers: {"Accept": "application/json"}, cache: "no-store"}));
  }

  async function act(action, body) {
    return answer(await fetch("api/actions/" + encodeURIComponent(action), {
      method: "POST", cache: "no-store",
      headers: {"Content-Type": "application/json", "X-Durable-Console-Token": TOKEN},
      body: JSON.stringify(body),
    }));
  }

  function pill(node, status) {
    node.className = "pill " + status;
    node.textContent = status;
    node.dataset.status = status;
  }

  function notice(text, kind) {
    const box = document.getElementById("notice");
    box.className = "notice " + (kind || "");
    box.textContent = text || "";
  }

  /* A payload preview: the text, and "show all" when the server clipped it. */
  function payloadView(payload, fetchWhole) {
    if (!payload) return el("div", {className: "none"}, "none");
    const pre = el("pre", {className: "payload"}, payload.text);
    const box = el("div", {className: "payload-box"}, pre);
    if (payload.truncated) {
      const more = el("button", {type: "button", className: "more show-all"},
        "show all (" + payload.size.toLocaleString() + " characters)");
      more.addEventListener("click", async (event) => {
        event.stopPropagation();
        more.disabled = true;
        try {
          const whole = await fetchWhole(payload.ref);
          pre.textContent = whole.text === null ? "" : whole.text;
          more.remove();
        } catch (e) {
          more.disabled = false;
          notice(e.message, "error");
        }
      });
      box.appendChild(more);
    }
    return box;
  }

  /* A stack trace as the HTML timeline shows it: the user's frames open, library frames folded. */
  function traceView(title, error) {
    if (!error || !error.trace || !error.trace.length) return null;
    const box = el("details", {className: "trace"}, el("summary", {}, title));
    for (const part of error.trace) {
      if (part.library) {
        box.appendChild(el("details", {className: "lib"},
          el("summary", {}, part.count + " library frame" + (part.count === 1 ? "" : "s") + " (" + part.functions + ")"),
          el("pre", {}, part.text)));
      } else {
        box.appendChild(el("pre", {}, part.text));
      }
    }
    return box;
  }

  function errorView(error) {
    if (!error) return null;
    return el("div", {}, el("div", {className: "errtext"}, error.summary), traceView("stack trace", error));
  }

  function bar(spec) {
    return el("div", {className: "bar " + spec.kind, title: spec.title,
                      style: {left: spec.left + "%", width: spec.width + "%"}});
  }

  /* Call fn now and then every interval() ms (null: stop), skipping while the tab is hidden; now() calls it at
     once (after the call in progress, if any). */
  function poll(fn, interval) {
    let timer = null, running = false, again = false;
    async function tick() {
      if (running) { again = true; return; }
      if (timer !== null) { clearTimeout(timer); timer = null; }
      running = true;
      try {
        if (!document.hidden) await fn();
      } catch (e) {
        notice(e.message, "error");
      } finally {
        running = false;
      }
      if (again) { again = false; return tick(); }
      const next = interval();
      if (next !== null) timer = setTimeout(tick, next);
    }
    document.addEventListener("visibilitychange", () => { if (!document.hidden) tick(); });
    return {now: tick};
  }

  /* performance.mark(name) once, after the next frame is painted (benchmarks/console.py reads it). */
  const marked = new Set();
  function markPainted(name) {
    if (marked.has(name)) return;
    marked.add(name);
    requestAnimationFrame(() => setTimeout(() => performance.mark(name), 0));
  }

  return {markPainted, el, append, getJSON, act, pill, notice, payloadView, traceView, errorView, bar, poll, ConsoleError};
})();
