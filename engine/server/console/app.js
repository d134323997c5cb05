// The Leadscore console: one page per concern, each reading the server's JSON API (the gRPC
// answers as canonical JSON) and, for live panels, its server-sent events.
"use strict";

const BANDS = ["BAND_UNQUALIFIED", "BAND_WARM", "BAND_SALES_READY", "BAND_HOT"];
const BAND_NAMES = { BAND_UNQUALIFIED: "unqualified", BAND_WARM: "warm", BAND_SALES_READY: "sales-ready", BAND_HOT: "hot" };
const BAND_COLORS = { BAND_UNQUALIFIED: "#9aa5b5", BAND_WARM: "#f2b33d", BAND_SALES_READY: "#3aa76d", BAND_HOT: "#e4572e" };
// `CallResult` order, as the wallboard's per-minute outcomes come.
const RESULTS = ["no answer", "busy", "voicemail", "not interested", "callback", "converted", "lost", "wrong number", "do not call", "abandoned"];
// One hue each, told apart at a glance (no two greys): unanswered calls cool, decided ones warm.
const RESULT_COLORS = ["#9aa5b5", "#5b8def", "#8e6fd8", "#f2b33d", "#28b5b5", "#3aa76d", "#e4572e", "#a0522d", "#1d2433", "#d6336c"];
// The results at which a person answered (the wallboard's contact rate; wrong numbers aside).
const ANSWERED = ["not interested", "callback", "converted", "lost", "do not call", "abandoned"].map((r) => RESULTS.indexOf(r));
const REASONS = {
  outsideCallingWindow: "outside calling window", holiday: "holiday", recycling: "recycling", maxAttempts: "max attempts",
  doNotCall: "do not call", missingConsent: "missing consent", leased: "leased", filteredOut: "campaign filter", noPhone: "no phone",
  notRoutableToAgent: "kept for an agent", finished: "finished", heldForBetterHour: "waiting for a better hour",
};

const $ = (selector, root = document) => root.querySelector(selector);
const fmt = (n, digits = 0) => Number(n).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const pct = (x) => (x === undefined || x === null ? "–" : `${(x * 100).toFixed(1)}%`);
// The time of day, with the date when it was not today.
const time = (iso) => {
  if (!iso) return "–";
  const at = new Date(iso);
  return at.toDateString() === new Date().toDateString() ? at.toLocaleTimeString() : at.toLocaleString();
};
// A score with one decimal, cut rather than rounded, so that 74.96 never reads as a hot 75.0.
const points = (x) => fmt(Math.floor(x * 10 + 1e-9) / 10, 1);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name === "style") node.style.cssText = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function bandPill(band) {
  // A lead scored for the first time crosses from no band: it is new.
  return el("span", { class: "band-pill", style: `--band-color:${BAND_COLORS[band] || "#9aa5b5"}`, "data-band": band }, BAND_NAMES[band] || "new");
}

// Who a lead is: its display attributes ("Ada Lovelace · Acme · CTO") over its id, or the id.
function who(card, leadId) {
  const shown = (card?.display || []).map((d) => d.value).filter(Boolean);
  if (!shown.length) return el("span", { class: "who" }, leadId);
  return el("span", { class: "who" }, el("strong", {}, shown[0]), shown.length > 1 ? ` · ${shown.slice(1).join(" · ")}` : "", el("small", {}, leadId));
}

// Why a lead scores what it does, in plain words: its three largest factors with their points,
// "role = CTO (C-level) +15 · 3× page view /pricing over 14 days, last today +37".
function why(score) {
  const factors = (score.scorers || []).flatMap((s) => s.topFactors || []);
  if (!factors.length) {
    return (score.scorers || []).filter((s) => s.contribution).map((s) => `${s.scorer} ${signed(s.contribution)}`).join(" · ") || "–";
  }
  return [...factors].sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution)).slice(0, 3)
    .map((f) => `${f.detail || f.feature} ${signed(f.contribution)}`).join(" · ");
}

// Points with their sign, rounded: "+15", "-10".
function signed(points) {
  return `${points < 0 ? "-" : "+"}${Math.round(Math.abs(points))}`;
}

// A lead's calls so far: "none", or "3 · no answer 2 h ago".
function calls(dialing) {
  if (!dialing || !dialing.attempts) return "none";
  const ago = dialing.lastCalledAt ? ` ${since(dialing.lastCalledAt)}` : "";
  return `${dialing.attempts} · ${(dialing.lastOutcome || "").replaceAll("_", " ")}${ago}`;
}

// When an agent may call the lead, in words: "now (09:41 local)", "in 2 h (recycling)", "never (do not call)".
function nextCall(dialing) {
  if (!dialing) return "–";
  const why = (dialing.reason || "").replaceAll("_", " ");
  const local = dialing.localTime ? ` (${dialing.localTime.slice(11, 16)} local)` : "";
  if (dialing.callableNow) return `now${local}`;
  if (!dialing.nextCallableAt) return `never (${why})`;
  return `${until(dialing.nextCallableAt)} (${why})`;
}

function since(at) {
  const ms = Date.now() - Date.parse(at);
  return ms < 60000 ? "just now" : `${span(ms)} ago`;
}

function until(at) {
  const ms = Date.parse(at) - Date.now();
  return ms <= 0 ? "now" : `in ${span(ms)}`;
}

