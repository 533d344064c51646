// The page that tries the service: choose a document, submit it as a job, follow its progress, then show
// the page with its blocks, the rendered Markdown and the raw JSON.
//
// Everything shown is built from text nodes, never from HTML strings: recognised text and error messages are
// data, not markup. Requests use relative URLs, so the page also works behind a path prefix.

import { renderMarkdown } from "./markdown.js";

const KEY_STORAGE = "paddleocr-vl-service.api-key";
const BROWSER_IMAGES = new Set(["image/png", "image/jpeg", "image/webp", "image/bmp"]);
const $ = (id) => document.getElementById(id);

const state = {
  config: null,
  file: null,
  fileUrl: null, // object URL of the chosen file, shown directly when the browser can draw it
  resultFileUrl: null, // the same for the file whose result is shown (another may be chosen meanwhile)
  job: null,
  result: null,
  pageIndex: 0,
  pageUrls: new Map(), // page number -> object URL of the server-rendered page image
  busy: false,
  cancelRequested: false,
};

/** An API answer that is not 2xx, or no answer at all (status 0). */
class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// --- API ----------------------------------------------------------------------------------------------

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

function relative(path) {
  return path.replace(/^\/+/, "");
}

async function errorFrom(status, text, retryAfter) {
  let code = `http_${status}`;
  let message = "";
  try {
    const body = JSON.parse(text);
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || "";
    } else if (body && typeof body.detail === "string") {
      message = body.detail;
    }
  } catch {
    message = text && text.length < 300 ? text.trim() : "";
  }
  return new ApiError(status, code, message, retryAfter);
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = apiKey();
  if (key) headers.set("X-API-Key", key);
  let response;
  try {
    response = await fetch(relative(path), { ...options, headers, cache: "no-store" });
  } catch {
    throw new ApiError(0, "network_error", "");
  }
  if (!response.ok) {
    throw await errorFrom(response.status, await response.text(), response.headers.get("Retry-After"));
  }
  return response;
}

/** POST the form with XMLHttpRequest, the one browser API that reports upload progress. */
function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", relative(path));
    const key = apiKey();
    if (key) request.setRequestHeader("X-API-Key", key);
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    request.addEventListener("load", async () => {
      if (request.status >= 200 && request.status < 300) {
        try {
          resolve(JSON.parse(request.responseText));
        } catch {
          reject(new ApiError(request.status, "bad_answer", "the service answered something that is not JSON"));
        }
      } else {
        reject(await errorFrom(request.status, request.responseText, request.getResponseHeader("Retry-After")));
      }
    });
    request.addEventListener("error", () => reject(new ApiError(0, "network_error", "")));
    request.addEventListener("abort", () => reject(new ApiError(0, "aborted", "the upload was stopped")));
    request.send(form);
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- messages -----------------------------------------------------------------------------------------

const HEADLINES = {
  0: "The service could not be reached.",
  400: "The request was incomplete.",
  401: "This service needs an API key.",
  404: "Not found.",
  409: "The job has no result.",
  410: "This is no longer stored.",
  413: "The document is too large.",
  415: "This file type is not supported.",
  422: "The document or an option could not be used.",
  429: "The service is busy.",
  500: "Something went wrong on the server.",
  502: "The recognition backend failed.",
  503: "The service is not ready.",
  504: "The recognition took too long.",
};

function headline(error) {
  if (error.status === 401 && apiKey()) return "The API key was not accepted.";
  if (error.code === "job_not_found") return "The job no longer exists.";
  if (error.code === "page_timeout") return "A page took too long to recognise.";
  return HEADLINES[error.status] || (error.status >= 500 ? HEADLINES[500] : "The request was refused.");
}

function explanation(error) {
  const parts = [];
  if (error.message) parts.push(capitalise(error.message) + (/[.!?]$/.test(error.message) ? "" : "."));
  if (error.status === 0 && error.code === "network_error") {
    parts.push("Check the connection and that the service is running, then try again.");
  }
  if (error.status === 401) parts.push("Enter the key in the API key field and try again.");
  if (error.status === 415) parts.push("Send a PDF, PNG, JPEG, TIFF, WebP or BMP file.");
  if (error.retryAfter && [429, 503].includes(error.status)) parts.push(`Try again in ${error.retryAfter} s.`);
  return parts.join(" ");
}

