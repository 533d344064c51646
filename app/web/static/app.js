// The page that tries the service: choose a document, submit it as a job, follow its progress, then show
// the page with its blocks, the rendered Markdown and the raw JSON (result.js). In Russian or English
// (i18n.js), chosen from the browser's languages, with a switch on the page.
//
// Everything shown is built from text nodes, never from HTML strings: recognised text and error messages are
// data, not markup.

import { ApiError, api, apiKey, setApiKey, sleep, upload } from "./api.js";
import { count, number, onLanguageChange, setLanguage, t, translatePage } from "./i18n.js";
import { hideMessage, showError, showMessage } from "./messages.js";
import { BROWSER_IMAGES, clearResult, setupResultView, showResult } from "./result.js";

const $ = (id) => document.getElementById(id);

const state = {
  config: null,
  health: null, // the last /health answer, or "down"
  file: null,
  fileUrl: null, // object URL of the chosen file, shown directly when the browser can draw it
  job: null,
  busy: false,
  progress: null, // () => text of the progress line
};

// --- service information ------------------------------------------------------------------------------

async function loadConfig() {
  try {
    state.config = await (await api("ui/config.json")).json();
  } catch {
    state.config = null; // an older server: no hints, the key field appears on a 401
  }
  const config = state.config;
  if (!config) return;
  if (config.api_key_required) showKeyRow(!apiKey());
  $("dpi").placeholder = String(config.pdf_dpi);
  $("dpi").max = String(config.max_dpi);
  drawFileHint();
}

function drawFileHint() {
  const config = state.config;
  $("file-hint").textContent = config
    ? t("drop.limits", { mb: config.max_upload_mb, pages: config.max_pages })
    : t("drop.types");
}

/** Engines and languages from /health, in whichever shape it gives them (all of it is optional). */
function enginesOf(health) {
  const engines = [];
  const raw = health.engines;
  const add = (name, info) => {
    if (!name) return;
    const languages = info && (info.languages || info.langs);
    engines.push({
      name: String(name),
      state: info && info.state ? String(info.state) : "",
      languages: Array.isArray(languages)
        ? languages.map(String)
        : typeof languages === "string" ? languages.split(/[,\s]+/).filter(Boolean) : [],
    });
  };
  if (Array.isArray(raw)) {
    raw.forEach((info) => add(typeof info === "string" ? info : info && (info.name || info.engine), info));
  } else if (raw && typeof raw === "object") {
    Object.entries(raw).forEach(([name, info]) => add(name, info));
  }
  if (!engines.length && health.engine) add(health.engine.name, health.engine);
  return engines;
}

function showEngineChoices(health) {
  const engines = enginesOf(health);
  const select = $("engine");
  const chosen = select.value;
  while (select.options.length > 1) select.remove(1);
  for (const engine of engines) {
    const known = ["initializing", "failed"].includes(engine.state);
    const label = engine.state && engine.state !== "ready"
      ? `${engine.name} (${known ? t(`engine.${engine.state}`) : engine.state})`
      : engine.name;
    const option = new Option(label, engine.name);
    option.disabled = engine.state === "failed";
    select.add(option);
  }
  select.value = [...select.options].some((option) => option.value === chosen) ? chosen : "";
  $("engine-row").hidden = engines.length < 2;

  const languages = new Set(Array.isArray(health.languages) ? health.languages.map(String) : []);
  engines.forEach((engine) => engine.languages.forEach((code) => languages.add(code)));
  $("lang-list").replaceChildren(...[...languages].sort().map((code) => new Option(code)));
  const hint = $("lang-hint");
  hint.hidden = languages.size === 0;
  const shown = [...languages].sort().slice(0, 12).join(", ");
  hint.textContent = languages.size ? t("languages.hint", { list: shown + (languages.size > 12 ? ", …" : "") }) : "";
}

