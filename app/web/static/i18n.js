// The page's languages: Russian and English. The first of the browser's preferred languages that the page
// speaks is used (English when none is), unless the user picked one with the switch on the page (kept in
// this tab, sessionStorage) or the address says ?lang=ru / ?lang=en.
//
// Static text in index.html carries data-i18n (text), data-i18n-placeholder, data-i18n-aria-label,
// data-i18n-title or data-i18n-alt with a key of the dictionaries below; the scripts call t(key, values).

const STORAGE = "paddleocr-vl-service.lang";
export const LANGUAGES = ["ru", "en"];

// Plural entries are objects keyed by Intl.PluralRules categories (one, few, many, other).
const TEXT = {
  en: {
    "page.title": "OCR · paddleocr-vl-service",
    "brand": "Document OCR",
    "language": "Language",
    "health.checking": "Checking the service…",
    "health.unreachable": "Service unreachable",
    "health.engine": "engine",
    "health.healthy": "ready",
    "health.starting": "loading the engine…",
    "health.unhealthy": "engine failed",
    "engine.initializing": "loading",
    "engine.failed": "failed",
    "upload.title": "Try it",
    "drop.title": "Drop a PDF or an image here",
    "drop.or": "or",
    "drop.choose": "choose a file",
    "drop.types": "PDF, PNG, JPEG, TIFF, WebP or BMP",
    "drop.limits": "PDF, PNG, JPEG, TIFF, WebP or BMP · up to {mb} MB and {pages} pages",
    "options": "Options",
    "pages": "Pages",
    "pages.placeholder": "all (e.g. 1-3,5)",
    "dpi.hint": "(PDF pages)",
    "languages": "Languages",
    "languages.placeholder": "default",
    "languages.hint": "Languages, comma-separated: {list}",
    "engine": "Engine",
    "engine.auto": "Automatic",
    "key.label": "API key",
    "key.placeholder": "the service's API_KEY",
    "key.forget": "Forget",
    "key.hint.before": "This service needs a key. It is kept in this browser tab only (sessionStorage) and sent as",
    "submit": "Recognise",
    "submit.busy": "Working…",
    "progress.uploading": "Uploading…",
    "progress.uploaded": "Uploading… {percent}%",
    "progress.waiting": "Waiting for the service…",
    "progress.queued": "Queued…",
    "progress.queued.at": "Queued (position {position})…",
    "progress.pages": "{done} of {pages} recognised",
    "progress.fetching": "Fetching the result…",
    "progress.cancelling": "Cancelling…",
    "cancel": "Cancel",
    "result.title": "Result",
    "download.md": "Download .md",
    "download.json": "Download .json",
    "download.pdf": "Searchable .pdf",
    "download.pdf.title": "The document's own pages with the recognised text over them: search and copy work",
    "download.docx": "Word .docx",
    "download.xlsx": "Tables .xlsx",
    "tab.page": "Page",
    "tab.markdown": "Markdown",
    "tab.json": "JSON",
    "pager.previous": "Previous page",
    "pager.next": "Next page",
    "pager.page": "Page",
    "pager.of": "of {count}",
    "page.alt": "Page {index}",
    "page.failed": "failed",
    "page.no.size": "no size",
    "page.not.recognised": "This page could not be recognised: {error}",
    "page.no.image": "The page image is not available ({reason}); the boxes are drawn on a blank page.",
    "boxes.hint": "Hover over (or tap) a box to see its text and score.",
    "tooltip.score": "score {score}",
    "tooltip.empty": "(no text)",
    "result.partial": "{shown} of {pages}",
    "result.failed.pages": "failed: page {list}",
    "result.some.failed": "{count} page(s) could not be recognised.",
    "result.some.failed.text": "The other pages are shown; the failed ones carry their error in the JSON.",
    "intro.title": "What you get",
    "intro.boxes": "The page with every recognised block outlined: hover for its text and confidence.",
    "intro.markdown": "The document as Markdown, rendered, and the full JSON result.",
    "intro.files": "Both as files to download, and the document as a searchable PDF, a Word file and its tables in Excel.",
    "intro.api": "The page uses the service's jobs API",
    "intro.see": "; see the",
    "intro.docs": "API documentation",
    "footer.docs": "API docs",
    "footer.health": "health",
    "figure": "figure",
    "figure.title": "Figures are stored next to result.md on the server",
    "size.b": "{n} B",
    "size.kb": "{n} KB",
    "size.mb": "{n} MB",
    "n.pages": { one: "{n} page", other: "{n} pages" },
    "n.blocks": { one: "{n} block", other: "{n} blocks" },
    "seconds": "{n} s",
    "choose.first": "Choose a document first.",
    "choose.first.text": "Drop a PDF or an image on the box, or use “choose a file”.",
    "key.needed.text": "Enter the key in the API key field, then press Recognise.",
    "file.too.large": "The file is {size}; this service accepts up to {mb} MB.",
    "job.cancelled": "The job was cancelled.",
    "job.cancelled.text": "{done} of {total} page(s) had been recognised.",
    "job.failed": "the job failed",
    "error.0": "The service could not be reached.",
    "error.400": "The request was incomplete.",
    "error.401": "This service needs an API key.",
    "error.404": "Not found.",
    "error.408": "The upload stalled.",
    "error.409": "The job has no result.",
    "error.410": "This is no longer stored.",
    "error.413": "The document is too large.",
    "error.415": "This file type is not supported.",
    "error.422": "The document or an option could not be used.",
    "error.429": "The service is busy.",
    "error.500": "Something went wrong on the server.",
    "error.502": "The recognition backend failed.",
    "error.503": "The service is not ready.",
    "error.504": "The recognition took too long.",
    "error.507": "The server has no room to store documents right now.",
    "error.other": "The request was refused.",
    "error.key.refused": "The API key was not accepted.",
    "error.job.gone": "The job no longer exists.",
    "error.page.timeout": "A page took too long to recognise.",
    "error.page": "Something went wrong in this page.",
    "error.service.says": "{message}",
    "error.network": "Check the connection and that the service is running, then try again.",
    "error.enter.key": "Enter the key in the API key field and try again.",
    "error.send.types": "Send a PDF, PNG, JPEG, TIFF, WebP or BMP file.",
    "error.retry.after": "Try again in {seconds} s.",
    "error.not.json": "the service answered something that is not JSON",
    "error.aborted": "the upload was stopped",
  },
  ru: {
    "page.title": "Распознавание · paddleocr-vl-service",
    "brand": "Распознавание документов",
    "language": "Язык",
    "health.checking": "Проверяем сервис…",
    "health.unreachable": "Сервис недоступен",
    "health.engine": "движок",
    "health.healthy": "готов",
    "health.starting": "движок загружается…",
    "health.unhealthy": "движок не загрузился",
    "engine.initializing": "загружается",
    "engine.failed": "ошибка",
    "upload.title": "Попробовать",
    "drop.title": "Перетащите сюда PDF или изображение",
    "drop.or": "или",
    "drop.choose": "выберите файл",
    "drop.types": "PDF, PNG, JPEG, TIFF, WebP или BMP",
    "drop.limits": "PDF, PNG, JPEG, TIFF, WebP или BMP · до {mb} МБ и {pages} страниц",
    "options": "Параметры",
    "pages": "Страницы",
    "pages.placeholder": "все (напр. 1-3,5)",
    "dpi.hint": "(страницы PDF)",
    "languages": "Языки",
    "languages.placeholder": "по умолчанию",
    "languages.hint": "Языки через запятую: {list}",
    "engine": "Движок",
    "engine.auto": "Автовыбор",
    "key.label": "Ключ API",
    "key.placeholder": "API_KEY сервиса",
    "key.forget": "Забыть",
    "key.hint.before": "Сервису нужен ключ. Он хранится только в этой вкладке браузера (sessionStorage) и передаётся в",
    "submit": "Распознать",
    "submit.busy": "Работаем…",
    "progress.uploading": "Загрузка…",
    "progress.uploaded": "Загрузка… {percent}%",
    "progress.waiting": "Ждём сервис…",
    "progress.queued": "В очереди…",
    "progress.queued.at": "В очереди (место {position})…",
    "progress.pages": "Распознано {done} из {pages}",
    "progress.fetching": "Получаем результат…",
    "progress.cancelling": "Отменяем…",
    "cancel": "Отменить",
    "result.title": "Результат",
    "download.md": "Скачать .md",
    "download.json": "Скачать .json",
    "download.pdf": "PDF с поиском",
    "download.pdf.title": "Страницы самого документа с распознанным текстом поверх: поиск и копирование работают",
    "download.docx": "Word .docx",
    "download.xlsx": "Таблицы .xlsx",
    "tab.page": "Страница",
    "tab.markdown": "Markdown",
    "tab.json": "JSON",
    "pager.previous": "Предыдущая страница",
    "pager.next": "Следующая страница",
    "pager.page": "Страница",
    "pager.of": "из {count}",
    "page.alt": "Страница {index}",
    "page.failed": "ошибка",
    "page.no.size": "размер неизвестен",
    "page.not.recognised": "Эту страницу распознать не удалось: {error}",
    "page.no.image": "Изображение страницы недоступно ({reason}); блоки нарисованы на пустой странице.",
    "boxes.hint": "Наведите указатель на блок (или коснитесь его), чтобы увидеть текст и уверенность.",
    "tooltip.score": "уверенность {score}",
    "tooltip.empty": "(нет текста)",
    "result.partial": "{shown} из {pages}",
    "result.failed.pages": "ошибка: стр. {list}",
    "result.some.failed": "Не удалось распознать страниц: {count}.",
    "result.some.failed.text": "Остальные страницы показаны; у страниц с ошибкой её причина — в JSON.",
    "intro.title": "Что вы получите",
    "intro.boxes": "Страницу с рамкой вокруг каждого распознанного блока: наведите указатель, чтобы увидеть текст и уверенность.",
    "intro.markdown": "Документ в Markdown (с оформлением) и полный результат в JSON.",
    "intro.files": "И то и другое — файлами для скачивания, а документ — PDF с поиском, файлом Word и таблицами в Excel.",
    "intro.api": "Страница работает через API заданий сервиса",
    "intro.see": "; подробнее — в",
    "intro.docs": "документации API",
    "footer.docs": "Документация API",
    "footer.health": "состояние",
    "figure": "рисунок",
    "figure.title": "Рисунки хранятся на сервере рядом с result.md",
    "size.b": "{n} Б",
    "size.kb": "{n} КБ",
    "size.mb": "{n} МБ",
    "n.pages": { one: "{n} страница", few: "{n} страницы", many: "{n} страниц", other: "{n} страницы" },
    "n.blocks": { one: "{n} блок", few: "{n} блока", many: "{n} блоков", other: "{n} блока" },
    "seconds": "{n} с",
    "choose.first": "Сначала выберите документ.",
    "choose.first.text": "Перетащите PDF или изображение в рамку или нажмите «выберите файл».",
    "key.needed.text": "Введите ключ в поле «Ключ API» и нажмите «Распознать».",
    "file.too.large": "Размер файла — {size}; сервис принимает до {mb} МБ.",
    "job.cancelled": "Задание отменено.",
    "job.cancelled.text": "Успели распознать страниц: {done} из {total}.",
    "job.failed": "задание не выполнено",
    "error.0": "Не удалось связаться с сервисом.",
    "error.400": "Запрос неполный.",
    "error.401": "Сервису нужен ключ API.",
    "error.404": "Не найдено.",
    "error.408": "Загрузка остановилась.",
    "error.409": "У задания нет результата.",
    "error.410": "Это больше не хранится.",
    "error.413": "Документ слишком большой.",
    "error.415": "Этот тип файла не поддерживается.",
    "error.422": "Документ или параметр не подходит.",
    "error.429": "Сервис занят.",
    "error.500": "На сервере что-то пошло не так.",
    "error.502": "Ошибка движка распознавания.",
    "error.503": "Сервис не готов.",
    "error.504": "Распознавание заняло слишком много времени.",
    "error.507": "На сервере сейчас нет места для документов.",
    "error.other": "Запрос отклонён.",
    "error.key.refused": "Ключ API не принят.",
    "error.job.gone": "Задания больше нет.",
    "error.page.timeout": "Страница распознавалась слишком долго.",
    "error.page": "Ошибка на этой странице.",
    "error.service.says": "Ответ сервиса: {message}",
    "error.network": "Проверьте соединение и что сервис запущен, затем повторите.",
    "error.enter.key": "Введите ключ в поле «Ключ API» и повторите.",
    "error.send.types": "Отправьте файл PDF, PNG, JPEG, TIFF, WebP или BMP.",
    "error.retry.after": "Повторите через {seconds} с.",
    "error.not.json": "сервис ответил не в формате JSON",
    "error.aborted": "загрузка остановлена",
  },
};