function span(ms) {
  const minutes = Math.max(0, Math.round(ms / 60000));
  if (minutes < 1) return "<1 min";
  if (minutes < 60) return `${minutes} min`;
  if (minutes < 48 * 60) return `${Math.round(minutes / 60)} h`;
  return `${Math.round(minutes / 1440)} d`;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

// ---- talking to the server -------------------------------------------------------------

const token = {
  get: () => sessionStorage.getItem("leadscore-token") || "",
  set: (value) => sessionStorage.setItem("leadscore-token", value),
};

function headers() {
  return token.get() ? { authorization: `Bearer ${token.get()}` } : {};
}

class Refused extends Error {
  constructor(status, body) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.code = body.code;
  }
}

async function api(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== undefined));
  const response = await fetch(`/api/${path}${query.size ? `?${query}` : ""}`, { headers: headers() });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Refused(response.status, body);
  return body;
}

// Server-sent events read through fetch, so that the token goes in a header as on every other
// call. Reconnects after a break until `stop` is called.
function watch(path, params, onEvent) {
  const controller = new AbortController();
  let stopped = false;
  const run = async () => {
    while (!stopped) {
      try {
        const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== ""));
        const response = await fetch(`/api/watch/${path}?${query}`, { headers: headers(), signal: controller.signal });
        if (!response.ok) throw new Refused(response.status, await response.json().catch(() => ({})));
        document.body.dataset.live = path;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let name = "message";
            const data = [];
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) name = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
            }
            if (data.length) onEvent(name, name === "error" ? data.join("\n") : JSON.parse(data.join("\n")));
          }
        }
      } catch (error) {
        if (stopped) return;
        if (error instanceof Refused) return showError(error);
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  };
  run();
  return () => {
    stopped = true;
    controller.abort();
  };
}

function showError(error) {
  const box = $("#error");
  if (error instanceof Refused && error.status === 401) {
    box.textContent = "This server wants a token: press Token above.";
    $("#token-dialog").showModal();
  } else {
    box.textContent = error instanceof Refused ? `${error.code}: ${error.message}` : String(error);
  }
  box.hidden = false;
}

// ---- charts ------------------------------------------------------------------------------

const charts = {};

function chart(id, config) {
  charts[id]?.destroy();
  config.options = { animation: false, responsive: true, maintainAspectRatio: true, ...config.options };
  charts[id] = new Chart($(`#${id}`), config);
  return charts[id];
}

// ---- pages -------------------------------------------------------------------------------

function campaign() {
  return $("#campaign").value;
}

// Shows a page's empty state with `message` (HTML of our own) instead of its panels, or the
// panels when `message` is null.
function empty(page, message) {
  const box = $(`#page-${page} [data-empty]`);
  box.hidden = message === null;
  if (message !== null) box.innerHTML = message;
  for (const full of document.querySelectorAll(`#page-${page} [data-full]`)) full.hidden = message !== null;
}

const NO_LEADS =
  "No leads yet. Load some with <code>leadscore import --csv leads.csv --id-column id</code> or <code>LeadService.UpsertLeads</code>; this page fills as they are scored.";

// A lead to open once the top leads page is drawn (an alert or a routing decision was clicked).
let pendingLead = null;

function openFromList(leadId) {
  pendingLead = leadId;
  if (location.hash === "#top") show();
  else location.hash = "#top";
}

// The top leads as last drawn: WatchTopLeads messages keep them (see applyTopChange).
let topRows = [];

// One WatchTopLeads message applied to the list: a snapshot replaces it; a lead enters at its
// rank, leaves, or moves to its rank with its new score.
function applyTopChange(rows, message) {
  if (message.snapshot) return message.snapshot.leads || [];
  const without = (id) => rows.filter((r) => r.score.leadId !== id);
  const at = (list, ranked) => [...list.slice(0, ranked.rank - 1), ranked, ...list.slice(ranked.rank - 1)];
  if (message.entered) return at(rows, message.entered);
  if (message.moved) return at(without(message.moved.score.leadId), message.moved);
  if (message.left) return without(message.left);
  return rows;
}

function renderTop() {
  const search = $("#top-search").value.trim().toLowerCase();
  const words = (r) => [r.score.leadId, ...(r.card?.display || []).map((d) => d.value)].join(" ").toLowerCase();
  const rows = topRows.map((r, i) => ({ ...r, rank: i + 1 })).filter((r) => !search || words(r).includes(search));
  fill($("#top-leads tbody"), rows.map((r) => {
    const row = el("tr", { "data-lead": r.score.leadId },
      el("td", { class: "num" }, r.rank), el("td", {}, who(r.card, r.score.leadId)), el("td", { class: "num", "data-score": "" }, points(r.score.score)),
      el("td", {}, bandPill(r.score.band)), el("td", {}, r.score.grade), el("td", { class: "why" }, why(r.score)),
      el("td", {}, calls(r.dialing)), el("td", {}, nextCall(r.dialing)));
    row.addEventListener("click", () => openLead(r.score.leadId));
    return row;
  }));
  if (!rows.length) fill($("#top-leads tbody"), [el("tr", {}, el("td", { colspan: 8, class: "hint" }, "No lead matches these filters."))]);
}

