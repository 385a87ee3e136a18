/* The executions list: filters and paging in the address bar, auto-refresh while an execution runs. */
"use strict";

(function () {
  const C = window.DurableConsole;
  const form = document.getElementById("filters");
  const tbody = document.querySelector("#executions tbody");
  const FIELDS = ["function", "status", "name", "limit"];
  let last = null;

  function params() {
    const query = new URLSearchParams(location.search);
    const out = {};
    for (const key of FIELDS.concat(["offset"])) {
      const value = query.get(key);
      if (value) out[key] = value;
    }
    return out;
  }

  function go(next, push) {
    const query = new URLSearchParams(next).toString();
    history[push ? "pushState" : "replaceState"](null, "", query ? "?" + query : "./");
    refresher.now();
  }

  function fillSelect(select, values, current) {
    const wanted = [""].concat(values).join("|");
    if (select.dataset.filled !== wanted) {
      const keep = select.name === "status" ? [select.options[0]] : [];
      select.replaceChildren(...keep, ...values.map((v) => C.el("option", {value: String(v)}, String(v))));
      select.dataset.filled = wanted;
    }
    select.value = current;
  }

  function render(data, p) {
    last = data;
    fillSelect(form.elements.status, data.statuses, p.status || "");
    fillSelect(form.elements.limit, data.page_sizes, String(data.limit));
    if (document.activeElement !== form.elements.function) form.elements.function.value = p.function || "";
    if (document.activeElement !== form.elements.name) form.elements.name.value = p.name || "";
    document.getElementById("functions").replaceChildren(...data.functions.map((f) => C.el("option", {value: f})));
    const rows = data.executions.map((ex) => C.el("tr", {dataset: {arn: ex.arn, status: ex.status}},
      C.el("td", {className: "mono"}, ex.function),
      C.el("td", {className: "mono"}, C.el("a", {href: "execution?arn=" + encodeURIComponent(ex.arn)}, ex.name)),
      C.el("td", {}, C.el("span", {className: "pill " + ex.status}, ex.status)),
      C.el("td", {}, ex.started),
      C.el("td", {className: "dur"}, ex.duration + (ex.ended ? "" : " …"))));
    if (!rows.length) {
      const filtered = p.function || p.status || p.name;
      rows.push(C.el("tr", {className: "placeholder"}, C.el("td", {colSpan: 5},
        filtered ? "no execution matches these filters" : "no executions yet: start one (durable-sync run, boto3, the AWS CLI)")));
    }
    tbody.replaceChildren(...rows);
    const first = data.offset + 1;
    document.getElementById("range").textContent = data.executions.length
      ? first.toLocaleString() + "–" + (data.offset + data.executions.length).toLocaleString() : "";
    document.getElementById("newer").disabled = data.offset === 0;
    document.getElementById("older").disabled = !data.has_more;
    document.getElementById("refresh").textContent = data.any_running
      ? "auto-refresh: on (an execution is running)" : "auto-refresh: idle";
    document.getElementById("clock").textContent = "engine time " + data.now;
    C.markPainted("console:list-rendered");
  }

  async function load() {
    const p = params();
    const data = await C.getJSON("api/executions?" + new URLSearchParams(p).toString());
    C.notice("");
    render(data, p);
  }

  const refresher = C.poll(load, () => (last && last.any_running ? 1000 : 5000));

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = {};
    for (const key of FIELDS) {
      const value = form.elements[key].value.trim();
      if (value) next[key] = value;
    }
    go(next, true);
  });
  document.getElementById("clear").addEventListener("click", () => { form.reset(); go({}, true); });
  document.getElementById("newer").addEventListener("click", () => {
    const p = params();
    const offset = Math.max(0, Number(p.offset || 0) - last.limit);
    if (offset) p.offset = String(offset); else delete p.offset;
    go(p, true);
  });
  document.getElementById("older").addEventListener("click", () => {
    const p = params();
    p.offset = String(Number(p.offset || 0) + last.limit);
    go(p, true);
  });
  window.addEventListener("popstate", () => refresher.now());
  refresher.now();
})();