function drawHealth() {
  const label = $("health");
  const health = state.health;
  if (!health) return;
  if (health === "down") {
    label.dataset.state = "down";
    label.textContent = t("health.unreachable");
    return;
  }
  const engine = health.engine || {};
  const known = ["healthy", "starting", "unhealthy"].includes(health.status);
  label.dataset.state = health.status;
  label.textContent = `${engine.name || t("health.engine")} · ${known ? t(`health.${health.status}`) : health.status}`;
  label.title = engine.error || engine.detail || engine.selection || "";
  $("version").textContent = health.version ? `paddleocr-vl-service ${health.version}` : "";
  showEngineChoices(health);
}

async function watchHealth() {
  for (;;) {
    try {
      state.health = await (await api("health")).json();
    } catch {
      state.health = "down";
    }
    drawHealth();
    // quickly while the engine loads, then now and then (an engine can fail or recover later)
    const status = state.health === "down" ? "down" : state.health.status;
    await sleep(status === "healthy" ? 30000 : status === "unhealthy" ? 15000 : 3000);
  }
}

// --- the API key --------------------------------------------------------------------------------------

function showKeyRow(focus) {
  $("key-row").hidden = false;
  $("api-key").value = apiKey();
  if (focus) $("api-key").focus();
}

function setupKey() {
  $("api-key").addEventListener("input", (event) => setApiKey(event.target.value.trim()));
  $("forget-key").addEventListener("click", () => {
    setApiKey("");
    $("api-key").value = "";
    $("api-key").focus();
  });
}

// --- choosing a file ----------------------------------------------------------------------------------

function chooseFile(file) {
  if (!file) return;
  // Earlier object URLs are not revoked: they only reference the files, and a shown result may use one.
  state.file = file;
  state.fileUrl = BROWSER_IMAGES.has(file.type) ? URL.createObjectURL(file) : null;
  drawFileName();
  $("file-name").hidden = false;
  $("dropzone").classList.add("has-file");
  hideMessage();
  const limit = state.config && state.config.max_upload_mb;
  if (limit && file.size > limit * 1024 * 1024) {
    showMessage("error", () => ({ title: t("error.413"),
      text: t("file.too.large", { size: formatSize(file.size), mb: limit }) }));
  }
}

function drawFileName() {
  if (state.file) $("file-name").textContent = `${state.file.name} · ${formatSize(state.file.size)}`;
}

function formatSize(bytes) {
  if (bytes < 1024) return t("size.b", { n: bytes });
  if (bytes < 1024 * 1024) return t("size.kb", { n: number(bytes / 1024, 0) });
  return t("size.mb", { n: number(bytes / 1024 / 1024, 1) });
}

function setupFilePicker() {
  const zone = $("dropzone");
  $("file").addEventListener("change", (event) => chooseFile(event.target.files[0]));
  ["dragenter", "dragover"].forEach((type) =>
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    }));
  ["dragleave", "dragend"].forEach((type) => zone.addEventListener(type, () => zone.classList.remove("dragging")));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) chooseFile(file);
  });
  // A file dropped next to the zone must not make the browser navigate away to it.
  ["dragover", "drop"].forEach((type) => window.addEventListener(type, (event) => event.preventDefault()));
}

// --- submitting and following a job -------------------------------------------------------------------

function setBusy(busy) {
  state.busy = busy;
  $("submit").disabled = busy;
  $("submit").textContent = busy ? t("submit.busy") : t("submit");
  $("progress").hidden = !busy;
  $("cancel").disabled = false;
  $("cancel").hidden = true;
}

/** Move the bar to ``fraction``; ``text`` renders the line in the current language. */
function setProgress(fraction, text) {
  const percent = Math.max(0, Math.min(100, Math.round(fraction * 100)));
  $("progress-fill").style.width = `${percent}%`;
  $("progress").querySelector(".bar").setAttribute("aria-valuenow", String(percent));
  state.progress = text;
  $("progress-text").textContent = text();
}

function formFields() {
  const form = new FormData();
  form.append("file", state.file, state.file.name);
  const optional = { pages: $("pages").value, dpi: $("dpi").value, lang: $("lang").value, engine: $("engine").value };
  for (const [name, value] of Object.entries(optional)) {
    if (value && value.trim()) form.append(name, value.trim()); // only what the user set
  }
  return form;
}