const pages = {
  // The histogram's bins are 5 points wide, so each lies in one band and the thresholds fall
  // on their edges; its leads count on a log scale, so that a few hot leads show beside
  // thousands without points.
  async scores() {
    const whole = await api("distribution", { campaign: campaign(), bins: 1 });
    thresholdsOf[campaign()] = bandsOf(whole.thresholds);
    if (!whole.leads) return empty("scores", NO_LEADS);
    const d = await api("distribution", { campaign: campaign(), bins: Math.min(1000, Math.max(1, Math.ceil(whole.bins[0].high / 5))) });
    empty("scores", null);
    $("#scores-total").textContent = fmt(d.leads);
    // A band's tile opens its leads.
    $("#band-figures").replaceChildren(
      ...d.bands.map((b) => {
        const tile = el("a", { class: "figure band", href: "#top", style: `--band-color:${BAND_COLORS[b.band]}`, "data-band-count": b.band },
          el("span", { class: "label" }, `${BAND_NAMES[b.band]} ›`), el("span", { class: "value" }, fmt(b.leads)));
        tile.addEventListener("click", () => ($("#top-filters select[name=band]").value = b.band));
        return tile;
      }),
    );
    $("#scores-zero").textContent = fmt(d.withoutPoints);
    $("#scores-new-hot").textContent = `${fmt(d.newHotLastDay)} · ${fmt(d.newHotLastWeek)}`;
    const width = d.bins[0].high - d.bins[0].low;
    // Leads without any points stand apart, left of the first bin (which holds the rest of it).
    const binned = (b, i, band) => (b.byBand[band] || 0) - (i === 0 && band === 0 ? d.withoutPoints : 0) || null;
    chart("histogram", {
      type: "bar",
      data: {
        labels: ["no points", ...d.bins.map((b) => `${fmt(b.low)}–${fmt(b.high)}`)],
        datasets: [
          { label: "no points", data: [d.withoutPoints || null], backgroundColor: "#c9d0da", grouped: false },
          ...BANDS.map((band, i) => ({ label: BAND_NAMES[band], data: [null, ...d.bins.map((b, at) => binned(b, at, i))], backgroundColor: BAND_COLORS[band], grouped: false })),
        ],
      },
      options: { scales: { x: { title: { display: true, text: "composite score" } }, y: { type: "logarithmic", title: { display: true, text: "leads (log scale)" } } } },
      // Bin i is centred on index i + 1 (after "no points"): a score sits at score / width + 0.5.
      plugins: [bandLines(bandsOf(d.thresholds), "x", (value) => value / width + 0.5)],
    });
    // Fit letter down, engagement number across: the best leads are top left.
    const count = Object.fromEntries(d.grades.map((g) => [g.grade, g.leads]));
    const most = Math.max(...d.grades.map((g) => g.leads));
    const [letters, numbers] = [["A", "B", "C", "D", "-"], ["1", "2", "3", "4", "-"]];
    fill($("#grades tbody"), letters.map((letter) =>
      el("tr", {}, el("th", {}, letter), ...numbers.map((n) => {
        const leads = count[letter + n] || 0;
        const shade = leads ? 0.12 + (0.7 * leads) / most : 0;
        return el("td", { class: "num", "data-grade": letter + n, style: `background:rgba(47,111,237,${shade.toFixed(2)})` }, leads ? fmt(leads) : "");
      }))));
  },

  // The top leads live: a WatchTopLeads stream keeps the list (callable-now lists, which change
  // with the clock, are read again every 15 s instead).
  async top() {
    const form = new FormData($("#top-filters"));
    const params = {
      campaign: campaign(), band: form.get("band"), attribute: form.get("attribute"), equals: form.get("equals"), limit: form.get("limit"),
      callable_now: form.get("callable_now") === "true", exclude_finished: form.get("exclude_finished") === "true",
      // Typing narrows the rows shown; Enter (or Filter) asks the server, which reads every lead.
      search: $("#top-search").value.trim(),
    };
    const [stats, accounts] = await Promise.all([api("stats"), api("accounts", { campaign: campaign() })]);
    if (!stats.leads) return empty("top", NO_LEADS);
    empty("top", null);
    $("#accounts-empty").hidden = accounts.accounts.length > 0;
    fill($("#top-accounts tbody"), accounts.accounts.map((a) =>
      el("tr", { "data-account": a.account.account },
        el("td", { class: "num" }, a.rank), el("td", {}, a.account.account), el("td", { class: "num" }, fmt(a.account.score, 1)),
        el("td", {}, bandPill(a.account.band)), el("td", { class: "num" }, a.account.leads),
        el("td", {}, a.account.topLeads.map((l) => `${l.leadId} (${fmt(l.score, 1)})`).join(", ")))));
    if (params.callable_now) {
      const load = async () => {
        topRows = (await api("top", params)).leads;
        renderTop();
      };
      await load();
      const timer = setInterval(() => load().catch(showError), 15000);
      return () => clearInterval(timer);
    }
    // Resolves once the first list is drawn, so the page counts as loaded with it.
    let drawn;
    const first = new Promise((resolve) => (drawn = resolve));
    const stop = watch("top", params, (name, message) => {
      if (name === "error") return showError(new Error(message));
      topRows = applyTopChange(topRows, message);
      if (message.snapshot || message.caughtUp) {
        renderTop();
        drawn();
      }
    });
    await first;
    if (pendingLead) openLead(pendingLead).catch(showError);
    pendingLead = null;
    return stop;
  },

  async alerts() {
    // The latest crossings first (they survive a reload), then live ones.
    return watch("scores", { campaign: campaign(), recent: 200 }, (name, crossing) => {
      if (name !== "crossing") return;
      $("#alerts-waiting").hidden = true;
      const row = el("tr", { class: "new-row", "data-lead": crossing.leadId },
        el("td", {}, time(crossing.at)), el("td", {}, who(crossing.card, crossing.leadId)), el("td", {}, bandPill(crossing.from)),
        el("td", {}, bandPill(crossing.to)), el("td", { class: "num" }, points(crossing.score)));
      row.addEventListener("click", () => openFromList(crossing.leadId));
      $("#alerts tbody").prepend(row);
      while ($("#alerts tbody").children.length > 200) $("#alerts tbody").lastChild.remove();
      $("#alerts-count").textContent = $("#alerts tbody").children.length;
    });
  },

  async wallboard() {
    return watch("wallboard", { campaign: campaign() }, (name, board) => {
      if (name === "wallboard") drawWallboard(board);
    });
  },

  // The A/B figures are read again every 5 s; decisions stream as they are made.
  async routing() {
    const armName = (arm) => (arm === "ROUTING_ARM_PAIRING" ? "pairing" : arm === "ROUTING_ARM_CONTROL" ? "control" : "–");
    const drawArms = async () => {
      const stats = await api("stats");
      const arms = stats.routingArms.filter((a) => a.arm !== "ROUTING_ARM_UNSPECIFIED");
      $("#arms-empty").hidden = arms.some((a) => a.decisions > 0);
      fill($("#arm-table tbody"), arms.map((a) =>
        el("tr", { "data-arm": a.arm }, el("td", {}, armName(a.arm)), el("td", { class: "num" }, fmt(a.decisions)),
          el("td", { class: "num" }, fmt(a.decidedCalls)), el("td", { class: "num" }, fmt(a.conversions)), el("td", { class: "num" }, pct(a.conversionRate)))));
      updateChart("arms", {
        data: { labels: arms.map((a) => armName(a.arm)), datasets: [{ label: "conversion rate", data: arms.map((a) => a.conversionRate * 100), backgroundColor: ["#2f6fed", "#9aa5b5"] }] },
        options: { plugins: { legend: { display: false } }, scales: { y: { title: { display: true, text: "% of decided calls" }, beginAtZero: true } } },
      });
    };
    await drawArms();
    const timer = setInterval(() => drawArms().catch(showError), 5000);
    // Where the decisions went since the page opened, most first: one agent taking every hot
    // lead shows at a glance.
    const tally = new Map();
    const stop = watch("routing", {}, (name, d) => {
      if (name !== "decision") return;
      $("#decisions-waiting").hidden = true;
      const target = d.target?.agentId ? `agent ${d.target.agentId}` : d.target?.queue ? `queue ${d.target.queue}` : "–";
      tally.set(target, (tally.get(target) || 0) + 1);
      $("#decision-tally").textContent = `Since this page opened: ${[...tally].sort((a, b) => b[1] - a[1]).map(([t, n]) => `${t} ${n}`).join(" · ")}`;
      const runnerUp = d.runnerUpAgentId ? ` (next best ${d.runnerUpAgentId} ${pct(d.runnerUpConversion)})` : "";
      const row = el("tr", { class: "new-row", "data-decision": d.decisionId, "data-lead": d.leadId, title: (d.reasons || []).join("\n") },
        el("td", {}, time(d.decidedAt)), el("td", {}, who(d.card, d.leadId)), el("td", {}, bandPill(d.band), " ", points(d.score)),
        el("td", {}, target), el("td", {}, armName(d.arm)), el("td", {}, d.rule || "–"),
        el("td", {}, d.expectedConversion ? `${pct(d.expectedConversion)}${runnerUp}` : "–"),
        el("td", { class: "why" }, (d.reasons || []).slice(1).join("; ") || "–"));
      row.addEventListener("click", () => openFromList(d.leadId));
      $("#decisions tbody").prepend(row);
      while ($("#decisions tbody").children.length > 200) $("#decisions tbody").lastChild.remove();
    });
    return () => {
      clearInterval(timer);
      stop();
    };
  },

  async scorers() {
    const { scorers } = await api("scorers");
    if (!scorers.length) return empty("scorers", "No scorer plugin is loaded. Put scorer libraries in <code>plugins.dir</code> and call <code>AdminService.ReloadScorers</code>.");
    empty("scorers", null);
    const status = (s) => s.replace("SCORER_STATUS_", "").toLowerCase();
    fill($("#scorers tbody"), scorers.map((s) =>
      el("tr", { "data-scorer": s.name || s.path },
        el("td", {}, s.name || "–"), el("td", {}, s.version || "–"), el("td", { title: s.statusReason }, status(s.status)),
        el("td", { class: "num" }, fmt(s.calls)), el("td", { class: "num" }, fmt(s.faults)), el("td", { class: "num" }, fmt(s.nsPerLead, 1)),
        el("td", { class: "hint" }, s.path))));
    const loaded = scorers.filter((s) => s.name);
    chart("scorer-speed", {
      type: "bar",
      data: { labels: loaded.map((s) => s.name), datasets: [{ label: "ns per lead", data: loaded.map((s) => s.nsPerLead), backgroundColor: "#2f6fed" }] },
      options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { title: { display: true, text: "ns per lead" } } } },
    });
  },

  async validation() {
    const report = await api("validation", { campaign: campaign() });
    if (!report.sections.length) {
      return empty("validation", "No call with an outcome yet. As the dialer reports outcomes (<code>DialerService.ReportOutcome</code>), this page shows how well the scores foretold them.");
    }
    empty("validation", null);
    $("#sections").replaceChildren(...report.sections.map((s, i) => drawSection(s, i)));
  },
};

