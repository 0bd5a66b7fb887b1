// Aura console: one session's stream, its approval, the state machine and the tenant's live sessions.
// Plain JS, no build step, nothing from outside Aura. Every text from the server goes in with
// textContent, never as HTML. URLs are relative to the page (CONTRACT §1.2: /aura/... here,
// /api/aura/... behind the gateway).

const $ = (id) => document.getElementById(id);
const api = (path) => new URL(path, document.baseURI).toString();

const ui = {
  token: $("token"), tenant: $("tenant"), user: $("user"), mint: $("mint"), notice: $("notice"),
  prompt: $("prompt"), promptForm: $("prompt-form"), send: $("send"), stop: $("stop"), resume: $("resume"),
  sessionId: $("session-id"), streamStatus: $("stream-status"),
  thoughts: $("thoughts"), plan: $("plan"), tools: $("tools"),
  answerTitle: $("answer-title"), answer: $("answer"), result: $("result"),
  ending: $("ending"), endingKind: $("ending-kind"), endingMessage: $("ending-message"),
  diagram: $("diagram"), transitions: $("transitions"),
  sessions: $("sessions"), sessionsSummary: $("sessions-summary"), refreshSessions: $("refresh-sessions"),
  dialog: $("approval"), approvalRequest: $("approval-request"), approvalCountdown: $("approval-countdown"),
  approvalAction: $("approval-action"), approvalMessage: $("approval-message"), approvalParams: $("approval-params"),
  rejectReason: $("reject-reason"), approvalError: $("approval-error"), approve: $("approve"), reject: $("reject"),
};

const view = {
  sessionId: null, lastEventId: null, done: false, controller: null,
  pending: null, pendingIn: null, countdown: null, machine: null, state: null,
};

// ---------------------------------------------------------------- small helpers

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function notice(text, kind = "info") {
  ui.notice.textContent = text;
  ui.notice.dataset.kind = kind;
}

