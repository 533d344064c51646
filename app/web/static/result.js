// The result: the page with its blocks outlined (hover or tap for text and score), the rendered Markdown,
// the raw JSON and the downloads. Everything is built from text nodes, never from HTML strings.

import { api } from "./api.js";
import { count, number, onLanguageChange, t } from "./i18n.js";
import { renderMarkdown } from "./markdown.js";
import { hideMessage, showError, showMessage } from "./messages.js";

export const BROWSER_IMAGES = new Set(["image/png", "image/jpeg", "image/webp", "image/bmp"]);
const $ = (id) => document.getElementById(id);

const view = {
  result: null,
  status: null,
  fileUrl: null, // the uploaded file when the browser can draw it
  pageIndex: 0,
  pageUrls: new Map(), // page number -> object URL of the server-rendered page image
};

export function clearResult() {
  view.result = null;
  view.pageUrls.forEach((url) => URL.revokeObjectURL(url));
  view.pageUrls.clear();
  $("result").hidden = true;
}

/** Show a finished job's ``result`` (``status`` is the job's last status; ``fileUrl`` the uploaded file). */
export function showResult(result, status, fileUrl) {
  Object.assign(view, { result, status, fileUrl, pageIndex: 0 });
  $("intro").hidden = true;
  $("result").hidden = false;
  const select = $("page-select");
  select.replaceChildren(...result.pages.map((page, index) => new Option(String(page.index), String(index))));
  $("json").textContent = JSON.stringify(result, null, 2);
  $("download-xlsx").hidden = !hasTables(result);
  drawTexts();
  selectTab("page");
  showPage(0);
  if (window.matchMedia("(max-width: 959px)").matches) $("result").scrollIntoView({ block: "start" });
  const failed = failedPages();
  if (failed.length) {
    showMessage("info", () => ({ title: t("result.some.failed", { count: failed.length }),
      text: t("result.some.failed.text") }));
  } else {
    hideMessage();
  }
}

function failedPages() {
  const { result, status } = view;
  return (status && status.failed_pages) || result.pages.filter((page) => page.error).map((page) => page.index);
}

/** The text of the result view that depends on the language. */
function drawTexts() {
  const result = view.result;
  $("result-title").textContent = result.filename || t("result.title");
  const seconds = result.timings ? number(result.timings.total_ms / 1000, 1) : "?";
  const blocks = result.pages.reduce((sum, page) => sum + page.blocks.length, 0);
  const failed = failedPages();
  const pages = result.pages.length === result.page_count
    ? count(result.page_count, "pages")
    : t("result.partial", { shown: result.pages.length, pages: count(result.page_count, "pages") });
  const parts = [pages, count(blocks, "blocks"), result.engine, t("seconds", { n: seconds })];
  if (failed.length) parts.push(t("result.failed.pages", { list: failed.join(", ") }));
  $("result-meta").textContent = parts.join(" · ");
  $("page-count").textContent = t("pager.of", { count: result.page_count });
  const labels = { figure: t("figure"), figureTitle: t("figure.title") };
  $("markdown").replaceChildren(renderMarkdown(result.markdown, labels));
}