// The 95% half-width of a ROC AUC from this many converted and unconverted leads (Hanley and
// McNeil, 1982): how far the figure may be from the truth by chance alone.
function aucMargin(auc, converted, not) {
  const q1 = auc / (2 - auc);
  const q2 = (2 * auc * auc) / (1 + auc);
  const variance = (auc * (1 - auc) + (converted - 1) * (q1 - auc * auc) + (not - 1) * (q2 - auc * auc)) / (converted * not);
  return 1.96 * Math.sqrt(Math.max(variance, 0));
}

// Below this margin an AUC says something; above it, the page warns.
const AUC_MARGIN_WARNING = 0.05;

// A bar's calls: "3 of 40 converted", or "no calls" where a rate of 0% would mislead.
const callsOf = (bucket) => (bucket.leads ? `${fmt(bucket.conversions)}/${fmt(bucket.leads)}` : "no calls");

function drawSection(s, i) {
  const id = (name) => `${name}-${i}`;
  const title = `${s.shadow ? "Shadow" : "Live"} scoring, configuration version ${s.configVersion}`;
  const converted = s.all.conversions;
  const margin = s.rocAuc === undefined ? undefined : aucMargin(s.rocAuc, converted, s.all.leads - converted);
  const warning = margin === undefined || margin > AUC_MARGIN_WARNING
    ? `Only ${fmt(s.all.leads)} called leads, ${fmt(converted)} converted: by chance alone the AUC could be off by ${margin === undefined ? "anything" : `±${fmt(margin, 2)} (95%)`}. Read AUC and lift as a first hint until more calls are decided.`
    : null;
  const section = el("div", { class: "panel", "data-section": i },
    el("h2", {}, title),
    el("div", { class: "figures" },
      figure("Called leads", fmt(s.all.leads), id("leads")), figure("Converted", pct(s.all.conversionRate), id("rate")),
      figure("Top-decile lift", s.topDecileLift === undefined ? "–" : `${fmt(s.topDecileLift, 2)}×`, id("lift")),
      figure("ROC AUC", s.rocAuc === undefined ? "–" : `${fmt(s.rocAuc, 3)}${margin === undefined ? "" : ` ±${fmt(margin, 2)}`}`, id("auc"))),
    ...(warning ? [el("p", { class: "warning", id: id("sample") }, warning)] : []),
    el("div", { class: "grid" },
      el("div", {}, el("h3", {}, "Conversion by band (converted/called on each bar)"),
        el("canvas", { id: id("bands"), "data-counts": s.bands.map((b) => callsOf(b.bucket)).join(" ") })),
      el("div", {}, el("h3", {}, "Conversion by score decile, best first"),
        el("canvas", { id: id("deciles"), "data-counts": s.deciles.map(callsOf).join(" ") })),
      ...(s.calibration.length ? [el("div", {}, el("h3", {}, "Calibration of the predictive probability"), el("canvas", { id: id("calibration") }))] : [])));
  requestAnimationFrame(() => {
    chart(id("bands"), {
      type: "bar",
      data: { labels: s.bands.map((b) => BAND_NAMES[b.band]), datasets: [{ label: "conversion", data: s.bands.map((b) => b.bucket.conversionRate * 100), backgroundColor: s.bands.map((b) => BAND_COLORS[b.band]) }] },
      options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, grace: "15%", title: { display: true, text: "% converted" } } } },
      plugins: [barLabels(s.bands.map((b) => callsOf(b.bucket)))],
    });
    chart(id("deciles"), {
      type: "bar",
      data: { labels: s.deciles.map((_, d) => d + 1), datasets: [{ label: "conversion", data: s.deciles.map((d) => d.conversionRate * 100), backgroundColor: "#2f6fed" }] },
      options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, grace: "15%", title: { display: true, text: "% converted" } } } },
      plugins: [barLabels(s.deciles.map(callsOf))],
    });
    if (s.calibration.length) {
      chart(id("calibration"), {
        type: "scatter",
        data: {
          datasets: [
            { label: "deciles", data: s.calibration.map((c) => ({ x: c.meanProbability, y: c.conversionRate })), backgroundColor: "#2f6fed", showLine: true },
            { label: "perfect", data: [{ x: 0, y: 0 }, { x: 1, y: 1 }], borderColor: "#9aa5b5", showLine: true, pointRadius: 0 },
          ],
        },
        options: { scales: { x: { min: 0, max: 1, title: { display: true, text: "mean predicted probability" } }, y: { min: 0, max: 1, title: { display: true, text: "conversion rate" } } } },
      });
    }
  });
  return section;
}

