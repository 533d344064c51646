// Talking to the service: fetch and XMLHttpRequest (for upload progress) with the API key the user typed
// in, kept in this browser tab only (sessionStorage). Requests use relative URLs, so the page also works
// behind a path prefix.

import { t } from "./i18n.js";

const KEY_STORAGE = "paddleocr-vl-service.api-key";

/** An API answer that is not 2xx, or no answer at all (status 0). */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

function relative(path) {
  return path.replace(/^\/+/, "");
}

function errorFrom(status, text, retryAfter) {
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

/** fetch() with the key; throws ApiError for a non-2xx answer or no answer. */
export async function api(path, options = {}) {
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
    throw errorFrom(response.status, await response.text(), response.headers.get("Retry-After"));
  }
  return response;
}

/** POST the form with XMLHttpRequest, the one browser API that reports upload progress. */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", relative(path));
    const key = apiKey();
    if (key) request.setRequestHeader("X-API-Key", key);
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    request.addEventListener("load", () => {
      if (request.status >= 200 && request.status < 300) {
        try {
          resolve(JSON.parse(request.responseText));
        } catch {
          reject(new ApiError(request.status, "bad_answer", t("error.not.json")));
        }
      } else {
        reject(errorFrom(request.status, request.responseText, request.getResponseHeader("Retry-After")));
      }
    });
    request.addEventListener("error", () => reject(new ApiError(0, "network_error", "")));
    request.addEventListener("abort", () => reject(new ApiError(0, "aborted", t("error.aborted"))));
    request.send(form);
  });
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