let current = chooseLanguage();
const listeners = [];

function chooseLanguage() {
  const asked = new URLSearchParams(window.location.search).get("lang");
  if (LANGUAGES.includes(asked)) return asked;
  const saved = sessionStorage.getItem(STORAGE);
  if (LANGUAGES.includes(saved)) return saved;
  const preferred = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
  for (const tag of preferred) {
    const base = String(tag || "").toLowerCase().split("-")[0];
    if (LANGUAGES.includes(base)) return base;
  }
  return "en";
}

/** The language in use: "ru" or "en". */
export function language() {
  return current;
}

/** The text for ``key`` with ``{name}`` placeholders filled from ``values``. */
export function t(key, values = {}) {
  let text = TEXT[current][key] ?? TEXT.en[key];
  if (text === undefined) {
    console.error(`no text for ${key}`);
    return key;
  }
  if (typeof text === "object") text = pluralForm(text, values.n);
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

function pluralForm(forms, count) {
  const category = new Intl.PluralRules(current).select(Number(count) || 0);
  return forms[category] ?? forms.other;
}

/** "3 pages" / "3 страницы": ``noun`` is "pages" or "blocks". */
export function count(n, noun) {
  return t(`n.${noun}`, { n });
}

/** A number written the way the language writes it (1.5 / 1,5). */
export function number(value, digits) {
  return new Intl.NumberFormat(current, { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(value);
}

/** Fill the static text of ``root`` (data-i18n attributes) in the current language. */
export function translatePage(root = document) {
  document.documentElement.lang = current;
  document.title = t("page.title");
  root.querySelectorAll("[data-i18n]").forEach((node) => {
    node.textContent = t(node.dataset.i18n);
  });
  for (const attribute of ["placeholder", "aria-label", "title", "alt"]) {
    const data = `i18n${attribute.replace(/(^|-)(\w)/g, (m, dash, letter) => letter.toUpperCase())}`;
    root.querySelectorAll(`[data-i18n-${attribute}]`).forEach((node) => {
      node.setAttribute(attribute, t(node.dataset[data]));
    });
  }
  root.querySelectorAll("[data-lang]").forEach((button) => {
    button.setAttribute("aria-pressed", String(button.dataset.lang === current));
  });
}

/** Switch to ``lang`` (kept for this tab), refill the page and tell the listeners. */
export function setLanguage(lang) {
  if (!LANGUAGES.includes(lang) || lang === current) return;
  current = lang;
  sessionStorage.setItem(STORAGE, lang);
  translatePage();
  listeners.forEach((listener) => listener(lang));
}

/** Call ``listener`` after every language switch (to redraw text built by the scripts). */
export function onLanguageChange(listener) {
  listeners.push(listener);
}