const onUnauthorized = () => showKeyRow(true);

async function submit(event) {
  event.preventDefault();
  if (state.busy) return;
  hideMessage();
  if (!state.file) {
    showMessage("error", () => ({ title: t("choose.first"), text: t("choose.first.text") }));
    return;
  }
  if (state.config && state.config.api_key_required && !apiKey()) {
    showKeyRow(true);
    showMessage("error", () => ({ title: t("error.401"), text: t("key.needed.text") }));
    return;
  }
  clearResult();
  setBusy(true);
  setProgress(0, () => t("progress.uploading"));
  const fileUrl = state.fileUrl;
  try {
    const accepted = await upload("jobs", formFields(), (fraction) =>
      setProgress(fraction * 0.1, () => t("progress.uploaded", { percent: Math.round(fraction * 100) })));
    state.job = accepted;
    $("cancel").hidden = false;
    const status = await follow(accepted.status_url || `jobs/${accepted.id}`);
    if (status.status === "succeeded") {
      setProgress(1, () => t("progress.fetching"));
      const result = await (await api(status.result_url || `jobs/${status.id}/result`)).json();
      showResult(result, status, fileUrl);
    } else if (status.status === "cancelled") {
      showMessage("info", () => ({ title: t("job.cancelled"),
        text: t("job.cancelled.text", { done: status.pages_done, total: status.pages_total }) }));
    } else {
      const error = status.error || {};
      throw new ApiError(error.status || 500, error.code || "ocr_failed", error.message || t("job.failed"));
    }
  } catch (error) {
    showError(error, onUnauthorized);
  } finally {
    setBusy(false);
  }
}

/** Poll the job until it has finished; returns its last status. Short network hiccups are retried. */
async function follow(statusUrl) {
  let delay = 300;
  let failures = 0;
  for (;;) {
    let status;
    try {
      status = await (await api(statusUrl)).json();
      failures = 0;
    } catch (error) {
      const transient = error.status === 0 || error.status === 502 || (error.status === 503 && error.code === "shutting_down");
      failures += 1;
      if (!transient || failures > 10) throw error;
      setProgress(0.1, () => t("progress.waiting"));
      await sleep(1500);
      continue;
    }
    const total = status.pages_total || 0;
    const done = status.pages_done || 0;
    if (status.status === "queued") {
      const position = status.queue_position;
      setProgress(0.1, () => (position ? t("progress.queued.at", { position }) : t("progress.queued")));
    } else {
      setProgress(0.1 + 0.9 * (total ? done / total : 0), () => t("progress.pages", { done, pages: count(total, "pages") }));
    }
    if (!["queued", "running"].includes(status.status)) return status;
    await sleep(delay);
    delay = Math.min(1500, delay * 1.3);
  }
}

async function cancel() {
  if (!state.job) return;
  $("cancel").disabled = true;
  try {
    await api(state.job.status_url || `jobs/${state.job.id}`, { method: "DELETE" });
    setProgress(parseFloat($("progress-fill").style.width) / 100 || 0, () => t("progress.cancelling"));
  } catch (error) {
    if (error.status !== 409) showError(error, onUnauthorized); // 409: it finished meanwhile
  }
}

// --- start --------------------------------------------------------------------------------------------

function redraw() {
  drawFileHint();
  drawFileName();
  drawHealth();
  $("submit").textContent = state.busy ? t("submit.busy") : t("submit");
  if (state.busy && state.progress) $("progress-text").textContent = state.progress();
}

function start() {
  translatePage();
  document.querySelectorAll("[data-lang]").forEach((button) =>
    button.addEventListener("click", () => setLanguage(button.dataset.lang)));
  onLanguageChange(redraw);
  setupKey();
  setupFilePicker();
  setupResultView();
  $("upload-form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", cancel);
  if (apiKey()) showKeyRow(false);
  loadConfig().finally(() => {
    document.body.dataset.ready = "true";
  });
  watchHealth();
}

start();