function figure(label, value, id) {
  return el("div", { class: "figure", id }, el("span", { class: "label" }, label), el("span", { class: "value" }, value));
}

function drawWallboard(board) {
  const last60 = board.minutes;
  const converted = RESULTS.indexOf("converted");
  const sum = (count) => last60.reduce((total, m) => total + count(m), 0);
  // Leads routing sends to no agent (nurture) are callable only by a pool's dialer: not
  // counted as work for the floor.
  const staffed = board.callable - board.toNoAgent;
  $("#wb-callable").textContent = fmt(staffed);
  $("#wb-no-agent").textContent = board.toNoAgent ? `+${fmt(board.toNoAgent)} routed to no agent` : "";
  $("#wb-queued").textContent = fmt(board.queued);
  $("#wb-claims").textContent = fmt(sum((m) => m.claims));
  $("#wb-conversions").textContent = fmt(sum((m) => m.outcomes[converted]));
  const outcomes = sum((m) => m.outcomes.reduce((a, b) => a + b, 0));
  $("#wb-contact").textContent = outcomes ? pct(sum((m) => ANSWERED.reduce((a, r) => a + (m.outcomes[r] || 0), 0)) / outcomes) : "–";
  const firstCall = Number.parseFloat(board.medianFirstCall); // a Duration reads "42s"
  $("#wb-speed").textContent = !board.firstCalls ? "–" : firstCall < 60 ? `${Math.round(firstCall)} s` : span(firstCall * 1000);
  const talked = sum((m) => m.talked);
  $("#wb-talk").textContent = talked ? clock(sum((m) => m.talkMs) / talked) : "–";
  $("#wb-callbacks").textContent = fmt(board.callbacksDue);
  $("#wb-callbacks-oldest").textContent = board.oldestCallbackDue ? `oldest due ${since(board.oldestCallbackDue)}` : "";
  // Abandoned calls against the 3% limit, in red above it.
  const a = board.abandonment;
  $("#wb-abandoned").textContent = a.answered ? pct(a.rate) : "–";
  $("#wb-abandoned-of").textContent = `${fmt(a.abandoned)} of ${fmt(a.answered)} answered · limit ${pct(a.limit)}`;
  $("#wb-abandoned").closest(".figure").classList.toggle("over", a.overLimit);
  $("#wb-updated").textContent = new Date().toLocaleTimeString();
  if (!board.queued && !board.agents.length) {
    empty("wallboard", "The campaign's queue is empty and no agent is registered. Load leads with phone consent, register agents (<code>RoutingService.UpsertAgents</code>), and claims show here as agents call <code>DialerService.NextLead</code>.");
    return;
  }
  empty("wallboard", null);
  // The chart spans the minutes with data: from the first claim or outcome (the last ten
  // minutes at least), not an hour of empty bars before the floor opened.
  const busy = last60.findIndex((m) => m.claims || m.outcomes.some((n) => n));
  const shown = last60.slice(Math.max(0, Math.min(busy < 0 ? last60.length : busy, last60.length - 10)));
  const labels = shown.map((m) => new Date(m.start).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  const perMinute = {
    labels,
    datasets: [
      { type: "line", label: "claims", data: shown.map((m) => m.claims), borderColor: "#1d2433", pointRadius: 0, tension: 0.2 },
      ...RESULTS.map((name, r) => ({ type: "bar", label: name, data: shown.map((m) => m.outcomes[r] || 0), backgroundColor: RESULT_COLORS[r], stack: "outcomes" })),
    ],
  };
  updateChart("per-minute", { data: perMinute, options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } } });
  const reasons = Object.entries(board.ineligible).filter(([, n]) => n > 0);
  updateChart("reasons", {
    type: "bar",
    data: {
      labels: ["callable by agents", "routed to no agent", ...reasons.map(([k]) => REASONS[k] || k)],
      datasets: [{ data: [staffed, board.toNoAgent, ...reasons.map(([, n]) => n)], backgroundColor: ["#3aa76d", "#b9d7c5", ...reasons.map(() => "#9aa5b5")] }],
    },
    options: { indexAxis: "y", plugins: { legend: { display: false } } },
  });
  fill($("#zones tbody"), board.zones.map((z) =>
    el("tr", { "data-zone": z.timeZone + (z.region ? `/${z.region}` : "") },
      el("td", {}, z.timeZone), el("td", {}, z.region || "–"),
      el("td", { class: "num", title: z.open ? (z.toNoAgent ? `and ${fmt(z.toNoAgent)} routed to no agent` : "") : "ready once the window opens" },
        z.open ? fmt(z.callable - z.toNoAgent) : `(${fmt(z.callable - z.toNoAgent)} waiting)`),
      el("td", { class: z.open ? "open" : "shut" }, z.open ? "open" : "shut"),
      el("td", {}, windowChange(z)))));
  $("#agents-empty").hidden = board.agents.length > 0;
  const stateOf = (a) => a.state.replace("AGENT_STATE_", "").toLowerCase();
  const byState = ["available", "busy", "offline"].map((state) => [state, board.agents.filter((a) => stateOf(a) === state).length]);
  $("#agents-summary").textContent = byState.filter(([, n]) => n).map(([state, n]) => `${n} ${state}`).join(" · ");
  fill($("#agents tbody"), board.agents.map((a) =>
    el("tr", { "data-agent": a.agentId },
      el("td", {}, a.name ? `${a.name} (${a.agentId})` : a.agentId), el("td", { class: `state ${stateOf(a)}` }, stateOf(a)),
      lastingCell(a.since),
      el("td", { class: "num" }, a.leases), el("td", { class: "num" }, fmt(a.decided)), el("td", { class: "num" }, fmt(a.converted)),
      el("td", { class: "num" }, a.decided ? pct(a.converted / a.decided) : "–"))));
  $("#routing-queues-empty").hidden = board.routingQueues.length > 0;
  fill($("#routing-queues tbody"), board.routingQueues.map((q) =>
    el("tr", { "data-queue": q.queue },
      el("td", {}, q.queue), el("td", { class: "num" }, fmt(q.waiting)),
      lastingCell(q.oldestSince))));
}