function pretty(value) {
  if (value === undefined) return "";
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function setStreamStatus(status) {
  ui.streamStatus.textContent = status;
  ui.streamStatus.dataset.status = status;
}

// ---------------------------------------------------------------- identity

function claimsOf(token) {
  // Only to fill in the tenant and user fields: Aura verifies the token, the page never does.
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

function useToken(token) {
  ui.token.value = token;
  const claims = claimsOf(token);
  if (claims) {
    const tenant = claims.tenant_id ?? claims.tenantId;
    if (tenant !== undefined) ui.tenant.value = String(tenant);
    if (claims.sub !== undefined) ui.user.value = String(claims.sub);
  }
  refreshSessions();
}

function headers(extra = {}) {
  // What main-service's clients send (CONTRACT §2.3); a blank field is left out, for Aura to name it.
  const sent = { ...extra };
  const [token, tenant, user] = [ui.token.value.trim(), ui.tenant.value.trim(), ui.user.value.trim()];
  if (token) sent.Authorization = `Bearer ${token}`;
  if (tenant) sent["X-Tenant-ID"] = tenant;
  if (user) sent["X-User-ID"] = user;
  return sent;
}

async function envelopeOf(response) {
  try {
    return await response.json();
  } catch {
    return { message: `HTTP ${response.status}` };
  }
}

function problem(response, body) {
  const code = body && body.errorCode ? ` ${body.errorCode}` : "";
  return `${response.status}${code}: ${(body && body.message) || response.statusText}`;
}

async function mintDevToken() {
  const body = JSON.stringify({ userId: ui.user.value.trim() || "1", tenantId: ui.tenant.value.trim() || "1" });
  const response = await fetch(api("console/dev-token"), { method: "POST", headers: { "Content-Type": "application/json" }, body });
  if (response.status === 404) {
    ui.mint.disabled = true;
    notice("No dev tokens here: Aura is not running on the public dev secret (make run). Paste a token from your auth server.", "error");
    return;
  }
  const envelope = await envelopeOf(response);
  if (!response.ok) {
    notice(`Could not mint a token: ${problem(response, envelope)}`, "error");
    return;
  }
  useToken(envelope.data.token);
  notice(`Dev token for user ${envelope.data.userId} of tenant ${envelope.data.tenantId}, valid 1 h (public dev secret).`);
}

// ---------------------------------------------------------------- the SSE stream (CONTRACT §3.3)

// Frames are blocks of `field: value` lines ended by a blank line; `:` lines are comments (keepalives).
// fetch + a ReadableStream because EventSource can neither POST nor send Authorization.
async function* sseFrames(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      // A "\r" at the end may be the first half of "\r\n": normalise only what is complete.
      const cut = buffer.endsWith("\r") ? buffer.length - 1 : buffer.length;
      buffer = buffer.slice(0, cut).replace(/\r\n?/g, "\n") + buffer.slice(cut);
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = parseFrame(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        yield frame;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function parseFrame(block) {
  const frame = { id: null, event: null, data: null, comment: false };
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) { frame.comment = true; continue; }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") frame.id = value;
    else if (field === "event") frame.event = value;
    else if (field === "data") data.push(value);
  }
  if (data.length) frame.data = data.join("\n");
  return frame;
}

async function readStream(request, { fresh }) {
  view.controller?.abort();
  const controller = new AbortController();
  view.controller = controller;
  if (fresh) resetRun();
  view.done = false;
  ui.stop.disabled = false;
  ui.resume.hidden = true;
  setStreamStatus("connecting");
  let response;
  try {
    response = await fetch(request.url, { ...request.init, signal: controller.signal });
  } catch (error) {
    setStreamStatus("failed");
    notice(`The stream could not start: ${error.message}`, "error");
    ui.stop.disabled = true;
    return;
  }
  if (!response.ok) {
    const envelope = await envelopeOf(response);
    setStreamStatus("refused");
    notice(`The stream was refused: ${problem(response, envelope)}`, "error");
    ui.stop.disabled = true;
    return;
  }
  setStreamStatus("streaming");
  try {
    for await (const frame of sseFrames(response.body)) {
      if (frame.comment && frame.data === null) { ui.streamStatus.dataset.beat = String(Date.now()); continue; }
      if (frame.data === "[DONE]") { view.done = true; break; }
      if (frame.data === null) continue;
      if (frame.id) remember(frame.id);
      dispatch(frame.event, JSON.parse(frame.data));  // ASCII with \uXXXX escapes: JSON.parse decodes them
    }
  } catch (error) {
    if (error.name !== "AbortError") notice(`The stream broke off: ${error.message}`, "error");
  } finally {
    ui.stop.disabled = true;
    if (view.controller === controller) view.controller = null;
  }
  if (view.done) {
    setStreamStatus("done");
    closeApproval();
  } else {
    setStreamStatus("interrupted");
    ui.resume.hidden = view.sessionId === null;  // e.g. a server draining for a deploy: follow again
  }
  refreshSessions();
}

function remember(eventId) {
  view.lastEventId = eventId;
  const sessionId = eventId.slice(0, eventId.lastIndexOf("."));
  if (sessionId && sessionId !== view.sessionId) {
    view.sessionId = sessionId;
    ui.sessionId.textContent = sessionId;
    if (view.state === null && view.machine) showState(view.machine.initial, null);
  }
}

function startSession(prompt) {
  const body = JSON.stringify({ prompt, context: { language: navigator.language, activeApp: "console" } });
  const init = {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body,
  };
  return readStream({ url: api("test/stream"), init }, { fresh: true });
}

function followSession(sessionId, lastEventId) {
  // GET /aura/sessions/{sid}/events: from the start, or after the last event this page received.
  const extra = { Accept: "text/event-stream" };
  if (lastEventId) extra["Last-Event-ID"] = lastEventId;
  const url = api(`sessions/${encodeURIComponent(sessionId)}/events${lastEventId ? "" : "?after=0"}`);
  return readStream({ url, init: { method: "GET", headers: headers(extra) } }, { fresh: !lastEventId });
}

// ---------------------------------------------------------------- events (docs/EVENTS.md)

const handlers = {
  thought(data) {
    const item = el("li", "thought");
    item.append(el("span", "kind", data.thoughtType || "thought"), el("span", "text", data.content));
    ui.thoughts.append(item);
  },
  plan_step(data) {
    let item = ui.plan.querySelector(`li[data-step-id="${CSS.escape(data.id)}"]`);
    if (!item) {
      item = el("li", "step");
      item.dataset.stepId = data.id;
      item.dataset.order = String(data.order ?? 0);
      const later = [...ui.plan.children].find((other) => Number(other.dataset.order) > Number(item.dataset.order));
      ui.plan.insertBefore(item, later || null);
    }
    item.replaceChildren(el("span", "status"), el("span", "title", data.title));
    if (data.tool) item.append(el("code", "tool", data.tool));
    if (data.description && data.description !== data.title) item.append(el("div", "description", data.description));
    setStepStatus(item, data.status || "pending");
  },
  plan_step_update(data) {
    const item = ui.plan.querySelector(`li[data-step-id="${CSS.escape(data.id)}"]`);
    if (item) setStepStatus(item, data.status);
  },
  tool_execution(data) {
    // One card per call, keyed by its step: `executing`, then `completed` or `failed` update it.
    const key = data.stepId || data.tool;
    let card = ui.tools.querySelector(`[data-step-id="${CSS.escape(key)}"]`);
    if (!card) {
      card = el("article", "tool-card");
      card.dataset.stepId = key;
      const head = el("header");
      head.append(el("code", "tool-name", data.tool), el("span", "badge status"));
      card.append(head, el("pre", "params"), el("pre", "outcome"));
      ui.tools.append(card);
    }
    card.dataset.status = data.status;
    card.querySelector(".status").textContent = data.status;
    card.querySelector(".status").dataset.status = data.status;
    card.querySelector(".params").textContent = pretty(data.params);
    const outcome = card.querySelector(".outcome");
    outcome.textContent = data.status === "failed" ? pretty(data.error) : pretty(data.result);
    outcome.hidden = outcome.textContent === "";
  },
  hitl(data) {
    openApproval(data);
    refreshSessions();  // this session now waits: the list says so
  },
  content(data) {
    ui.answer.append(document.createTextNode(data.content || ""));
    const result = data.metadata && data.metadata.result;
    if (result) showResult(result);
  },
  state(data) {
    // The session left the state it asked in: the request was decided (here or elsewhere), or it ended.
    if (view.pending && data.from === view.pendingIn) closeApproval();
    showState(data.to, data);
  },
  snapshot(data) {
    if (data.state) showState(data.state, null);
  },
  error(data) {
    // An ending without an answer: the explanatory `content` came just before (CONTRACT §3.8).
    closeApproval();
    ui.answerTitle.textContent = "Why it ended";
    ui.ending.hidden = false;
    ui.ending.dataset.reason = data.reason || "";
    ui.endingKind.textContent = [data.errorType, data.code, data.reason].filter(Boolean).join(" · ");
    ui.endingMessage.textContent = data.message || data.error || "";
  },
};

function dispatch(eventName, payload) {
  // Fields are inside `data` (CONTRACT §3.4). The AI-workspace page's twins (thought_chain,
  // action_execution, hitl_request) repeat documented events and are not drawn twice.
  const type = eventName || payload.type;
  const handler = handlers[type];
  if (handler) handler(payload.data || {});
}

function setStepStatus(item, status) {
  item.dataset.status = status;
  item.querySelector(".status").textContent = status;
}

function showResult(result) {
  ui.result.hidden = false;
  ui.result.replaceChildren(el("div", "result-title", result.title || result.type));
  if (result.type === "checklist" && Array.isArray(result.content)) {
    const list = el("ul", "checklist");
    for (const entry of result.content) {
      const item = el("li", entry.checked ? "checked" : "unchecked", entry.label);
      list.append(item);
    }
    ui.result.append(list);
  } else {
    ui.result.append(el("pre", "result-content", pretty(result.content)));
  }
}

function resetRun() {
  view.sessionId = null;
  view.lastEventId = null;
  view.state = null;
  ui.sessionId.textContent = "—";
  for (const node of [ui.thoughts, ui.plan, ui.tools, ui.answer, ui.result, ui.transitions]) node.replaceChildren();
  ui.result.hidden = true;
  ui.ending.hidden = true;
  ui.answerTitle.textContent = "Answer";
  closeApproval();
  showState(null, null);
}

// ---------------------------------------------------------------- approval (CONTRACT §4.4)

function openApproval(data) {
  view.pending = data;
  view.pendingIn = view.state;  // the state the request was made in (the `state` event before `hitl`)
  ui.approvalRequest.textContent = data.requestId;
  ui.approvalAction.textContent = data.action || data.actionType || "";
  ui.approvalMessage.textContent = data.message || "";
  ui.approvalParams.textContent = pretty(data.params);
  ui.approvalError.hidden = true;
  ui.approve.disabled = ui.reject.disabled = false;
  const deadline = Date.now() + (Number(data.timeoutSeconds) || 0) * 1000;
  clearInterval(view.countdown);
  const tick = () => {
    const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    ui.approvalCountdown.textContent = data.timeoutSeconds ? `${left} s left` : "";
  };
  tick();
  view.countdown = setInterval(tick, 1000);
  if (!ui.dialog.open) ui.dialog.showModal();
}

function closeApproval() {
  view.pending = view.pendingIn = null;
  clearInterval(view.countdown);
  if (ui.dialog.open) ui.dialog.close();
}

async function decide(decision) {
  const pending = view.pending;
  if (!pending) return;
  const body = { userId: ui.user.value.trim() };
  const reason = ui.rejectReason.value.trim();
  if (decision === "reject" && reason) body.reason = reason;
  ui.approve.disabled = ui.reject.disabled = true;
  let response;
  try {
    // main-service's headers and bodies: Authorization, X-Tenant-ID, X-User-ID; {"userId"[, "reason"]}.
    response = await fetch(api(`hitl/${decision}/${encodeURIComponent(pending.requestId)}`), {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
    });
  } catch (error) {
    showApprovalError(`The ${decision} request failed: ${error.message}`);
    return;
  }
  const envelope = await envelopeOf(response);
  if (response.ok || response.status === 409) {
    closeApproval();
    ui.rejectReason.value = "";
    notice(envelope.message || `${decision}d`);
  } else {
    showApprovalError(problem(response, envelope));
  }
}

function showApprovalError(text) {
  ui.approvalError.textContent = text;
  ui.approvalError.hidden = false;
  ui.approve.disabled = ui.reject.disabled = false;
}

// ---------------------------------------------------------------- the state diagram

const SVG = "http://www.w3.org/2000/svg";
const BOX = { width: 150, height: 34, column: 200, row: 100, pad: 16 };

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// Layout of the served definition, with no state named here. A transition from every live state
// (cancel, fail) is one arrow from a frame around the live states, as a composite state in UML.
// Live states are ranked by their distance from the initial state, one row per rank; final states
// share the row below. Edges between the same two states share one arrow and one label.
function layoutMachine(definition) {
  const final = new Set(definition.states.filter((s) => s.final).map((s) => s.name));
  const live = definition.states.filter((s) => !s.final).map((s) => s.name);
  const fromAllLive = (t) => live.length > 1 && live.every((name) => t.sources.includes(name));
  const edges = definition.transitions.filter((t) => !fromAllLive(t)).flatMap((t) => t.sources.map((source) => ({ ...t, source })));
  const rank = new Map([[definition.initial, 0]]);
  for (let changed = true; changed;) {
    changed = false;
    for (const edge of edges) {
      if (rank.has(edge.source) && !rank.has(edge.dest) && !final.has(edge.dest)) {
        rank.set(edge.dest, rank.get(edge.source) + 1);
        changed = true;
      }
    }
  }
  const finalRow = Math.max(0, ...rank.values()) + 1;
  const rows = new Map();
  for (const state of definition.states) {
    const r = final.has(state.name) ? finalRow : rank.get(state.name) ?? finalRow - 1;
    if (!rows.has(r)) rows.set(r, []);
    rows.get(r).push(state.name);
  }
  const at = new Map();
  for (const [r, names] of rows) {
    names.forEach((name, i) => at.set(name, { x: (i - (names.length - 1) / 2) * BOX.column, y: r * BOX.row, rank: r }));
  }
  const label = (t) => [t.trigger, ...(t.conditions.length ? [`[${t.conditions.join(", ")}]`] : [])];
  const grouped = new Map();
  for (const edge of edges) {
    const key = `${edge.source}->${edge.dest}`;
    if (!grouped.has(key)) grouped.set(key, { key, source: edge.source, dest: edge.dest, labels: [] });
    grouped.get(key).labels.push(...label(edge));
  }
  const frameEdges = new Map();
  for (const t of definition.transitions.filter(fromAllLive)) {
    if (!frameEdges.has(t.dest)) frameEdges.set(t.dest, { key: `*->${t.dest}`, source: "*", dest: t.dest, labels: [] });
    frameEdges.get(t.dest).labels.push(...label(t));
  }
  return { at, final, live, edges: [...grouped.values()], frameEdges: [...frameEdges.values()] };
}

function drawLabel(layer, edge, x, y, anchor) {
  const text = svg("text", { x, y: y - ((edge.labels.length - 1) * 12) / 2 + 4, "text-anchor": anchor, class: "edge-label", "data-edge": edge.key });
  edge.labels.forEach((line, i) => text.append(svg("tspan", { x, dy: i === 0 ? 0 : 12 }, line)));
  layer.append(text);
  return text;
}

function drawArrow(layer, edge, d) {
  const group = svg("g", { class: "edge", "data-edge": edge.key });
  group.append(svg("path", { d, "marker-end": "url(#arrow)" }));
  layer.append(group);
}

function drawMachine(definition) {
  const { at, final, live, edges, frameEdges } = layoutMachine(definition);
  const w = BOX.width / 2;
  const h = BOX.height / 2;
  const root = svg("svg", { class: "machine-svg", role: "img" });
  const defs = svg("defs", {});
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow-head" }));
  defs.append(marker);
  const frameLayer = svg("g", { class: "frame" });
  const edgeLayer = svg("g", { class: "edges" });
  const stateLayer = svg("g", { class: "states" });
  const labelLayer = svg("g", { class: "labels" });
  root.append(defs, frameLayer, edgeLayer, stateLayer, labelLayer);
  ui.diagram.replaceChildren(root);  // in the document from here on, so labels can be measured

  for (const [name, p] of at) {
    const group = svg("g", { class: `state${final.has(name) ? " final" : ""}`, "data-state": name });
    group.append(svg("rect", { x: p.x - w, y: p.y - h, width: BOX.width, height: BOX.height, rx: 8 }));
    if (final.has(name)) group.append(svg("rect", { class: "inner", x: p.x - w + 3, y: p.y - h + 3, width: BOX.width - 6, height: BOX.height - 6, rx: 6 }));
    group.append(svg("text", { x: p.x, y: p.y + 5, "text-anchor": "middle" }, name));
    stateLayer.append(group);
  }
  const start = at.get(definition.initial);
  stateLayer.append(svg("circle", { class: "initial", cx: start.x, cy: start.y - h - 24, r: 6 }));
  stateLayer.append(svg("path", { class: "initial-edge", d: `M${start.x},${start.y - h - 18} L${start.x},${start.y - h}`, "marker-end": "url(#arrow)" }));

  // Arrows into the top of a state are spread along it, ordered by where they come from.
  const arrivals = new Map();
  const arrive = (edge, fromX) => {
    if (!arrivals.has(edge.dest)) arrivals.set(edge.dest, []);
    arrivals.get(edge.dest).push({ edge, fromX });
  };
  const neighbours = edges.filter((e) => Math.abs(at.get(e.dest).rank - at.get(e.source).rank) === 1 && (at.get(e.dest).rank > at.get(e.source).rank || edges.some((o) => o.source === e.dest && o.dest === e.source)));
  const jumps = edges.filter((e) => !neighbours.includes(e));
  const frame = live.length > 1 ? frameBox(live.map((name) => at.get(name)), w, h) : null;
  const straight = [];
  for (const edge of neighbours) {
    const s = at.get(edge.source);
    const d = at.get(edge.dest);
    const pair = edges.some((o) => o.source === edge.dest && o.dest === edge.source);
    if (pair) {
      // Both ways between neighbours: two arrows side by side, labels outside them.
      const down = d.rank > s.rank;
      const shift = down ? 18 : -18;
      const from = { x: s.x + shift, y: s.y + (down ? h : -h) };
      const to = { x: d.x + shift, y: d.y + (down ? -h : h) };
      straight.push({ edge, from, to, label: { x: from.x + (down ? 8 : -8), y: (from.y + to.y) / 2, anchor: down ? "start" : "end" } });
    } else if (d.x === s.x) {
      straight.push({ edge, from: { x: s.x, y: s.y + h }, to: null, label: null });
      arrive(edge, s.x);
    } else {
      straight.push({ edge, from: { x: s.x, y: s.y + h }, to: null, label: null });
      arrive(edge, s.x);
    }
  }
  if (frame) {
    for (const edge of frameEdges) {
      const d = at.get(edge.dest);
      // From the frame's bottom, straight down where the frame and the state overlap.
      const low = Math.max(frame.x, d.x - w) + 12;
      const high = Math.min(frame.x + frame.width, d.x + w) - 12;
      const x = low <= high ? (low + high) / 2 : d.x;
      straight.push({ edge, from: { x, y: frame.y + frame.height }, to: null, label: null, frameEdge: true });
      arrive(edge, x);
    }
    frameLayer.append(svg("rect", { x: frame.x, y: frame.y, width: frame.width, height: frame.height, rx: 14 }));
    frameLayer.append(svg("text", { x: frame.x + 10, y: frame.y + 16, class: "frame-label" }, "live"));
  }
  for (const [dest, list] of arrivals) {
    const d = at.get(dest);
    list.sort((a, b) => a.fromX - b.fromX);
    list.forEach((item, i) => {
      const entry = straight.find((s) => s.edge === item.edge);
      entry.to = { x: d.x - w + (BOX.width * (i + 1)) / (list.length + 1), y: d.y - h };
      if (list.length === 1 && Math.abs(entry.from.x - d.x) < w) entry.to.x = entry.from.x;
      const mid = { x: (entry.from.x + entry.to.x) / 2, y: (entry.from.y + entry.to.y) / 2 };
      // Beside a slanted arrow, on the side it comes from; beside a vertical one, to the right.
      const slant = entry.to.x - entry.from.x;
      entry.label = Math.abs(slant) < 1
        ? { x: mid.x + 8, y: mid.y, anchor: "start" }
        : { x: mid.x + (slant > 0 ? -8 : 8), y: mid.y, anchor: slant > 0 ? "end" : "start" };
    });
  }
  for (const entry of straight) {
    drawArrow(edgeLayer, entry.edge, `M${entry.from.x},${entry.from.y} L${entry.to.x},${entry.to.y}`);
    drawLabel(labelLayer, entry.edge, entry.label.x, entry.label.y, entry.label.anchor);
  }
  // Longer jumps run outside everything drawn so far, on the side of their destination.
  const drawn = root.getBBox();
  const lanes = { "-1": drawn.x - BOX.pad, 1: drawn.x + drawn.width + BOX.pad };
  for (const edge of jumps) {
    const s = at.get(edge.source);
    const d = at.get(edge.dest);
    const side = d.x < s.x || (d.x === s.x && d.rank < s.rank) ? -1 : 1;
    const lane = lanes[side];
    lanes[side] += side * 22;
    const from = { x: s.x + side * w, y: s.y };
    const to = { x: d.x + side * w, y: d.y };
    const r = 10;
    const dy = Math.sign(to.y - from.y) || 1;
    const path = `M${from.x},${from.y} H${lane - side * r} Q${lane},${from.y} ${lane},${from.y + dy * r} ` +
      `V${to.y - dy * r} Q${lane},${to.y} ${lane - side * r},${to.y} H${to.x}`;
    drawArrow(edgeLayer, edge, path);
    drawLabel(labelLayer, edge, lane + side * 6, (from.y + to.y) / 2, side < 0 ? "end" : "start");
  }
  const box = root.getBBox();
  root.setAttribute("viewBox", `${box.x - 8} ${box.y - 8} ${box.width + 16} ${box.height + 16}`);
  root.setAttribute("width", String(Math.ceil(box.width + 16)));
  root.setAttribute("height", String(Math.ceil(box.height + 16)));
}

function frameBox(points, w, h) {
  const left = Math.min(...points.map((p) => p.x)) - w - BOX.pad;
  const right = Math.max(...points.map((p) => p.x)) + w + BOX.pad;
  const top = Math.min(...points.map((p) => p.y)) - h - 40;  // room for the initial marker and the name
  const bottom = Math.max(...points.map((p) => p.y)) + h + BOX.pad;
  return { x: left, y: top, width: right - left, height: bottom - top };
}

function showState(state, change) {
  view.state = state;
  ui.diagram.dataset.state = state || "";
  for (const node of ui.diagram.querySelectorAll(".state")) node.classList.toggle("current", node.dataset.state === state);
  const taken = change ? takenEdge(change) : null;
  for (const node of ui.diagram.querySelectorAll("[data-edge]")) node.classList.toggle("taken", node.dataset.edge === taken);
  if (change) {
    const reason = change.reason ? ` (${change.reason})` : "";
    ui.transitions.append(el("li", null, `${change.from} → ${change.to}: ${change.trigger}${reason}`));
  }
}

function takenEdge(change) {
  // The arrow a transition was drawn as: its own, or the live frame's (a trigger from every live state).
  const own = `${change.from}->${change.to}`;
  return ui.diagram.querySelector(`.edge[data-edge="${CSS.escape(own)}"]`) ? own : `*->${change.to}`;
}

async function loadMachine() {
  const response = await fetch(api("console/machine.json"));
  if (!response.ok) {
    ui.diagram.textContent = `The machine definition could not be loaded (HTTP ${response.status}).`;
    return;
  }
  view.machine = await response.json();
  drawMachine(view.machine);
  showState(view.state, null);
}

// ---------------------------------------------------------------- the tenant's live sessions

async function refreshSessions() {
  if (!ui.token.value.trim()) {
    ui.sessionsSummary.textContent = "Enter or mint a token to list this tenant's live sessions.";
    ui.sessions.replaceChildren();
    return;
  }
  let response;
  try {
    response = await fetch(api("sessions"), { headers: headers() });
  } catch (error) {
    ui.sessionsSummary.textContent = `Could not list sessions: ${error.message}`;
    return;
  }
  const envelope = await envelopeOf(response);
  if (!response.ok) {
    ui.sessionsSummary.textContent = `Could not list sessions: ${problem(response, envelope)}`;
    return;
  }
  const { sessions, total, limit } = envelope.data;
  ui.sessionsSummary.textContent = total > sessions.length
    ? `${sessions.length} shown of ${total} live (newest ${limit}).`
    : `${sessions.length} live.`;
  ui.sessions.replaceChildren(...sessions.map(sessionRow));
}

function sessionRow(session) {
  const row = el("li", "session-row");
  row.dataset.sessionId = session.sessionId;
  row.dataset.state = session.state;
  const head = el("div", "session-head");
  head.append(el("span", "badge state", session.state), el("code", "sid", session.sessionId));
  row.append(head);
  const who = session.own ? "yours" : `user ${session.userId}`;
  row.append(el("div", "muted small", `${who}${session.pendingRequestId ? ` · waiting on ${session.pendingRequestId}` : ""}`));
  if (session.prompt) row.append(el("div", "prompt-text", session.prompt));
  if (session.own && session.sessionId !== view.sessionId) {
    const follow = el("button", "small-button", "Follow");
    follow.type = "button";
    follow.addEventListener("click", () => followSession(session.sessionId, null));
    row.append(follow);
  }
  return row;
}

// ---------------------------------------------------------------- wiring

ui.mint.addEventListener("click", () => mintDevToken().catch((error) => notice(error.message, "error")));
ui.token.addEventListener("change", () => useToken(ui.token.value.trim()));
ui.refreshSessions.addEventListener("click", () => refreshSessions());
ui.promptForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const prompt = ui.prompt.value.trim() || ui.prompt.placeholder;
  if (!ui.token.value.trim()) { notice("Enter or mint a token first.", "error"); return; }
  startSession(prompt);
});
ui.stop.addEventListener("click", () => view.controller?.abort());
ui.resume.addEventListener("click", () => view.sessionId && followSession(view.sessionId, view.lastEventId));
ui.approve.addEventListener("click", () => decide("approve"));
ui.reject.addEventListener("click", () => decide("reject"));
ui.dialog.addEventListener("cancel", (event) => event.preventDefault());  // Escape does not decide anything
setInterval(() => { if (!document.hidden) refreshSessions(); }, 5000);

loadMachine().catch((error) => { ui.diagram.textContent = `The machine definition could not be loaded: ${error.message}`; });
refreshSessions();