function capitalise(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function showMessage(kind, title, text = "", code = "") {
  const box = $("message");
  box.dataset.kind = kind;
  $("message-title").textContent = title;
  $("message-text").textContent = text;
  $("message-text").hidden = !text;
  $("message-code").textContent = code;
  $("message-code").hidden = !code;
  box.hidden = false;
}

function showError(error) {
  if (!(error instanceof ApiError)) {
    console.error(error);
    error = new ApiError(-1, "page_error", String(error && error.message ? error.message : error));
  }
  if (error.status === 401) showKeyRow(true);
  const code = error.status > 0 ? `${error.status} ${error.code}` : error.code === "page_error" ? "" : error.code;
  showMessage("error", error.status === -1 ? "Something went wrong in this page." : headline(error),
    explanation(error), code);
}

function hideMessage() {
  $("message").hidden = true;
}

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
  $("file-hint").textContent =
    `PDF, PNG, JPEG, TIFF, WebP or BMP · up to ${config.max_upload_mb} MB and ${config.max_pages} pages`;
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
    const option = new Option(engine.state && engine.state !== "ready" ? `${engine.name} (${engine.state})` : engine.name,
      engine.name);
    option.disabled = engine.state === "failed";
    select.add(option);
  }
  select.value = [...select.options].some((option) => option.value === chosen) ? chosen : "";
  $("engine-row").hidden = engines.length < 2;

  const languages = new Set(Array.isArray(health.languages) ? health.languages.map(String) : []);
  engines.forEach((engine) => engine.languages.forEach((code) => languages.add(code)));
  const list = $("lang-list");
  list.replaceChildren(...[...languages].sort().map((code) => new Option(code)));
  const hint = $("lang-hint");
  hint.hidden = languages.size === 0;
  const shown = [...languages].sort().slice(0, 12).join(", ");
  hint.textContent = languages.size
    ? `Languages, comma-separated: ${shown}${languages.size > 12 ? ", …" : ""}`
    : "";
}

