// Lineside status page, trace section: asks GET /api/trace/{code} and shows the chain.
// Every value from the history is inserted with textContent / DOM APIs, never as HTML.
"use strict";

(() => {
  const TEXTS = {
    en: {
      notFound: "No history of this code on this node.",
      notFoundPlant: "No node of this plant has a history of this code.",
      notReceivedPlant: "receipt not scanned at any node",
      failed: "Trace failed: {why}",
      batch: "Batch", product: "Product", lot: "Lot", serial: "Serial", workOrder: "Work order",
      shift: "Shift", operator: "Operator", started: "Started", completed: "Completed",
      quantity: "Quantity (PLC)", params: "Parameters", materials: "Materials",
      received: "received", notReceived: "receipt not scanned here", shipments: "Shipments",
      reconciliation: "Reconciliation", open: "open batch", matched: "Matched {kind} {value}",
      title: "Trace", label: "Code, SSCC, Digital Link or lot", go: "Trace",
      packedInto: "Packed into", pallet: "Pallet SSCC", fromBatch: "from batch",
    },
    zh: {
      notFound: "本节点没有此代码的记录。",
      notFoundPlant: "本工厂没有任何节点有此代码的记录。",
      notReceivedPlant: "没有任何节点扫描收货",
      failed: "追溯失败：{why}",
      batch: "批次", product: "产品", lot: "批号", serial: "序列号", workOrder: "工单",
      shift: "班次", operator: "操作员", started: "开始", completed: "完成",
      quantity: "数量（PLC）", params: "工艺参数", materials: "物料",
      received: "收货", notReceived: "未在此处扫描收货", shipments: "发货",
      reconciliation: "对账", open: "进行中的批次", matched: "匹配 {kind} {value}",
      title: "追溯", label: "追溯码、SSCC、数字链接或批号", go: "追溯",
      packedInto: "装入", pallet: "托盘 SSCC", fromBatch: "来自批次",
    },
  };
  const $ = (id) => document.getElementById(id);
  // the plant view serves this file too: its answers come from every node, not "this node"
  const scoped = (key) => (document.body.dataset.scope === "plant" ? key + "Plant" : key);

  function t(key, params) {
    const saved = localStorage.getItem("lineside.lang");
    const lang = saved && TEXTS[saved] ? saved : (document.documentElement.lang || "en").startsWith("zh") ? "zh" : "en";
    let text = TEXTS[lang][key] || TEXTS.en[key] || key;
    for (const [name, value] of Object.entries(params || {})) text = text.split("{" + name + "}").join(String(value));
    return text;
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function pairs(rows) {
    const dl = el("dl", null, "pairs");
    for (const [key, value] of rows) {
      if (value === undefined || value === null || value === "") continue;
      dl.append(el("dt", t(key)), el("dd", value));
    }
    return dl;
  }

  function ident(item) {
    return [item.gtin, item.lot && "lot " + item.lot, item.serial && "serial " + item.serial, item.sscc && "SSCC " + item.sscc]
      .filter(Boolean).join(" · ") || item.raw || "?";
  }

  function where(e) { return (e.time || "") + " · " + (e.node || "") + " " + (e.source || ""); }

  function batchBlock(b) {
    const box = el("div", null, "trace-batch");
    box.append(el("h3", t("batch") + " " + (b.trace_code || b.lot + " (" + t("open") + ")")));
    const params = Object.entries(b.params || {}).map(([k, v]) => k + "=" + v).join(", ");
    box.append(pairs([
      ["product", b.gtin], ["lot", b.lot], ["serial", b.serial], ["workOrder", b.work_order],
      ["shift", b.shift], ["operator", b.operator], ["started", b.started], ["completed", b.completed],
      ["quantity", b.quantity], ["params", params],
    ]));
    box.append(el("h4", t("materials")));
    const mats = el("ul", null, "rows");
    for (const m of b.materials || []) {
      const li = el("li", ident(m));
      const inner = el("ul");
      for (const r of m.received || []) inner.append(el("li", t("received") + " " + where(r) + " · " + ident(r)));
      if (!(m.received || []).length) inner.append(el("li", t(scoped("notReceived")), "muted"));
      li.append(inner);
      mats.append(li);
    }
    box.append(mats);
    box.append(el("h4", t("shipments")));
    const ships = el("ul", null, "rows");
    for (const s of b.shipments || []) ships.append(el("li", where(s) + " · " + ident(s) + (s.quantity ? " × " + s.quantity : "")));
    box.append(ships);
    if ((b.packed_into || []).length) box.append(pairs([["packedInto", b.packed_into.join(", ")]]));
    const rec = b.reconciliation;
    if (rec) {
      const p = el("p", t("reconciliation") + ": " + rec.status + " · PLC " + rec.plc_quantity + " · " + rec.units_shipped, rec.discrepancies.length ? "message error" : "");
      box.append(p);
      for (const d of rec.discrepancies) box.append(el("p", "! " + d, "message error"));
    }
    return box;
  }

  // An SSCC's children, each item with the batch it came from.
  function palletBlock(p) {
    const box = el("div", null, "trace-batch");
    box.append(el("h3", t("pallet") + " " + p.sscc));
    const rows = el("ul", null, "rows");
    for (const c of p.children || []) {
      const from = (c.batches || []).map((x) => t("fromBatch") + " " + x.trace_code).join(" · ");
      rows.append(el("li", ident(c) + (from ? " · " + from : "")));
    }
    box.append(rows);
    return box;
  }

  async function runTrace(code) {
    const out = $("trace-result");
    out.replaceChildren(el("p", "…", "muted"));
    let response;
    try {
      response = await fetch("/api/trace/" + encodeURIComponent(code), { credentials: "same-origin" });
    } catch (err) {
      out.replaceChildren(el("p", t("failed", { why: err }), "message error"));
      return;
    }
    if (response.status === 404) { out.replaceChildren(el("p", t(scoped("notFound")), "muted")); return; }
    if (!response.ok) { out.replaceChildren(el("p", t("failed", { why: response.status }), "message error")); return; }
    const trace = await response.json();
    const nodes = [el("p", t("matched", { kind: trace.matched.kind, value: trace.matched.value }), "muted")];
    for (const p of trace.pallets || []) nodes.push(palletBlock(p));
    for (const b of trace.batches || []) nodes.push(batchBlock(b));
    out.replaceChildren(...nodes);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = $("trace-form");
    if (!form) return;
    $("trace-title").textContent = t("title");
    $("trace-label").textContent = t("label");
    $("trace-go").textContent = t("go");
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const code = String(new FormData(form).get("code") || "").trim();
      if (code) runTrace(code);
    });
  });
})();
