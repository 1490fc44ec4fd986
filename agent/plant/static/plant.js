// Lineside plant view: the fleet, reconciliation and report downloads, English and Simplified
// Chinese. The trace section is the agent page's own trace.js. Every value from the store or
// the broker is inserted with textContent / DOM APIs, never as HTML.
"use strict";

(() => {
  const TEXTS = {
    en: {
      title: "Lineside plant view", connecting: "Connecting…",
      unreachable: "No connection to the plant view", allOnline: "All {n} nodes online",
      someOffline: "{n} node(s) offline: {names}", gapsFound: "{n} node(s) missing events in the store",
      storeDown: "Plant database unreachable", brokerUnknown: "live state unknown (no broker)",
      fleet: "Nodes", node: "Node", state: "State", lastSeen: "Last seen", stored: "Stored up to",
      gaps: "Missing", lag: "Delay", backlog: "Waiting", alarms: "Alarms", devices: "Devices",
      online: "online", offline: "offline", unknown: "unknown", none: "none",
      noNodes: "No node has delivered yet.",
      reconciliation: "Reconciliation", onlyDiscrepancies: "Only discrepancies", lot: "Lot",
      status: "Status", plc: "PLC", stamped: "Codes stamped", packed: "Packed", shipped: "Shipped",
      where: "Made / shipped at", reports: "Reports", noLots: "No lot completed yet.",
      status_balanced: "balanced", status_open: "open", status_discrepancy: "discrepancy",
      status_unknown: "unknown",
      control: "Control", password: "Admin password", login: "Log in", logout: "Log out",
      actionsDisabled: "Control actions are disabled (no admin password configured).",
      partitions: "Make the coming months' partitions", done: "Done: {what}",
      failed: "Refused: {detail}", loginFailed: "Login failed: {detail}",
      updated: "Updated", nodesOfTrace: "Nodes of this trace: {nodes}",
    },
    zh: {
      title: "Lineside 工厂视图", connecting: "正在连接…",
      unreachable: "与工厂视图的连接中断", allOnline: "全部 {n} 个节点在线",
      someOffline: "{n} 个节点离线：{names}", gapsFound: "{n} 个节点在数据库中缺少事件",
      storeDown: "无法连接工厂数据库", brokerUnknown: "实时状态未知（未连接消息服务器）",
      fleet: "节点", node: "节点", state: "状态", lastSeen: "最后通信", stored: "已存储至",
      gaps: "缺失", lag: "延迟", backlog: "待发送", alarms: "报警", devices: "设备",
      online: "在线", offline: "离线", unknown: "未知", none: "无",
      noNodes: "尚无节点发送数据。",
      reconciliation: "对账", onlyDiscrepancies: "仅显示差异", lot: "批号",
      status: "状态", plc: "PLC", stamped: "已赋码", packed: "已装箱", shipped: "已发货",
      where: "生产 / 发货地点", reports: "报告", noLots: "尚无完成的批次。",
      status_balanced: "平衡", status_open: "未结", status_discrepancy: "差异",
      status_unknown: "未知",
      control: "控制", password: "管理员密码", login: "登录", logout: "退出登录",
      actionsDisabled: "控制操作已禁用（未配置管理员密码）。",
      partitions: "创建未来几个月的分区", done: "完成：{what}",
      failed: "被拒绝：{detail}", loginFailed: "登录失败：{detail}",
      updated: "更新于", nodesOfTrace: "本次追溯涉及的节点：{nodes}",
    },
  };
  const LANG_KEY = "lineside.lang";
  const REFRESH_MS = 5000;
  const $ = (id) => document.getElementById(id);
  let lang = (() => {
    const saved = localStorage.getItem(LANG_KEY);
    if (saved && TEXTS[saved]) return saved;
    return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
  })();
  let csrf = null;

  function t(key, params) {
    let text = (TEXTS[lang] && TEXTS[lang][key]) || TEXTS.en[key] || key;
    for (const [name, value] of Object.entries(params || {})) text = text.split("{" + name + "}").join(String(value));
    return text;
  }
  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  const when = (iso) => (iso ? new Date(iso).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB") : "–");
  const num = (n) => (n === null || n === undefined ? "–" : new Intl.NumberFormat(lang === "zh" ? "zh-CN" : "en").format(n));

  function applyLanguage() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const b of document.querySelectorAll("[data-lang]")) b.setAttribute("aria-pressed", String(b.dataset.lang === lang));
  }

  async function getJson(path) {
    const response = await fetch(path, { credentials: "same-origin" });
    if (!response.ok) throw new Error(String(response.status));
    return response.json();
  }

  function headline(cls, text, detail) {
    $("headline").className = "headline " + cls;
    $("headline-text").textContent = text;
    $("headline-detail").textContent = detail || "";
  }

  function fleetRow(n) {
    const tr = document.createElement("tr");
    const state = n.online === true ? ["ok", t("online")] : n.online === false ? ["bad", t("offline")] : ["warn", t("unknown")];
    const pill = el("span", state[1], "pill " + state[0]);
    const gaps = (n.gaps || []).map((g) => (g[0] === g[1] ? String(g[0]) : g[0] + "–" + g[1])).join(", ");
    const backlog = Object.entries(n.backlog || {}).map(([d, c]) => d + " " + num(c)).join(", ");
    const devices = Object.entries(n.devices || {}).map(([d, up]) => d + (up ? " ✓" : " ✗")).join(", ");
    const cells = [
      el("td", n.node, "code"), null, el("td", when(n.last_seen)), el("td", num(n.stored_seq)),
      el("td", gaps || t("none"), gaps ? "gap" : "muted"), el("td", n.lag_s === null ? "–" : n.lag_s + " s"),
      el("td", backlog || "–"), el("td", num(n.alarms)), el("td", devices || "–"),
    ];
    const stateCell = document.createElement("td");
    stateCell.append(pill);
    cells[1] = stateCell;
    tr.append(...cells);
    tr.dataset.node = n.node;
    return tr;
  }

  function reportLinks(lot) {
    const td = el("td", null, "downloads");
    for (const fmt of ["csv", "json", "epcis", "fsma204"]) {
      const a = el("a", fmt.toUpperCase());
      a.href = "/api/report?" + new URLSearchParams({ lot: lot, format: fmt }).toString();
      a.setAttribute("download", "");
      td.append(a);
    }
    return td;
  }

  function lotRow(r) {
    const tr = document.createElement("tr");
    const status = el("td");
    status.append(el("span", t("status_" + r.status), "pill " + (r.status === "discrepancy" ? "bad" : r.status === "balanced" ? "ok" : "warn")));
    for (const d of r.discrepancies || []) status.append(el("div", "! " + d, "small message error"));
    const lotKey = r.gtin ? r.gtin + "|" + r.lot : r.lot;
    tr.append(
      el("td", (r.gtin ? r.gtin + " · " : "") + r.lot, "code"), status, el("td", num(r.plc_quantity)),
      el("td", num(r.codes_stamped)), el("td", num(r.units_packed)), el("td", num(r.units_shipped)),
      el("td", (r.made_at || []).join(", ") + " → " + ((r.shipped_from || []).join(", ") || "–")),
      reportLinks(lotKey),
    );
    return tr;
  }

  async function refresh() {
    let fleet;
    try {
      fleet = await getJson("/api/fleet");
    } catch (err) {
      headline(String(err.message) === "503" ? "bad" : "unknown", String(err.message) === "503" ? t("storeDown") : t("unreachable"));
      return;
    }
    $("fleet").replaceChildren(...fleet.map(fleetRow));
    $("no-nodes").hidden = fleet.length > 0;
    const offline = fleet.filter((n) => n.online === false).map((n) => n.node);
    const gappy = fleet.filter((n) => (n.gaps || []).length);
    if (offline.length) headline("bad", t("someOffline", { n: offline.length, names: offline.join(", ") }));
    else if (gappy.length) headline("warn", t("gapsFound", { n: gappy.length }));
    else headline("ok", t("allOnline", { n: fleet.length }), fleet.some((n) => n.online === null) ? t("brokerUnknown") : "");
    const only = $("only-discrepancies").checked ? "?status=discrepancy" : "";
    try {
      const lots = await getJson("/api/reconciliation" + only);
      $("reconciliation").replaceChildren(...lots.map(lotRow));
      $("no-lots").hidden = lots.length > 0;
    } catch (err) { /* shown by the headline on the next round */ }
    $("updated").textContent = new Date().toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB");
  }

  async function session() {
    const s = await getJson("/api/session");
    csrf = s.csrf_token;
    $("version").textContent = "lineside " + s.version;
    $("actions-disabled").hidden = s.actions_enabled;
    $("login-form").hidden = !s.actions_enabled || s.logged_in;
    $("actions").hidden = !s.logged_in;
  }

  async function post(path, body) {
    const headers = { "Content-Type": "application/json" };
    if (csrf) headers["X-CSRF-Token"] = csrf;
    const response = await fetch(path, { method: "POST", credentials: "same-origin", headers, body: JSON.stringify(body || {}) });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.detail || String(response.status));
    return data;
  }

  function message(text, error) {
    const m = $("action-message");
    m.textContent = text;
    m.className = "message" + (error ? " error" : "");
  }

  function watchTrace() {
    // trace.js fills #trace-result; name the nodes the answer crossed, from the same API
    $("trace-form").addEventListener("submit", async () => {
      const code = String(new FormData($("trace-form")).get("code") || "").trim();
      $("trace-nodes").textContent = "";
      if (!code) return;
      try {
        const trace = await getJson("/api/trace/" + encodeURIComponent(code));
        $("trace-nodes").textContent = t("nodesOfTrace", { nodes: (trace.nodes || []).join(", ") });
      } catch (err) { /* trace.js says why */ }
    });
  }

  document.addEventListener("DOMContentLoaded", async () => {
    applyLanguage();
    for (const b of document.querySelectorAll("[data-lang]")) {
      b.addEventListener("click", () => {
        lang = b.dataset.lang;
        localStorage.setItem(LANG_KEY, lang);
        applyLanguage();
        refresh();
      });
    }
    $("only-discrepancies").addEventListener("change", refresh);
    $("login-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        const data = await post("/api/login", { password: String(new FormData(e.target).get("password") || "") });
        csrf = data.csrf_token;
        e.target.reset();
        message("");
        await session();
      } catch (err) { message(t("loginFailed", { detail: err.message }), true); }
    });
    $("logout").addEventListener("click", async () => {
      try { await post("/api/logout"); } catch (err) { /* the session ends anyway */ }
      csrf = null;
      await session();
    });
    $("partitions").addEventListener("click", async () => {
      try {
        const data = await post("/api/actions/partitions");
        message(t("done", { what: (data.created || []).join(", ") || t("none") }));
      } catch (err) { message(t("failed", { detail: err.message }), true); }
    });
    watchTrace();
    try {
      const info = await getJson("/api/info");
      $("site").textContent = info.site;
    } catch (err) { /* the headline says it */ }
    try { await session(); } catch (err) { /* idem */ }
    await refresh();
    setInterval(refresh, REFRESH_MS);
  });
})();