// A cell saying how long it has been since `at` ("12 min"), the instant itself on hover.
function lastingCell(at) {
  return el("td", { title: at ? when(at) : "" }, at ? span(Date.now() - Date.parse(at)) : "–");
}

// A duration as a call centre's clock reads it: "4:05" (minutes and seconds).
function clock(ms) {
  const seconds = Math.round(ms / 1000);
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

// When a zone's window next opens or shuts, in words and in its own time: "shuts in 28 min
// (21:00 local)".
function windowChange(zone) {
  if (!zone.changesAt) return "–";
  const local = new Date(zone.changesAt).toLocaleTimeString([], { timeZone: zone.timeZone, hour: "2-digit", minute: "2-digit", hour12: false });
  return `${zone.open ? "shuts" : "opens"} ${until(zone.changesAt)} (${local} local)`;
}

// Redraws a live chart in place, so that it does not flicker at every update.
function updateChart(id, config) {
  const existing = charts[id];
  if (existing && existing.canvas.isConnected) {
    existing.data = config.data;
    existing.update("none");
  } else {
    chart(id, { type: "bar", ...config });
  }
}

// A campaign's band thresholds, read once per page shown (a configuration change may move
// them): [[band, lowest score], ...], warm first.
let thresholdsOf = {};

async function thresholds() {
  thresholdsOf[campaign()] ??= bandsOf((await api("distribution", { campaign: campaign(), bins: 1 })).thresholds);
  return thresholdsOf[campaign()];
}

function bandsOf(t) {
  return [["BAND_WARM", t.warm], ["BAND_SALES_READY", t.salesReady], ["BAND_HOT", t.hot]];
}

// A chart plugin that draws each band's threshold as a dashed line in its colour, across the
// `axis` scale at `at(value)` on it.
function bandLines(lines, axis, at = (value) => value) {
  return {
    id: "bandLines",
    afterDatasetsDraw(c) {
      const { ctx, chartArea: area } = c;
      const scale = c.scales[axis];
      ctx.save();
      ctx.setLineDash([5, 4]);
      ctx.font = "11px system-ui, sans-serif";
      for (const [band, value] of lines) {
        const pixel = scale.getPixelForValue(at(value));
        const inside = axis === "y" ? pixel >= area.top && pixel <= area.bottom : pixel >= area.left && pixel <= area.right;
        if (!inside) continue;
        ctx.strokeStyle = ctx.fillStyle = BAND_COLORS[band];
        ctx.beginPath();
        if (axis === "y") {
          ctx.moveTo(area.left, pixel);
          ctx.lineTo(area.right, pixel);
          ctx.stroke();
          ctx.fillText(`${BAND_NAMES[band]} ${fmt(value)}`, area.left + 4, pixel - 3);
        } else {
          ctx.moveTo(pixel, area.top);
          ctx.lineTo(pixel, area.bottom);
          ctx.stroke();
          ctx.fillText(`${BAND_NAMES[band]} ${fmt(value)}`, pixel + 3, area.top + 10);
        }
      }
      ctx.restore();
    },
  };
}

// A chart plugin that writes each bar's label above it.
function barLabels(labels) {
  return {
    id: "barLabels",
    afterDatasetsDraw(c) {
      const { ctx } = c;
      ctx.save();
      ctx.font = "12px system-ui, sans-serif";
      ctx.fillStyle = "#1d2433";
      ctx.textAlign = "center";
      c.getDatasetMeta(0).data.forEach((bar, i) => ctx.fillText(labels[i], bar.x, Math.min(bar.y, bar.base) - 4));
      ctx.restore();
    },
  };
}

// What changed a score, in words.
function cause(change) {
  if (change.event) return `event ${change.event.kind.replaceAll("_", " ")}`;
  if (change.upsert) return "lead updated";
  if (change.configVersion) return `configuration v${change.configVersion}`;
  if (change.decay) return "time decay";
  if (change.modelReload) return "model reloaded";
  return "–";
}

async function openLead(leadId) {
  for (const row of document.querySelectorAll("#top-leads tr.selected")) row.classList.remove("selected");
  document.querySelector(`#top-leads tr[data-lead="${CSS.escape(leadId)}"]`)?.classList.add("selected");
  const [{ score }, { changes }, { lead }, lines] = await Promise.all([
    api("explain", { lead: leadId, campaign: campaign() }),
    api("history", { lead: leadId, campaign: campaign() }),
    api("lead", { lead: leadId }),
    thresholds(),
  ]);
  const listed = topRows.find((r) => r.score.leadId === leadId);
  $("#lead-detail").hidden = false;
  $("#detail-title").replaceChildren(who(listed?.card, leadId));
  const reach = [lead.phone && `phone ${lead.phone}`, lead.owner && `owner ${lead.owner}`, lead.email].filter(Boolean).join(" · ");
  $("#detail-contact").textContent = [reach, listed && `calls: ${calls(listed.dialing)}`, listed && `next call: ${nextCall(listed.dialing)}`].filter(Boolean).join(" · ");
  $("#detail-summary").replaceChildren(`Score ${points(score.score)} `, bandPill(score.band), ` grade ${score.grade}`,
    score.account ? ` · account ${score.account.account} (${points(score.account.score)})` : "");
  const shown = (value) => value.text ?? value.number ?? value.flag;
  fill($("#profile tbody"), Object.entries(lead.attributes).sort(([a], [b]) => a.localeCompare(b)).map(([name, value]) =>
    el("tr", { "data-attribute": name }, el("th", {}, name.replaceAll("_", " ")), el("td", {}, String(shown(value))))));
  // The waterfall: each scorer's contribution stacked from zero up to the composite, with the
  // band thresholds across it.
  let running = 0;
  const steps = score.scorers.map((s) => {
    const from = running;
    running += s.contribution;
    return { label: s.scorer, range: [from, running], up: s.contribution >= 0, text: signed(s.contribution) };
  });
  const texts = [...steps.map((s) => s.text), points(score.score)];
  chart("waterfall", {
    type: "bar",
    data: {
      labels: [...steps.map((s) => s.label), "score"],
      datasets: [{
        data: [...steps.map((s) => s.range), [0, score.score]],
        backgroundColor: [...steps.map((s) => (s.up ? "#3aa76d" : "#e4572e")), BAND_COLORS[score.band]],
      }],
    },
    options: {
      plugins: { legend: { display: false }, tooltip: { callbacks: { label: (item) => texts[item.dataIndex] } } },
      scales: { y: { beginAtZero: true, suggestedMax: Math.max(score.score, lines[2][1]) * 1.1, title: { display: true, text: "points" } } },
    },
    plugins: [barLabels(texts), bandLines(lines, "y")],
  });
  fill($("#factors tbody"), score.scorers.flatMap((s) => s.topFactors.map((f) =>
    el("tr", {}, el("td", {}, s.scorer), el("td", {}, f.detail || f.feature), el("td", { class: "num" }, signed(f.contribution))))));
  $("#history-empty").hidden = changes.length > 0;
  // The history on a true time axis, each change with its cause.
  chart("history", {
    type: "line",
    data: {
      datasets: [{
        label: "score", data: changes.map((c) => ({ x: Date.parse(c.at), y: c.score })), borderColor: "#2f6fed",
        pointBackgroundColor: changes.map((c) => BAND_COLORS[c.band]), pointRadius: 4, stepped: true,
      }],
    },
    options: {
      plugins: { legend: { display: false }, tooltip: { callbacks: { label: (item) => `${points(changes[item.dataIndex].score)} · ${cause(changes[item.dataIndex])}` } } },
      scales: {
        x: { type: "linear", ticks: { callback: (ms) => new Date(ms).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }), maxTicksLimit: 5 } },
        y: { beginAtZero: true, suggestedMax: lines[2][1] * 1.1 },
      },
    },
    plugins: [bandLines(lines, "y")],
  });
  fill($("#causes tbody"), [...changes].reverse().slice(0, 8).map((c) =>
    el("tr", {}, el("td", {}, when(c.at)), el("td", { class: "num" }, points(c.score)), el("td", {}, bandPill(c.band)), el("td", {}, cause(c)))));
}