function baseName() {
  const name = (view.result && view.result.filename) || "result";
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

function hasTables(result) {
  return result.pages.some((page) => page.blocks.some((block) => block.table || block.label === "table"));
}

/** A file made by the service (searchable PDF, Word, Excel): fetched with the key, saved under the document's
 * name. The button says it is busy meanwhile; the first request makes the file (a long document takes a while). */
async function downloadFile(button, output) {
  if (button.disabled) return;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    const response = await api(`jobs/${encodeURIComponent(view.result.id)}/result?output=${output}`);
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = `${baseName()}.${output}`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

function selectTab(name) {
  for (const tab of ["page", "markdown", "json"]) {
    $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    $(`panel-${tab}`).hidden = tab !== name;
  }
}

async function showPage(index) {
  const result = view.result;
  if (!result || !result.pages.length) return;
  view.pageIndex = Math.max(0, Math.min(result.pages.length - 1, index));
  const page = result.pages[view.pageIndex];
  $("page-select").value = String(view.pageIndex);
  $("prev-page").disabled = view.pageIndex === 0;
  $("next-page").disabled = view.pageIndex === result.pages.length - 1;
  $("page-info").textContent = page.error ? t("page.failed") : count(page.blocks.length, "blocks");
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
    note.textContent = t("page.not.recognised", { error: page.error || t("page.no.size") });
    note.hidden = false;
    return;
  }
  stage.style.aspectRatio = `${page.width} / ${page.height}`;
  drawBoxes(page);
  image.alt = t("page.alt", { index: page.index });
  image.removeAttribute("src");
  stage.classList.remove("no-image");
  const shown = page.index;
  const stillShown = () => view.result === result && result.pages[view.pageIndex].index === shown;
  try {
    const url = await pageImageUrl(page);
    if (stillShown()) image.src = url;
  } catch (error) {
    if (!stillShown()) return;
    stage.classList.add("no-image");
    note.textContent = t("page.no.image", { reason: error.message || error.code });
    note.hidden = false;
  }
}

/** The uploaded file itself when the browser can draw it (a one-page PNG/JPEG/WebP/BMP read as it lay),
 * otherwise the page as the server rendered it for the engine (PDF pages at the job's dpi, TIFF frames, pages
 * turned upright: `rotation`). */
async function pageImageUrl(page) {
  const result = view.result;
  const asUploaded = BROWSER_IMAGES.has(result.content_type) && result.page_count === 1 && !page.rotation;
  if (view.fileUrl && asUploaded) return view.fileUrl;
  if (view.pageUrls.has(page.index)) return view.pageUrls.get(page.index);
  const response = await api(`jobs/${result.id}/pages/${page.index}/image`);
  const url = URL.createObjectURL(await response.blob());
  view.pageUrls.set(page.index, url);
  return url;
}

function drawBoxes(page) {
  const boxes = page.blocks.map((block, index) => {
    const [x0, y0, x1, y1] = block.bbox;
    const box = document.createElement("div");
    box.className = "box";
    box.dataset.label = block.label || "text";
    box.dataset.index = String(index);
    box.tabIndex = 0;
    box.setAttribute("role", "button");
    box.setAttribute("aria-label", `${block.label || "text"}: ${block.text}`);
    box.style.left = `${(100 * x0) / page.width}%`;
    box.style.top = `${(100 * y0) / page.height}%`;
    box.style.width = `${(100 * Math.max(0, x1 - x0)) / page.width}%`;
    box.style.height = `${(100 * Math.max(0, y1 - y0)) / page.height}%`;
    return box;
  });
  $("boxes").replaceChildren(...boxes);
}

function showTooltip(box) {
  const page = view.result && view.result.pages[view.pageIndex];
  const block = page ? page.blocks[Number(box.dataset.index)] : null;
  if (!block) return;
  document.querySelectorAll(".box.active").forEach((other) => other.classList.remove("active"));
  box.classList.add("active");
  const tooltip = $("tooltip");
  const score = typeof block.score === "number" ? ` · ${t("tooltip.score", { score: block.score.toFixed(3) })}` : "";
  tooltip.querySelector(".tooltip-head").textContent = `${block.label || "text"} #${block.order ?? box.dataset.index}${score}`;
  tooltip.querySelector(".tooltip-text").textContent = block.text || t("tooltip.empty");
  tooltip.hidden = false;
  const area = $("page-view").getBoundingClientRect();
  const rect = box.getBoundingClientRect();
  const left = Math.max(4, Math.min(rect.left - area.left, area.width - tooltip.offsetWidth - 4));
  const below = rect.bottom - area.top + 6;
  const above = rect.top - area.top - tooltip.offsetHeight - 6;
  tooltip.style.left = `${left}px`;
  tooltip.style.top = `${below + tooltip.offsetHeight > area.height && above > 0 ? above : below}px`;
}

function hideTooltip() {
  $("tooltip").hidden = true;
  document.querySelectorAll(".box.active").forEach((box) => box.classList.remove("active"));
}

export function setupResultView() {
  for (const tab of ["page", "markdown", "json"]) $(`tab-${tab}`).addEventListener("click", () => selectTab(tab));
  $("page-select").addEventListener("change", (event) => showPage(Number(event.target.value)));
  $("prev-page").addEventListener("click", () => showPage(view.pageIndex - 1));
  $("next-page").addEventListener("click", () => showPage(view.pageIndex + 1));
  const layer = $("boxes");
  for (const type of ["mouseover", "focusin", "click"]) {
    layer.addEventListener(type, (event) => {
      if (event.target.classList.contains("box")) showTooltip(event.target);
    });
  }
  // A mouse leaving the page hides the tooltip; a finger does not hover, so the mouse events a browser makes up
  // after a tap (a long tooltip can move the page under the finger) must not hide what the tap just showed.
  $("page-view").addEventListener("pointerleave", (event) => {
    if (event.pointerType === "mouse") hideTooltip();
  });
  layer.addEventListener("focusout", hideTooltip);
  $("download-md").addEventListener("click", () =>
    download(view.result.markdown, "text/markdown;charset=utf-8", "md"));
  $("download-json").addEventListener("click", () =>
    download(JSON.stringify(view.result, null, 2), "application/json", "json"));
  for (const output of ["pdf", "docx", "xlsx"]) {
    const button = $(`download-${output}`);
    button.addEventListener("click", () => downloadFile(button, output));
  }
  onLanguageChange(() => {
    if (!view.result) return;
    drawTexts();
    showPage(view.pageIndex);
  });
}
