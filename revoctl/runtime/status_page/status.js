// revoctl status page: renders /status.json's document and follows /status/events.
// Everything is built with DOM calls and textContent: no value reaches innerHTML.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const readOnly = document.body.dataset.mode !== "admin";

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function table(columns, rows) {
    if (!rows.length) return el("p", { class: "muted" }, "none");
    const head = el("tr", {}, ...columns.map((c) => el("th", {}, c)));
    return el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows));
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    const s = Math.floor(seconds);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }

  function time(iso) {
    return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", "Z") : "";
  }

  function bar(fraction) {
    const f = Math.max(0, Math.min(1, fraction || 0));
    const inner = el("span");
    inner.style.width = Math.round(f * 100) + "%";
    return el("span", { class: f >= 0.8 ? "bar high" : "bar", title: Math.round(f * 100) + "%" }, inner);
  }

  function fill(id, content) {
    const body = document.querySelector("#" + id + " .body");
    body.replaceChildren(content);
  }

  function failed(section) {
    return section && section.error ? el("p", { class: "error" }, "unavailable: " + section.error) : null;
  }

  async function act(name, action) {
    const notice = document.getElementById("action-error");
    notice.hidden = true;
    const options = { method: "POST", headers: { "x-csrf-token": csrf }, credentials: "same-origin" };
    if (action === "trip") {
      options.headers["content-type"] = "application/json";
      options.body = JSON.stringify({ reason: "tripped from the status page" });
    }
    const answer = await fetch("/status/breakers/" + encodeURIComponent(name) + "/" + action, options);
    if (!answer.ok) {
      let message = answer.status + "";
      try { message += ": " + (await answer.json()).error.message; } catch (e) { /* not JSON */ }
      notice.textContent = action + " " + name + " failed: " + message;
      notice.hidden = false;
    }
  }

  function breakers(section) {
    const rows = (section.items || []).map((b) => {
      const buttons = el("td", { class: "actions" });
      if (!readOnly) {
        if (b.state === "closed" || b.state === "half_open")
          buttons.append(el("button", { class: "trip", "data-action": "trip", onclick: () => act(b.name, "trip") }, "Trip"));
        if (b.state !== "closed")
          buttons.append(el("button", { class: "reset", "data-action": "reset", onclick: () => act(b.name, "reset") }, "Reset"));
      }
      const processes = (b.fleet || []).map((p) =>
        el("span", { class: "badge " + (p.stale ? "stale" : "state-" + p.state), title: p.process + (p.stale ? " (stale)" : "") },
          p.process.split("/").pop() + ": " + p.state));
      return el("tr", { "data-breaker": b.name, "data-state": b.state },
        el("td", {}, b.name),
        el("td", {}, el("span", { class: "badge state state-" + b.state }, b.state.replace("_", " "))),
        el("td", { class: "in-state" }, duration(b.seconds_in_state)),
        el("td", {}, b.reason || ""),
        el("td", {}, b.actor || ""),
        el("td", {}, ...processes),
        buttons);
    });
    return table(["breaker", "state", "in state", "reason", "by", "processes", ""], rows);
  }

  function instances(section) {
    const rows = (section.instances || []).map((i) => {
      const pool = i.pool || {};
      const flags = [];
      if (i.stale) flags.push(el("span", { class: "badge stale" }, "stale"));
      // Configuration drift: `db pool` marks each instance whose rules or breakers differ
      // from the fleet's (config_differs, and the parts in differs).
      if (i.config_differs === true || i.config_drift === true) {
        const parts = Array.isArray(i.differs) && i.differs.length ? ": " + i.differs.join(", ") : "";
        flags.push(el("span", { class: "badge drift", "data-drift": "true" }, "config differs" + parts));
      }
      return el("tr", { "data-instance": i.instance },
        el("td", {}, i.instance), el("td", {}, time(i.seen_at)),
        el("td", {}, pool.checked_out ?? ""), el("td", {}, pool.checked_in ?? ""),
        el("td", {}, pool.size ?? pool.pool_size ?? ""), el("td", {}, pool.overflow ?? ""), el("td", {}, ...flags));
    });
    const configured = section.configured || {};
    return el("div", {},
      el("p", { class: "muted" }, (section.backend || "") + " pool: size " + (configured.pool_size ?? "?") +
        ", overflow " + (configured.max_overflow ?? "?") + ", timeout " + (configured.pool_timeout ?? "?") + "s"),
      table(["instance", "reported", "checked out", "idle", "size", "overflow", ""], rows));
  }

  function rules(section) {
    const rows = [];
    for (const r of section.items || []) {
      const keys = r.busiest.length ? r.busiest : [null];
      keys.forEach((k, n) => {
        rows.push(el("tr", { "data-rule": r.name },
          el("td", {}, n ? "" : r.name), el("td", {}, n ? "" : r.algorithm + ", " + r.scope),
          el("td", {}, n ? "" : r.limit + " / " + r.window_seconds + "s"),
          el("td", {}, k ? k.key : el("span", { class: "muted" }, "no key holds state")),
          el("td", {}, k ? el("span", {}, bar(k.used / (k.limit || 1)), " " + k.remaining + " left") : ""),
          el("td", {}, k ? duration(k.reset_after) : "")));
      });
    }
    return table(["rule", "kind", "limit", "busiest keys", "used", "resets in"], rows);
  }

  function secrets(section) {
    const cache = section.cache || {};
    const serving = section.serving || "provider";
    return table(["provider", "fallback", "serving", "cached", "hit rate", "stale served", "fallback served", "last error"], [
      el("tr", {},
        el("td", {}, section.provider), el("td", {}, section.fallback),
        el("td", {}, el("span", { class: "badge " + (serving === "provider" ? "state-closed" : "state-half_open") }, serving)),
        el("td", {}, cache.size ?? ""), el("td", {}, cache.hit_rate === null || cache.hit_rate === undefined ? "" : Math.round(cache.hit_rate * 100) + "%"),
        el("td", {}, section.stale_served), el("td", {}, section.fallback_served), el("td", {}, section.last_error || "")),
    ]);
  }

  function spend(section) {
    const rows = (section.items || []).map((k) => el("tr", { "data-key": k.name },
      el("td", {}, k.name), el("td", {}, k.tier || ""), el("td", {}, bar(k.fraction), " " + Math.round(k.fraction * 100) + "%"),
      el("td", {}, k.spend.toFixed(4) + " / " + k.budget), el("td", {}, time(k.resets_at))));
    return table(["key", "tier", "spent", "spend / budget", "resets"], rows);
  }

  function recent(section) {
    const refusals = (section.refusals || []).map((r) => el("tr", {},
      el("td", {}, time(r.at)), el("td", {}, r.status), el("td", {}, r.code || ""), el("td", {}, r.method + " " + r.path),
      el("td", {}, r.model || ""), el("td", {}, r.key || "")));
    const fallbacks = (section.fallbacks || []).map((r) => el("tr", {},
      el("td", {}, time(r.at)), el("td", {}, r.model), el("td", {}, r.served_by), el("td", {}, r.key || "")));
    return el("div", {},
      el("h3", {}, "Refused"), table(["at", "status", "code", "request", "model", "key"], refusals),
      el("h3", {}, "Answered by a fallback"), table(["at", "asked", "answered by", "key"], fallbacks));
  }

  const sections = { breakers, instances: null, rules, secrets, spend, recent };

  // A section is drawn again only when something other than its clocks changed, so that a
  // button is not replaced under the pointer four times a second; the clocks are updated
  // in place.
  const drawn = {};
  const clocks = new Set(["seconds_in_state", "reported_at", "seen_at", "seconds_since_report"]);

  function render(doc) {
    for (const [id, draw] of Object.entries(sections)) {
      const key = id === "instances" ? "pools" : id;
      const section = doc[key];
      if (!section) continue;
      const shape = JSON.stringify(section, (k, v) => (clocks.has(k) ? undefined : v));
      if (drawn[id] === shape) continue;
      drawn[id] = shape;
      fill(id, failed(section) || (id === "instances" ? instances(section) : draw(section)));
    }
    for (const b of (doc.breakers && doc.breakers.items) || []) {
      const cell = document.querySelector('tr[data-breaker="' + CSS.escape(b.name) + '"] .in-state');
      if (cell) cell.textContent = duration(b.seconds_in_state);
    }
    document.getElementById("served-by").textContent = "served by " + (doc.served_by || "");
    document.getElementById("updated").textContent = "updated " + time(doc.generated_at);
  }

  function connection(state, text) {
    const badge = document.getElementById("connection");
    badge.dataset.connection = state;
    badge.textContent = text;
  }

  document.getElementById("mode").textContent = readOnly ? "read-only" : "admin";
  if (readOnly) document.getElementById("logout").hidden = true;
  render(JSON.parse(document.getElementById("status-data").textContent));
  const events = new EventSource("/status/events");
  events.onopen = () => connection("live", "live");
  events.onmessage = (message) => { connection("live", "live"); render(JSON.parse(message.data)); };
  events.onerror = () => connection("lost", "server unreachable: retrying");
})();