// ---- navigation --------------------------------------------------------------------------

let stopLive = null;

async function show() {
  const page = (location.hash || "#scores").slice(1);
  if (!pages[page]) return (location.hash = "#scores");
  stopLive?.();
  stopLive = null;
  thresholdsOf = {};
  delete document.body.dataset.live;
  $("#error").hidden = true;
  for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== `page-${page}`;
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.page === page);
  try {
    const stop = await pages[page]();
    if (typeof stop === "function") stopLive = stop;
    document.body.dataset.loaded = page;
  } catch (error) {
    showError(error);
  }
}

async function loadCampaigns() {
  try {
    const { campaigns } = await api("campaigns");
    $("#campaign").replaceChildren(...campaigns.map((c) => el("option", { value: c }, c)));
  } catch (error) {
    return showError(error);
  }
  show();
}

$("#token-button").addEventListener("click", () => $("#token-dialog").showModal());
// On a phone the menu folds behind a button, and folds again once a page is chosen.
$("#menu-button").addEventListener("click", () => {
  const open = $("header").classList.toggle("open");
  $("#menu-button").setAttribute("aria-expanded", String(open));
});
$("#nav").addEventListener("click", () => $("header").classList.remove("open"));
// Enter in the field submits with the dialog's default button, "Use token".
$("#token-cancel").addEventListener("click", () => $("#token-dialog").close("cancel"));
$("#token-dialog").addEventListener("close", () => {
  if ($("#token-dialog").returnValue === "save") {
    token.set($("#token-input").value.trim());
    loadCampaigns();
  }
});
$("#top-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  show();
});
$("#top-search").addEventListener("input", renderTop);
$("#open-lead").addEventListener("click", () => {
  const id = $("#top-search").value.trim();
  if (id) openLead(id).catch(showError);
});
$("#campaign").addEventListener("change", show);
window.addEventListener("hashchange", show);
loadCampaigns();
