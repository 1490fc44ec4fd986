// Lineside status page: renders the agent's status from the server-sent event stream, and
// drives login and control actions. Every value from the agent or a device is inserted with
// textContent / DOM APIs, never as HTML.
"use strict";

(() => {
  const TEXTS = window.LINESIDE_I18N;
  const LANG_KEY = "lineside.lang";
  const $ = (id) => document.getElementById(id);
  let lang = chooseLanguage();
  let lastStatus = null;
  let streamDown = false;
  let session = { logged_in: false, csrf_token: null, actions_enabled: false, version: "" };
  let quarantineShown = -1;

  function chooseLanguage() {
    const saved = localStorage.getItem(LANG_KEY);
    if (saved && TEXTS[saved]) return saved;
    for (const l of navigator.languages || [navigator.language || "en"]) {
      const low = String(l).toLowerCase();
      if (low.startsWith("zh")) return "zh";
      if (low.startsWith("en")) return "en";
    }
    return "en";
  }

  function fillIn(text, params) {
    for (const [name, value] of Object.entries(params || {})) {
      text = text.split("{" + name + "}").join(String(value));
    }
    return text;
  }

  function t(key, params) {
    return fillIn((TEXTS[lang] && TEXTS[lang][key]) || TEXTS.en[key] || key, params);
  }

  const num = (n) => new Intl.NumberFormat(lang === "zh" ? "zh-CN" : "en").format(n);

  // Text the server words in English (alarms, rejection reasons) comes with a stable code and
  // params: in another language the page words it from its dictionary ("alarm:CODE",
  // "reason:CODE"); the server's English stays as it is when the language is English or the
  // code is unknown here. Params are device or agent text, inserted as text like the rest.
  function worded(key, params, english) {
    const own = lang !== "en" && TEXTS[lang] && TEXTS[lang][key];
    if (!own) return english;
    const filled = {};
    for (const [name, value] of Object.entries(params || {})) {
      if (Array.isArray(value)) { // items of their own: [{code, params}, ...]
        const items = value.map((item) => worded("alarm:" + item.code, item.params, null));
        if (items.includes(null)) return english;
        filled[name] = items.join(t("listSeparator"));
      } else if (name === "kind" && TEXTS[lang]["word_" + value]) {
        filled[name] = TEXTS[lang]["word_" + value];
      } else {
        filled[name] = typeof value === "number" ? num(value) : String(value);
      }
    }
    return fillIn(own, filled);
  }

  const alarmText = (a) => worded("alarm:" + a.code, a.params, a.message);
  const reasonText = (sc) => worded("reason:" + sc.reason_code, sc.reason_params, sc.reason);
  const roleText = (role) => (TEXTS[lang]["role_" + role] || TEXTS.en["role_" + role] || role);

  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return t("seconds", { n: s });
    if (s < 3600) return t("minutes", { n: Math.floor(s / 60) });
    if (s < 86400) return t("hours", { n: Math.floor(s / 3600) });
    return t("days", { n: Math.floor(s / 86400) });
  }

  function ago(iso) {
    if (!iso) return t("never");
    const s = (Date.now() - Date.parse(iso)) / 1000;
    return s < 2 ? t("justNow") : t("ago", { d: duration(s) });
  }

  const clock = (iso) =>
    iso ? new Date(iso).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB") : "–";

  // el("td", {class: "x", text: "..."}, child...) — text is always set as textContent.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  const pill = (ok, text, level) => el("span", { class: "pill " + (level || (ok ? "ok" : "bad")), text });

  function applyLanguage() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    for (const node of document.querySelectorAll("[data-i18n]")) {
      node.textContent = t(node.dataset.i18n);
    }
    for (const b of document.querySelectorAll("[data-lang]")) {
      b.setAttribute("aria-pressed", String(b.dataset.lang === lang));
    }
    render();
  }

  // What is wrong, most severe first: [level, text]. "bad" (red) stops events or devices;
  // "warn" (amber) needs attention while events still flow. Each cause is listed once.
  function problems(s) {
    const bad = [];
    const warn = [];
    const down = new Set();
    for (const d of s.destinations) {
      if (!d.connected) {
        const key = d.kind === "mqtt" ? "brokerDown" : "destDown";
        bad.push(t(key, { name: d.name, n: num(d.backlog) }));
      }
    }
    for (const d of s.devices) {
      if (!d.connected) {
        down.add(d.id);
        const key = { plc: "plcDown", printer: "printerDown" }[d.kind] || "scannerDown";
        bad.push(t(key, { id: d.id }));
      }
    }
    if (!s.health.ok && bad.length === 0) bad.push(...s.health.reasons);
    let clockAlarm = false;
    for (const a of s.alarms) {
      if (a.kind === "clock") clockAlarm = true;
      if (a.kind === "device" && down.has(a.id.replace(/^device:/, ""))) continue;
      if (a.kind === "backlog") bad.push(t("backlogFull"));
      else if (!a.acknowledged) warn.push(a.kind === "clock" ? t("clockNotSynced") : alarmText(a));
    }
    for (const d of s.destinations) {
      if (d.connected && (d.oldest_undelivered_age_s || 0) > 60) {
        warn.push(t("destBehind", { name: d.name, n: num(d.backlog) }));
      }
    }
    if (s.agent.clock_synced === false && !clockAlarm) warn.push(t("clockNotSynced"));
    return bad.map((x) => ["bad", x]).concat(warn.map((x) => ["warn", x]));
  }

  function renderHeadline(s) {
    const box = $("headline");
    if (streamDown || !s) {
      box.className = "headline " + (streamDown ? "bad" : "unknown");
      $("headline-text").textContent = t(streamDown ? "agentUnreachable" : "connecting");
      $("headline-detail").textContent = streamDown ? t("agentUnreachableDetail") : "";
      return;
    }
    const found = problems(s);
    const level = found.some((p) => p[0] === "bad") ? "bad" : found.length ? "warn" : "ok";
    box.className = "headline " + level;
    const waiting = s.destinations.reduce((sum, d) => sum + d.backlog, 0);
    if (level === "ok") {
      $("headline-text").textContent = t("allNormal");
      $("headline-detail").textContent = t("okDetail", { devices: num(s.devices.length), n: num(waiting) });
      return;
    }
    $("headline-text").textContent = found[0][1];
    let rest;
    if (level === "warn") {
      // Warnings only (listed under Alarms): say plainly that the line is recorded and delivered.
      rest = [t(found.length === 1 ? "oneWarning" : "warnings", { n: found.length }), t("eventsFlowing")];
    } else {
      rest = found.slice(1, 3).map((p) => p[1]);
      if (found.length > 3) rest.push(t("moreProblems", { n: found.length - 3 }));
    }
    $("headline-detail").textContent = rest.join(" · ");
  }

  function fill(id, nodes, emptyId) {
    $(id).replaceChildren(...nodes);
    if (emptyId) $(emptyId).hidden = nodes.length > 0;
  }

  function render() {
    const s = lastStatus;
    renderHeadline(s);
    if (!s) return;
    $("ident").textContent = s.agent.site + " / " + s.agent.node;
    $("version").textContent = "v" + s.agent.version;
    fill("alarms", s.alarms.map(alarmRow), "no-alarms");
    fill("devices", s.devices.map((d) =>
      el("tr", {},
        el("td", {}, el("span", { class: "code", text: d.id }),
          el("div", { class: "small muted", text: t(d.kind) + " · " + roleText(d.role) }),
          el("div", { class: "small values" }, ...Object.entries(d.values || {}).map(([k, v]) =>
            el("span", { class: "value" }, el("span", { class: "muted", text: k + " " }),
              el("span", { class: "code", text: v }))))),
        el("td", {}, pill(d.connected, t(d.connected ? "connected" : "disconnected")),
          d.disconnected_since ? el("div", { class: "small muted", text: t("since", { t: clock(d.disconnected_since) }) }) : ""),
        el("td", { text: ago(d.last_seen) }),
        el("td", {}, el("span", { text: num(d.errors) }),
          d.last_error ? el("div", { class: "small muted code", text: d.last_error }) : ""))));
    fill("destinations", s.destinations.map((d) =>
      el("tr", {},
        el("td", {}, el("span", { text: d.name }), el("div", { class: "small muted", text: d.kind })),
        el("td", {}, pill(d.connected, t(d.connected ? "connected" : "disconnected")),
          d.last_error ? el("div", { class: "small muted code", text: d.last_error }) : ""),
        el("td", {}, el("span", { text: num(d.backlog) }),
          d.quarantined ? el("div", {}, pill(false, t("quarantinedN", { n: num(d.quarantined) }), "warn")) : ""),
        el("td", { text: d.oldest_undelivered_age_s == null ? "–" : duration(d.oldest_undelivered_age_s) }))));
    const printers = s.printers || [];
    $("printers-card").hidden = printers.length === 0;
    fill("printers", printers.map(printerRow), null);
    const lines = s.batches || [];
    fill("lines", (lines.length ? lines : [NO_LINE]).map((l) => lineCard(l, lines.length > 1)), null);
    fill("scans", s.recent_scans.map(scanRow), "no-scans");
    choices(document.querySelector("#resend-form select"), s.destinations.map((d) => d.name));
    choices(document.querySelector("#work-order-form select[name=line]"), lines.map((l) => l.line));
    $("work-order-line").hidden = lines.length < 2; // with one line, the order is for it
    $("updated").textContent = new Date().toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB");
    const parked = s.destinations.reduce((sum, d) => sum + (d.quarantined || 0), 0);
    if (session.logged_in && parked !== quarantineShown) loadQuarantine(parked);
  }

  // One printer: can it print (or why not), its queue, and each label sent but never confirmed,
  // with Reprint and Void for a logged-in admin (never printed again by itself).
  function printerRow(p) {
    const state = p.ready === false ? pill(false, p.reason || "?") : pill(p.ready !== false, t("ready"));
    const jobs = p.undecided.map((j) => {
      const args = (action) => ({ printer: p.id, job: j.job, action });
      const row = el("div", { class: "small" },
        el("span", { class: "code", text: "#" + j.job + " " + j.code }),
        el("span", { class: "reason", text: " " + t("unconfirmed") + (j.reason ? " (" + j.reason + ")" : "") }));
      if (session.logged_in) {
        for (const action of ["reprint", "void"]) {
          const button = el("button", { type: "button", text: t(action) });
          button.addEventListener("click", () => act("label", args(action), t(action) + " #" + j.job));
          row.append(" ", button);
        }
      }
      return row;
    });
    return el("li", {}, el("span", { class: "code", text: p.id }), state,
      el("span", { class: "small muted", text: t("queuedN", { n: num(p.queued) }) + " · " + t("printedN", { n: num(p.printed) }) }),
      ...jobs);
  }

  // A node without a line (no PLC with batch signals) shows one card: no batch runs.
  const NO_LINE = { line: null, batch: null, next_work_order: null, recent_batches: [] };

  // One line's card: its current batch (with the work order waiting for the next one) and its
  // completed batches. Named by its line when the node has several.
  function lineCard(l, named) {
    const b = l.batch;
    const next = l.next_work_order;
    const pairs = b ? [
      el("dt", { text: t("workOrder") }), el("dd", { class: "code", text: b.work_order || t("none") }),
      el("dt", { text: "GTIN" }), el("dd", { class: "code", text: b.gtin }),
      el("dt", { text: t("lot") }), el("dd", { class: "code", text: b.lot }),
      el("dt", { text: t("started") }), el("dd", { text: clock(b.started) }),
      el("dt", { text: t("materials") }), el("dd", { text: num(b.materials) }),
      ...(b.planned_qty == null ? [] : [
        el("dt", { text: t("plannedQty") }), el("dd", { text: num(b.planned_qty) })]),
    ] : [];
    if (next) pairs.push(el("dt", { text: t("nextWorkOrder") }), el("dd", { class: "code", text: nextOrder(next) }));
    return el("section", { class: "card line", "data-line": l.line },
      el("h2", { text: named ? t("lineBatch", { line: l.line }) : t("batch") }),
      el("dl", { class: "pairs batch" }, ...pairs),
      b ? "" : el("p", { class: "muted no-batch", text: t("noBatch") }),
      el("h3", { text: t("recentBatches") }),
      el("ul", { class: "rows batches" }, ...l.recent_batches.map((c) =>
        el("li", {}, el("span", { class: "code", text: c.trace_code }),
          el("span", { class: "muted", text: t("quantity") + ": " + (c.quantity == null ? "–" : num(c.quantity)) }),
          el("span", { class: "muted small", text: clock(c.completed) })))));
  }

  // A select's options, replaced only when the values change (a choice made stays made).
  function choices(select, values) {
    if ([...select.options].map((o) => o.value).join("\n") !== values.join("\n")) {
      select.replaceChildren(...values.map((v) => el("option", { value: v, text: v })));
    }
  }

  // The work order waiting for the next batch: "WO-2 · 500" (number, planned quantity).
  function nextOrder(o) {
    const parts = [o.work_order || t("none")];
    if (o.lot) parts.push(o.lot);
    if (o.planned_qty != null) parts.push(num(o.planned_qty));
    return parts.join(" · ");
  }

  function alarmRow(a) {
    const serious = a.kind === "backlog" || a.kind === "device";
    const row = el("li", { class: "alarm " + (a.acknowledged ? "seen" : serious ? "active bad" : "active") },
      el("span", { text: alarmText(a) }),
      el("span", { class: "small muted", text: t("since", { t: clock(a.since) }) }));
    if (a.acknowledged) row.append(el("span", { class: "small", text: t("acknowledged") }));
    else if (session.logged_in) {
      const button = el("button", { type: "button", text: t("acknowledge") });
      button.addEventListener("click", () => act("alarm-ack", { alarm_id: a.id }, t("acknowledge")));
      row.append(button);
    }
    return row;
  }

  function scanRow(sc) {
    const label = t("type_" + sc.type.replace(".", "_"));
    const row = el("li", { class: sc.reason ? "rejected" : "" },
      el("span", { class: "muted small", text: clock(sc.time) }),
      el("span", { text: sc.device }),
      el("span", { class: "pill " + (sc.reason ? "bad" : "ok"), text: label }),
      el("span", { class: "code", text: sc.raw.split("\u001d").join("<GS>") }));
    if (sc.reason) row.append(el("span", { class: "reason", text: t("rejectedBecause", { reason: reasonText(sc) }) }));
    return row;
  }

  function message(text, isError) {
    const m = $("action-message");
    m.textContent = text;
    m.className = "message" + (isError ? " error" : "");
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": session.csrf_token || "" },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(typeof data.detail === "string" ? data.detail : String(response.status));
    return data;
  }

  async function act(name, body, what) {
    try {
      await post("/api/actions/" + name, body);
      message(t("done", { what }), false);
      if (name.startsWith("quarantine/")) loadQuarantine(-1);
    } catch (err) {
      message(t("failed", { detail: err.message }), true);
      if (err.message === "login required") await loadSession();
    }
  }

  async function loadQuarantine(marker) {
    quarantineShown = marker;
    let parked;
    try {
      const response = await fetch("/api/quarantine", { credentials: "same-origin" });
      if (!response.ok) return;
      parked = await response.json();
    } catch (err) {
      quarantineShown = -1; // try again with the next status push
      return;
    }
    fill("quarantine", parked.map((q) => {
      const release = el("button", { type: "button", text: t("release") });
      const drop = el("button", { type: "button", text: t("drop") });
      const args = { destination: q.destination, seq: q.seq };
      release.addEventListener("click", () => act("quarantine/release", args, t("release") + " #" + q.seq));
      drop.addEventListener("click", () => act("quarantine/drop", args, t("drop") + " #" + q.seq));
      return el("li", {}, el("span", { text: q.destination + " #" + q.seq }),
        el("span", { class: "code", text: q.type }),
        el("span", { class: "reason", text: q.reason }), release, drop);
    }), "no-quarantine");
  }

  async function loadSession() {
    const response = await fetch("/api/session", { credentials: "same-origin" });
    if (response.ok) session = await response.json();
    $("actions-disabled").hidden = session.actions_enabled;
    $("login-form").hidden = !session.actions_enabled || session.logged_in;
    $("actions").hidden = !session.logged_in;
    if (session.logged_in) loadQuarantine(-1);
    render();
  }

  function formValues(form) {
    const out = {};
    for (const [k, v] of new FormData(form).entries()) {
      const text = String(v).trim();
      out[k] = text === "" ? null : (form.elements[k].type === "number" ? Number(text) : text);
    }
    return out;
  }

  function wireForms() {
    $("login-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        await post("/api/login", { password: e.target.elements.password.value });
        e.target.reset();
        message(t("loggedIn"), false);
      } catch (err) {
        message(t("loginFailed", { detail: err.message }), true);
      }
      await loadSession();
    });
    $("logout").addEventListener("click", async () => {
      await post("/api/logout", {}).catch(() => null);
      message("", false);
      await loadSession();
    });
    $("work-order-form").addEventListener("submit", (e) => {
      e.preventDefault();
      act("work-order", formValues(e.target), t("workOrder"));
    });
    $("clear-work-order").addEventListener("click", () => {
      const select = document.querySelector("#work-order-form select[name=line]");
      const line = select.value || null;
      $("work-order-form").reset();
      select.value = line || ""; // the line chosen stays chosen
      act("work-order", { line }, t("clear"));
    });
    $("resend-form").addEventListener("submit", (e) => {
      e.preventDefault();
      act("resend", formValues(e.target), t("resendButton"));
    });
    for (const b of document.querySelectorAll("[data-lang]")) {
      b.addEventListener("click", () => {
        lang = b.dataset.lang;
        localStorage.setItem(LANG_KEY, lang);
        applyLanguage();
      });
    }
  }

  function connect() {
    const stream = new EventSource("/api/stream");
    stream.addEventListener("status", (e) => {
      lastStatus = JSON.parse(e.data);
      streamDown = false;
      render();
    });
    stream.addEventListener("open", () => { streamDown = false; renderHeadline(lastStatus); });
    stream.addEventListener("error", () => { streamDown = true; renderHeadline(lastStatus); });
  }

  wireForms();
  applyLanguage();
  loadSession();
  connect();
  setInterval(render, 5000); // keeps "x s ago" current between pushes; no request is made
})();