async function watchHealth() {
  const label = $("health");
  for (;;) {
    let health = null;
    try {
      health = await (await api("health")).json();
    } catch {
      label.dataset.state = "down";
      label.textContent = "Service unreachable";
    }
    if (health) {
      const engine = health.engine || {};
      const states = { healthy: "ready", starting: "loading the engine…", unhealthy: "engine failed" };
      label.dataset.state = health.status;
      label.textContent = `${engine.name || "engine"} · ${states[health.status] || health.status}`;
      label.title = engine.error || engine.detail || engine.selection || "";
      $("version").textContent = health.version ? `paddleocr-vl-service ${health.version}` : "";
      showEngineChoices(health);
    }
    // quickly while the engine loads, then now and then (an engine can fail or recover later)
    const status = health ? health.status : "down";
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
  $("api-key").addEventListener("input", (event) => {
    const key = event.target.value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
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
  const name = $("file-name");
  name.textContent = `${file.name} · ${formatSize(file.size)}`;
  name.hidden = false;
  $("dropzone").classList.add("has-file");
  hideMessage();
  const limit = state.config && state.config.max_upload_mb;
  if (limit && file.size > limit * 1024 * 1024) {
    showMessage("error", HEADLINES[413], `The file is ${formatSize(file.size)}; this service accepts up to ${limit} MB.`);
  }
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
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
  $("submit").textContent = busy ? "Working…" : "Recognise";
  $("progress").hidden = !busy;
  $("cancel").disabled = false;
  $("cancel").hidden = true;
}

function setProgress(fraction, text) {
  const percent = Math.max(0, Math.min(100, Math.round(fraction * 100)));
  $("progress-fill").style.width = `${percent}%`;
  $("progress").querySelector(".bar").setAttribute("aria-valuenow", String(percent));
  $("progress-text").textContent = text;
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

async function submit(event) {
  event.preventDefault();
  if (state.busy) return;
  hideMessage();
  if (!state.file) {
    showMessage("error", "Choose a document first.", "Drop a PDF or an image on the box, or use “choose a file”.");
    return;
  }
  if (state.config && state.config.api_key_required && !apiKey()) {
    showKeyRow(true);
    showMessage("error", HEADLINES[401], "Enter the key in the API key field, then press Recognise.");
    return;
  }
  clearResult();
  setBusy(true);
  state.cancelRequested = false;
  setProgress(0, "Uploading…");
  const fileUrl = state.fileUrl;
  try {
    const accepted = await upload("jobs", formFields(), (fraction) =>
      setProgress(fraction * 0.1, `Uploading… ${Math.round(fraction * 100)}%`));
    state.job = accepted;
    $("cancel").hidden = false;
    const status = await follow(accepted.status_url || `jobs/${accepted.id}`);
    if (status.status === "succeeded") {
      setProgress(1, "Fetching the result…");
      const result = await (await api(status.result_url || `jobs/${status.id}/result`)).json();
      showResult(result, status, fileUrl);
    } else if (status.status === "cancelled") {
      showMessage("info", "The job was cancelled.", `${status.pages_done} of ${status.pages_total} page(s) had been recognised.`);
    } else {
      const error = status.error || {};
      throw new ApiError(error.status || 500, error.code || "ocr_failed", error.message || "the job failed");
    }
  } catch (error) {
    showError(error);
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
      setProgress(0.1, "Waiting for the service…");
      await sleep(1500);
      continue;
    }
    const total = status.pages_total || 0;
    const done = status.pages_done || 0;
    if (status.status === "queued") {
      setProgress(0.1, status.queue_position ? `Queued (position ${status.queue_position})…` : "Queued…");
    } else {
      setProgress(0.1 + 0.9 * (total ? done / total : 0), `${done} of ${plural(total, "page")} recognised`);
    }
    if (!["queued", "running"].includes(status.status)) return status;
    await sleep(delay);
    delay = Math.min(1500, delay * 1.3);
  }
}

async function cancel() {
  if (!state.job) return;
  $("cancel").disabled = true;
  state.cancelRequested = true;
  try {
    await api(state.job.status_url || `jobs/${state.job.id}`, { method: "DELETE" });
    setProgress(parseFloat($("progress-fill").style.width) / 100 || 0, "Cancelling…");
  } catch (error) {
    if (error.status !== 409) showError(error); // 409: it finished meanwhile
  }
}

// --- showing the result -------------------------------------------------------------------------------

function clearResult() {
  state.result = null;
  state.pageUrls.forEach((url) => URL.revokeObjectURL(url));
  state.pageUrls.clear();
  $("result").hidden = true;
}

function showResult(result, status, fileUrl) {
  state.result = result;
  state.resultFileUrl = fileUrl;
  state.pageIndex = 0;
  $("intro").hidden = true;
  $("result").hidden = false;
  $("result-title").textContent = result.filename || "Result";
  const seconds = result.timings ? (result.timings.total_ms / 1000).toFixed(1) : "?";
  const blocks = result.pages.reduce((sum, page) => sum + page.blocks.length, 0);
  const failed = (status && status.failed_pages) || result.pages.filter((page) => page.error).map((page) => page.index);
  const pages = result.pages.length === result.page_count
    ? plural(result.page_count, "page")
    : `${result.pages.length} of ${plural(result.page_count, "page")}`;
  $("result-meta").textContent = `${pages} · ${plural(blocks, "block")} · ${result.engine} · ${seconds} s` +
    (failed.length ? ` · failed: page ${failed.join(", ")}` : "");

  const select = $("page-select");
  select.replaceChildren(...result.pages.map((page, index) => new Option(String(page.index), String(index))));
  $("page-count").textContent = `of ${result.page_count}`;
  $("markdown").replaceChildren(renderMarkdown(result.markdown));
  $("json").textContent = JSON.stringify(result, null, 2);
  selectTab("page");
  showPage(0);
  if (window.matchMedia("(max-width: 959px)").matches) $("result").scrollIntoView({ block: "start" });
  if (failed.length) {
    showMessage("info", `${failed.length} page(s) could not be recognised.`,
      "The other pages are shown; the failed ones carry their error in the JSON.");
  } else {
    hideMessage();
  }
}

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

function baseName() {
  const name = (state.result && state.result.filename) || "result";
  return name.replace(/\.[^.]+$/, "") || "result";
}

function download(text, type, extension) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = `${baseName()}.${extension}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function selectTab(name) {
  for (const tab of ["page", "markdown", "json"]) {
    $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    $(`panel-${tab}`).hidden = tab !== name;
  }
}

async function showPage(index) {
  const result = state.result;
  if (!result || !result.pages.length) return;
  state.pageIndex = Math.max(0, Math.min(result.pages.length - 1, index));
  const page = result.pages[state.pageIndex];
  $("page-select").value = String(state.pageIndex);
  $("prev-page").disabled = state.pageIndex === 0;
  $("next-page").disabled = state.pageIndex === result.pages.length - 1;
  $("page-info").textContent = page.error ? "failed" : plural(page.blocks.length, "block");
  hideTooltip();

  const stage = $("stage");
  const image = $("page-image");
  const note = $("page-note");
  note.hidden = true;
  stage.classList.toggle("failed", Boolean(page.error));
  if (page.error || !page.width || !page.height) {
    image.removeAttribute("src");
    $("boxes").replaceChildren();
    stage.style.aspectRatio = "";
    note.textContent = `This page could not be recognised: ${page.error || "no size"}`;
    note.hidden = false;
    return;
  }
  stage.style.aspectRatio = `${page.width} / ${page.height}`;
  drawBoxes(page);
  image.alt = `Page ${page.index}`;
  image.removeAttribute("src");
  stage.classList.remove("no-image");
  const shown = page.index;
  try {
    const url = await pageImageUrl(page);
    if (state.result === result && result.pages[state.pageIndex].index === shown) image.src = url;
  } catch (error) {
    if (state.result !== result || result.pages[state.pageIndex].index !== shown) return;
    stage.classList.add("no-image");
    note.textContent = `The page image is not available (${error.message || error.code}); the boxes are drawn on a blank page.`;
    note.hidden = false;
  }
}

/** The uploaded file itself when the browser can draw it (a one-page PNG/JPEG/WebP/BMP read as it lay),
 * otherwise the page as the server rendered it for the engine (PDF pages at the job's dpi, TIFF frames, pages
 * turned upright: `rotation`). */
async function pageImageUrl(page) {
  const result = state.result;
  const asUploaded = BROWSER_IMAGES.has(result.content_type) && result.page_count === 1 && !page.rotation;
  if (state.resultFileUrl && asUploaded) {
    return state.resultFileUrl;
  }
  if (state.pageUrls.has(page.index)) return state.pageUrls.get(page.index);
  const response = await api(`jobs/${result.id}/pages/${page.index}/image`);
  const url = URL.createObjectURL(await response.blob());
  state.pageUrls.set(page.index, url);
  return url;
}

function drawBoxes(page) {
  const layer = $("boxes");
  const boxes = [];
  page.blocks.forEach((block, number) => {
    const [x0, y0, x1, y1] = block.bbox;
    const box = document.createElement("div");
    box.className = "box";
    box.dataset.label = block.label || "text";
    box.dataset.index = String(number);
    box.tabIndex = 0;
    box.setAttribute("role", "button");
    box.setAttribute("aria-label", `${block.label || "text"}: ${block.text}`);
    box.style.left = `${(100 * x0) / page.width}%`;
    box.style.top = `${(100 * y0) / page.height}%`;
    box.style.width = `${(100 * Math.max(0, x1 - x0)) / page.width}%`;
    box.style.height = `${(100 * Math.max(0, y1 - y0)) / page.height}%`;
    boxes.push(box);
  });
  layer.replaceChildren(...boxes);
}

function blockOf(box) {
  const page = state.result && state.result.pages[state.pageIndex];
  return page ? page.blocks[Number(box.dataset.index)] : null;
}

function showTooltip(box) {
  const block = blockOf(box);
  if (!block) return;
  document.querySelectorAll(".box.active").forEach((other) => other.classList.remove("active"));
  box.classList.add("active");
  const tooltip = $("tooltip");
  const score = typeof block.score === "number" ? ` · score ${block.score.toFixed(3)}` : "";
  tooltip.querySelector(".tooltip-head").textContent = `${block.label || "text"} #${block.order ?? box.dataset.index}${score}`;
  tooltip.querySelector(".tooltip-text").textContent = block.text || "(no text)";
  tooltip.hidden = false;
  const view = $("page-view").getBoundingClientRect();
  const rect = box.getBoundingClientRect();
  const width = tooltip.offsetWidth;
  const left = Math.max(4, Math.min(rect.left - view.left, view.width - width - 4));
  const below = rect.bottom - view.top + 6;
  const above = rect.top - view.top - tooltip.offsetHeight - 6;
  tooltip.style.left = `${left}px`;
  tooltip.style.top = `${below + tooltip.offsetHeight > view.height && above > 0 ? above : below}px`;
}

function hideTooltip() {
  $("tooltip").hidden = true;
  document.querySelectorAll(".box.active").forEach((box) => box.classList.remove("active"));
}

function setupResultView() {
  for (const tab of ["page", "markdown", "json"]) $(`tab-${tab}`).addEventListener("click", () => selectTab(tab));
  $("page-select").addEventListener("change", (event) => showPage(Number(event.target.value)));
  $("prev-page").addEventListener("click", () => showPage(state.pageIndex - 1));
  $("next-page").addEventListener("click", () => showPage(state.pageIndex + 1));
  const layer = $("boxes");
  layer.addEventListener("mouseover", (event) => {
    if (event.target.classList.contains("box")) showTooltip(event.target);
  });
  layer.addEventListener("focusin", (event) => {
    if (event.target.classList.contains("box")) showTooltip(event.target);
  });
  layer.addEventListener("click", (event) => {
    if (event.target.classList.contains("box")) showTooltip(event.target);
  });
  $("page-view").addEventListener("mouseleave", hideTooltip);
  layer.addEventListener("focusout", hideTooltip);
  $("download-md").addEventListener("click", () =>
    download(state.result.markdown, "text/markdown;charset=utf-8", "md"));
  $("download-json").addEventListener("click", () =>
    download(JSON.stringify(state.result, null, 2), "application/json", "json"));
}

// --- start --------------------------------------------------------------------------------------------

function start() {
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
