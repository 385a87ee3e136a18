/* One execution: its timeline and operation tree, updated live, and the actions taken on it. */
"use strict";

(function () {
  const C = window.DurableConsole;
  const el = C.el;
  const ARN = new URLSearchParams(location.search).get("arn");
  const openOps = new Set();  // operations whose details are shown
  let data = null;
  let version = null;
  let gone = false;

  function fetchWhole(ref) {
    return C.getJSON("api/payload?" + new URLSearchParams({arn: ARN, ref: ref}).toString());
  }

  function showGone(message) {
    gone = true;
    C.pill(document.getElementById("status"), "GONE");
    C.notice(message, "error");
    for (const button of document.querySelectorAll("#actions button")) button.disabled = true;
    document.getElementById("callbacks").hidden = true;
    document.getElementById("live").textContent = "";
  }

  async function load() {
    if (!ARN) { showGone("no execution given: open one from the executions list"); return; }
    const query = {arn: ARN};
    if (version) query.since = version;
    let next;
    try {
      next = await C.getJSON("api/execution?" + new URLSearchParams(query).toString());
    } catch (e) {
      if (e.status === 404) { showGone(e.message); return; }
      throw e;
    }
    if (next.unchanged) return;
    version = next.version;
    data = next;
    render();
  }

  const refresher = C.poll(load, () => (gone || (data && data.terminal) ? null : 1000));

  // -- actions --------------------------------------------------------------------------------------------
  async function run(action, body) {
    const buttons = document.querySelectorAll("#actions button, #callback-list button");
    for (const button of buttons) button.disabled = true;
    try {
      const out = await C.act(action, body);
      C.notice(out.message, "ok");
      if (action === "run-again") { location.href = "execution?arn=" + encodeURIComponent(out.arn); return; }
      if (action === "delete") { showGone("deleted: " + data.name + " and its history are gone"); return; }
    } catch (e) {
      C.notice(action + " refused: " + e.message, "error");
    }
    if (!gone) {
      await refresher.now();
      if (data) renderActions();
    }
  }

  for (const button of document.querySelectorAll("#actions button")) {
    button.addEventListener("click", () => {
      const action = button.dataset.action;
      const body = {arn: ARN};
      if (action === "pause" || action === "resume") body.reason = document.getElementById("reason").value;
      if (action === "delete" && !button.classList.contains("confirm")) {
        button.classList.add("confirm");
        button.textContent = "Really delete?";
        setTimeout(() => { button.classList.remove("confirm"); button.textContent = "Delete"; }, 4000);
        return;
      }
      run(action, body);
    });
  }

  function renderActions() {
    const can = data.can;
    for (const button of document.querySelectorAll("#actions button")) {
      const key = button.dataset.action.replace("-", "_");
      button.disabled = gone || !can[key];
      if (key === "run_again") {
        button.title = can.run_again ? "" : "this server does not serve " + data.function +
          ": start it with --function " + data.function + "=FILE:HANDLER";
      }
    }
  }

  function callbackForm(cb) {
    const payload = el("textarea", {className: "cb-payload", spellcheck: false, placeholder: '{"approved": true}'});
    const check = el("div", {className: "check"});
    const errorType = el("input", {className: "cb-error-type", placeholder: "CallbackError", size: 18});
    const errorMessage = el("input", {className: "cb-error-message", placeholder: "why", size: 28});
    function valid() {
      const text = payload.value.trim();
      if (!text) { check.className = "check"; check.textContent = "empty: the callback succeeds with no result"; return true; }
      try {
        JSON.parse(text);
        check.className = "check good";
        check.textContent = "valid JSON";
        return true;
      } catch (e) {
        check.className = "check bad";
        check.textContent = "not JSON: " + e.message;
        return false;
      }
    }
    payload.addEventListener("input", valid);
    const succeed = el("button", {type: "button", className: "cb-succeed"}, "Send success");
    succeed.addEventListener("click", () => {
      if (!valid()) { C.notice("the result is not JSON: correct it, nothing was sent", "error"); return; }
      run("callback-succeed", {callback_id: cb.callback_id, payload: payload.value});
    });
    const fail = el("button", {type: "button", className: "cb-fail"}, "Send failure");
    fail.addEventListener("click", () => run("callback-fail", {
      callback_id: cb.callback_id, error_type: errorType.value.trim(), error_message: errorMessage.value}));
    const heartbeat = el("button", {type: "button", className: "cb-heartbeat"}, "Heartbeat");
    heartbeat.addEventListener("click", () => run("callback-heartbeat", {callback_id: cb.callback_id}));
    return el("div", {className: "callback", dataset: {callbackId: cb.callback_id}},
      el("div", {className: "head"}, el("b", {}, cb.name || "callback"), " · callback id ", el("code", {}, cb.callback_id)),
      el("div", {}, el("label", {}, "result (JSON)", payload), check, el("div", {className: "row2"}, succeed)),
      el("div", {},
        el("div", {className: "row2"}, el("label", {}, "error type ", errorType)),
        el("div", {className: "row2"}, el("label", {}, "message ", errorMessage)),
        el("div", {className: "row2"}, fail, heartbeat)));
  }

  function renderCallbacks() {
    const section = document.getElementById("callbacks");
    const list = document.getElementById("callback-list");
    section.hidden = !data.open_callbacks.length;
    const ids = data.open_callbacks.map((cb) => cb.callback_id).join(",");
    if (list.dataset.ids === ids) return;  // keep what the user is typing
    list.dataset.ids = ids;
    list.replaceChildren(...data.open_callbacks.map(callbackForm));
  }

  // -- the page ---------------------------------------------------------------------------------------------
  function table(headings, rows) {
    return el("table", {className: "small"}, el("thead", {}, el("tr", {}, headings.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows));
  }

  /* A history event: one line; the event itself is fetched when opened. */
  function eventView(event) {
    const body = el("pre", {className: "payload"}, "loading…");
    const box = el("details", {className: "event", dataset: {eventId: String(event.id)}},
      el("summary", {}, "#" + event.id + " " + event.type + (event.name ? " (" + event.name + ")" : "") + " · " + event.time),
      body);
    box.addEventListener("toggle", async () => {
      if (!box.open || box.dataset.loaded) return;
      box.dataset.loaded = "1";
      try {
        body.textContent = (await fetchWhole(event.ref)).text;
      } catch (e) {
        delete box.dataset.loaded;
        body.textContent = "could not load the event: " + e.message;
      }
    });
    return box;
  }

  function details(op) {
    const box = el("div", {className: "opdetails", dataset: {detailsOf: op.id}});
    const facts = [op.kind, op.status];
    if (op.started_at) facts.push("started " + op.started_at + " (" + op.offset + ")");
    if (op.ended_at) facts.push("ended " + op.ended_at);
    facts.push("took " + op.duration);
    box.append(el("div", {className: "facts"}, facts.join(" · ")), el("div", {className: "facts"}, "id ", el("code", {}, op.id)));
    if (op.callback_id) box.append(el("div", {className: "facts"}, "callback id ", el("code", {}, op.callback_id)));
    if (op.result) box.append(el("h3", {}, "Result"), C.payloadView(op.result, fetchWhole));
    if (op.error) box.append(el("h3", {}, "Error"), C.errorView(op.error));
    if (op.attempts.length) {
      box.append(el("h3", {}, op.attempts[0].word === "check" ? "Checks" : "Attempts"), table(
        ["#", "outcome", "started", "took", "then waited", "error"],
        op.attempts.map((a) => el("tr", {}, el("td", {}, a.number), el("td", {}, el("span", {className: "st " + a.outcome}, a.outcome)),
          el("td", {}, a.started), el("td", {}, a.duration), el("td", {}, a.retry_delay),
          el("td", {}, a.error ? C.errorView(a.error) : "")))));
    }
    if (op.timers.length) {
      box.append(el("h3", {}, "Timers"), table(["kind", "due", "in"],
        op.timers.map((t) => el("tr", {}, el("td", {}, t.kind), el("td", {}, t.due), el("td", {}, t.in)))));
    }
    const events = op.events.map((id) => eventsById.get(id)).filter(Boolean);
    box.append(el("h3", {}, "History events (" + events.length + ")"), ...events.map(eventView));
    return box;
  }

  let eventsById = new Map();

  function opRow(op) {
    const label = el("div", {className: "label", title: op.title, style: {paddingLeft: (8 + op.depth * 16) + "px"}},
      el("span", {className: "name"}, op.label), el("span", {className: "st " + op.status}, op.status),
      el("span", {className: "kind"}, op.kind), op.note ? el("span", {className: "kind"}, op.note) : null);
    const track = el("div", {className: "track"}, op.bars.map(C.bar),
      op.markers.map((m) => el("div", {className: "marker", title: m.title, style: {left: m.left + "%"}}, el("b", {}, m.text))));
    const row = el("div", {className: "row op-row" + (openOps.has(op.id) ? " open" : ""),
                           dataset: {opId: op.id, opName: op.name || "", status: op.status}},
      label, track, el("div", {className: "dur"}, op.duration));
    row.addEventListener("click", () => {
      if (openOps.has(op.id)) openOps.delete(op.id); else openOps.add(op.id);
      renderChart();
    });
    return row;
  }

  function fixedRow(name, note, bars, duration, st) {
    return el("div", {className: "row", dataset: {row: name}},
      el("div", {className: "label"}, el("span", {className: "name"}, name),
        st ? el("span", {className: "st " + st}, st) : null, note ? el("span", {className: "kind"}, note) : null),
      el("div", {className: "track"}, bars.map(C.bar)), el("div", {className: "dur"}, duration));
  }

  function renderChart() {
    const chart = data.chart;
    const rows = [
      el("div", {className: "gridlayer"}, chart.ticks.map((t) => el("div", {className: "gridline", style: {left: t.left + "%"}}))),
      el("div", {className: "row axis"}, el("div", {className: "label"}, "operation"),
        el("div", {className: "track"}, chart.ticks.map((t) =>
          el("span", {className: "ticklabel" + (t.extra ? " " + t.extra : ""), style: {left: t.left + "%"}}, t.text))),
        el("div", {className: "dur"}, "duration")),
      fixedRow("execution", null, [chart.execution.bar], chart.execution.duration, chart.execution.status),
      fixedRow("invocations", chart.invocations.count + " × handler", chart.invocations.bars, chart.invocations.duration),
    ];
    for (const op of data.operations) {
      if (!op.drawn) continue;
      rows.push(opRow(op));
      if (openOps.has(op.id)) rows.push(details(op));
    }
    document.getElementById("chart").replaceChildren(...rows);
    document.getElementById("chart-note").textContent = (chart.not_drawn
      ? "… " + chart.not_drawn + " more operations not drawn. " : "") +
      "Click an operation for its payloads, attempts, timers and history events.";
  }

  function renderFailures() {
    const items = [];
    for (const op of data.operations) {
      for (const a of op.attempts) {
        if (a.outcome === "FAILED" && a.error) {
          items.push(el("div", {className: "failure", dataset: {opId: op.id}},
            el("div", {className: "errtext"}, op.label + " " + a.word + " " + a.number + ": " + a.error.summary),
            C.traceView("stack trace", a.error)));
        }
      }
    }
    for (const inv of data.invocations) {
      if (inv.error) {
        items.push(el("div", {className: "failure"}, el("div", {className: "errtext"},
          "invocation " + inv.number + ": " + inv.error.summary), C.traceView("stack trace", inv.error)));
      }
    }
    document.getElementById("failures").hidden = !items.length;
    document.getElementById("failure-list").replaceChildren(...items);
  }

  function renderHistory() {
    const box = document.getElementById("history");
    box.querySelector("summary").textContent = data.events.length + " events";
    const list = document.getElementById("history-list");
    list.replaceChildren(...(box.open ? data.events.map(eventView) : []));
  }

  function render() {
    const title = data.function + " / " + data.name;
    document.title = title + " — durable-sync console";
    document.getElementById("heading").textContent = title;
    C.pill(document.getElementById("status"), data.status);
    document.getElementById("arn").textContent = data.arn;
    const meta = data.meta.slice();
    if (data.pause) meta.push("paused since " + data.pause.PauseRequestTimestamp + (data.pause.Reason ? " (" + data.pause.Reason + ")" : ""));
    document.getElementById("meta").textContent = meta.join(" · ");
    document.getElementById("live").textContent = data.terminal ? "ended" : "live: updates as it runs";
    renderActions();
    renderCallbacks();
    document.getElementById("input").replaceChildren(C.payloadView(data.input, fetchWhole));
    const outcome = document.getElementById("outcome");
    if (data.error) {
      document.getElementById("outcome-title").textContent = "Error";
      outcome.replaceChildren(C.errorView(data.error));
    } else {
      document.getElementById("outcome-title").textContent = "Result";
      outcome.replaceChildren(data.result ? C.payloadView(data.result, fetchWhole)
        : el("div", {className: "none"}, data.terminal ? "none" : "not yet: the execution is " + data.status));
    }
    renderFailures();
    const legend = document.getElementById("legend");
    if (!legend.childElementCount) {
      legend.replaceChildren(...data.legend.map((item) =>
        el("span", {}, el("i", {className: "bar " + item.kind, style: {position: "static"}}), item.text)));
    }
    eventsById = new Map(data.events.map((e) => [e.id, e]));
    renderChart();
    document.getElementById("timers").replaceChildren(data.timers.length
      ? table(["kind", "operation", "due", "in"], data.timers.map((t) => el("tr", {},
        el("td", {}, t.kind), el("td", {}, t.operation || t.operation_id || "execution"), el("td", {}, t.due), el("td", {}, t.in))))
      : el("div", {className: "none"}, "none"));
    document.getElementById("invocations").replaceChildren(data.invocations.length
      ? table(["#", "started", "took", "error"], data.invocations.map((inv) => el("tr", {},
        el("td", {}, inv.number), el("td", {}, inv.started), el("td", {}, inv.duration),
        el("td", {}, inv.error ? C.errorView(inv.error) : ""))))
      : el("div", {className: "none"}, data.running.in_flight ? "the first invocation is running" : "none yet"));
    renderHistory();
    C.markPainted("console:execution-rendered");
  }

  document.getElementById("history").addEventListener("toggle", () => { if (data) renderHistory(); });
  refresher.now();
})();
