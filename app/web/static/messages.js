// The message box: errors in plain words (a headline by status or code, what to do, the service's own
// message, and "status code" for reference), and notes. Redrawn in the new language after a switch.

import { ApiError, apiKey } from "./api.js";
import { onLanguageChange, t } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const HEADLINES = new Set([0, 400, 401, 404, 408, 409, 410, 413, 415, 422, 429, 500, 502, 503, 504, 507]);

let shown = null; // { kind, render } of the message on screen

function headline(error) {
  if (error.status === -1) return t("error.page");
  if (error.status === 401 && apiKey()) return t("error.key.refused");
  if (error.code === "job_not_found") return t("error.job.gone");
  if (error.code === "page_timeout") return t("error.page.timeout");
  if (HEADLINES.has(error.status)) return t(`error.${error.status}`);
  return error.status >= 500 ? t("error.500") : t("error.other");
}

function explanation(error) {
  const parts = [];
  if (error.message) {
    const message = error.message.charAt(0).toUpperCase() + error.message.slice(1);
    const stop = /[.!?]$/.test(message) ? "" : ".";
    // A service's answer says so (it is in English); the page's own messages are already translated.
    parts.push(error.status > 0 ? t("error.service.says", { message }) + stop : message + stop);
  }
  if (error.status === 0 && error.code === "network_error") parts.push(t("error.network"));
  if (error.status === 401) parts.push(t("error.enter.key"));
  if (error.status === 415) parts.push(t("error.send.types"));
  if (error.retryAfter && [429, 503, 507].includes(error.status)) {
    parts.push(t("error.retry.after", { seconds: error.retryAfter }));
  }
  return parts.join(" ");
}

function draw() {
  const { title, text = "", code = "" } = shown.render();
  const box = $("message");
  box.dataset.kind = shown.kind;
  $("message-title").textContent = title;
  $("message-text").textContent = text;
  $("message-text").hidden = !text;
  $("message-code").textContent = code;
  $("message-code").hidden = !code;
  box.hidden = false;
}

/** Show a message; ``render`` returns its {title, text, code} in the current language. */
export function showMessage(kind, render) {
  shown = { kind, render };
  draw();
}

export function hideMessage() {
  shown = null;
  $("message").hidden = true;
}

/** Show an error (an ApiError, or anything thrown in the page); ``onUnauthorized`` runs on a 401. */
export function showError(error, onUnauthorized = () => {}) {
  if (!(error instanceof ApiError)) {
    console.error(error);
    error = new ApiError(-1, "page_error", String(error && error.message ? error.message : error));
  }
  if (error.status === 401) onUnauthorized();
  const code = error.status > 0 ? `${error.status} ${error.code}` : error.code === "page_error" ? "" : error.code;
  showMessage("error", () => ({ title: headline(error), text: explanation(error), code }));
}

onLanguageChange(() => {
  if (shown) draw();
});
