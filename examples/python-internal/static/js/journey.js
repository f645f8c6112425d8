// The page: one card per step, filled from the app's JSON answers. Plain DOM and fetch; every
// value from the server goes in as text, never as HTML.
"use strict";

const CARDS = ["1", "2", "3", "4", "5", "6", "check"];
const DESCRIPTIONS = {
  1: "An ephemeral P-256 key; the sidecar answers with its own, a session id and an ECDSA signature over all of it, verified here.",
  2: "Client credentials (Basic) in a body sealed with AES-256-GCM: an access and a refresh token, a new family.",
  3: "The access token asks about itself: active.",
  4: "A new session bound to the subject (Bearer + X-Subject); the anonymous one ends.",
  5: "The refresh token buys a new pair in the same family; the old refresh token is spent.",
  6: "Revoking the refresh token revokes the whole family.",
  check: "With a token of a new family: every token of the revoked family is inactive.",
};
let nextStep = 1;
let busy = false;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function card(step) {
  return document.getElementById(`step-${step}`);
}

function buildCards(steps) {
  for (const step of CARDS) {
    const info = step === "check"
      ? { name: "the revoked family is inactive", endpoint: "/api/v1/introspect" }
      : steps[step];
    const li = card(step);
    li.replaceChildren();
    const head = el("div", "step-head");
    head.append(el("span", "badge", step === "check" ? "✓" : step));
    const titles = el("div", "titles");
    titles.append(el("h2", "", step === "check" ? "Check: " + info.name : info.name));
    const endpoint = el("code", "endpoint", "POST " + info.endpoint);
    titles.append(endpoint);
    head.append(titles);
    const button = el("button", "run", step === "check" ? "Check" : `Run step ${step}`);
    button.type = "button";
    button.addEventListener("click", () => run(step));
    head.append(button);
    li.append(head, el("p", "description", DESCRIPTIONS[step]), el("div", "result"));
  }
}

function field(label, value, className) {
  const row = el("div", "field " + (className || ""));
  row.append(el("span", "label", label));
  row.append(value instanceof Node ? value : el("span", "value", value));
  return row;
}

function render(step, body, http) {
  const li = card(step);
  const result = li.querySelector(".result");
  result.replaceChildren();
  li.classList.remove("ok", "failed", "warn");
  if (body.error === "out_of_order") {
    li.classList.add("warn");
    result.append(el("p", "message", body.message));
    return;
  }
  const meta = el("div", "meta");
  const status = body.status === null || body.status === undefined ? `HTTP ${http}` : `HTTP ${body.status}`;
  meta.append(el("span", "status " + (body.ok ? "good" : "bad"), status));
  if (body.elapsed_ms !== undefined) meta.append(el("span", "elapsed", `${body.elapsed_ms.toFixed(1)} ms`));
  if (body.error) meta.append(el("span", "code", body.error));
  result.append(meta);
  li.classList.add(body.ok ? "ok" : "failed");
  if (!body.ok) {
    result.append(el("p", "message", body.message || `HTTP ${http}`));
    if (body.hint) result.append(field("what to do", body.hint, "hint"));
  }
  for (const note of body.notes || []) result.append(el("p", "note", note));
  if (body.auth) result.append(field("auth", body.auth));
  if (body.answer !== null && body.answer !== undefined) {
    result.append(field("answer", el("pre", "answer", JSON.stringify(body.answer, null, 2))));
  }
  if (step === "check" && body.ok) {
    const inactive = Object.values(body.answer || {}).every((a) => a && a.active === false);
    result.prepend(el("p", "verdict", inactive
      ? "The revoked family is inactive: its refresh and access tokens both introspect as {\"active\": false}."
      : "Unexpected: a token of the revoked family is still active."));
  }
}

function markNext(next) {
  nextStep = next;
  for (const step of CARDS) card(step).classList.toggle("next", String(step) === String(next));
  document.getElementById("run-next").disabled = next === "done";
}

function banner(text, kind) {
  const node = document.getElementById("banner");
  node.hidden = !text;
  node.textContent = text || "";
  node.className = "banner " + (kind || "");
}

async function call(method, path) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (method === "POST") {
    init.headers["Content-Type"] = "application/json";
    init.body = "{}";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    return { http: 0, body: { ok: false, error: "app_unreachable", message: "This page's server (app.py) does not answer: is it still running?" } };
  }
  try {
    return { http: response.status, body: await response.json() };
  } catch (e) {
    return { http: response.status, body: { ok: false, error: "not_json", message: `HTTP ${response.status}, and the answer is not JSON.` } };
  }
}

async function run(step) {
  if (busy) return;
  busy = true;
  document.body.classList.add("busy");
  banner("");
  try {
    const { http, body } = await call("POST", `/steps/${step}`);
    if (http === 0) {
      banner(body.message, "bad");
      return;
    }
    render(step, body, http);
    if (body.next_step !== undefined) markNext(body.next_step);
    if (step === "6" && body.ok) {
      busy = false;
      await run("check");
    } else if (step === "check" && body.ok) {
      markNext("done");
      banner("The six steps went through, and the check: the revoked family is inactive.", "good");
    }
  } finally {
    busy = false;
    document.body.classList.remove("busy");
  }
}

async function reset() {
  const { http, body } = await call("POST", "/steps/reset");
  if (!body.ok) {
    banner(body.message || `Reset failed (HTTP ${http}).`, "bad");
    return;
  }
  for (const step of CARDS) {
    card(step).querySelector(".result").replaceChildren();
    card(step).classList.remove("ok", "failed", "warn");
  }
  markNext(1);
  banner(body.message, "");
}

async function load() {
  const { http, body } = await call("GET", "/steps");
  if (http !== 200) {
    banner(body.message || "Cannot load the journey's state.", "bad");
    return;
  }
  document.getElementById("setting-sidecar").textContent = body.sidecar_url;
  document.getElementById("setting-client").textContent = body.client_id;
  document.getElementById("setting-subject").textContent = body.subject;
  document.getElementById("setting-trust").textContent = body.pinned
    ? "pinned (SIDECAR_PUBLIC_KEY)"
    : "trust on first use (SIDECAR_PUBLIC_KEY unset)";
  buildCards(body.steps);
  for (const result of body.results) render(String(result.step), result, 200);
  markNext(body.results.some((r) => r.step === "check") ? "done" : body.next_step);
  document.getElementById("run-next").addEventListener("click", () => {
    if (nextStep !== "done") run(String(nextStep));
  });
  document.getElementById("reset").addEventListener("click", reset);
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", load);
