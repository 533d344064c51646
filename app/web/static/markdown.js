// A small, safe Markdown renderer for OCR results.
//
// Safety by construction: the output is built with document.createElement and text nodes, never by
// assigning HTML strings, so recognised text such as "<script>" is shown as those characters. HTML that
// the Markdown itself contains (PaddleOCR-VL writes tables as <table>, figures as <img>) is parsed with
// DOMParser into an inert document (no scripts run, nothing loads) and copied back element by element
// through an allowlist: table and text-formatting tags survive with no attributes except numeric
// colspan/rowspan; <img> becomes a labelled placeholder; everything else keeps only its text.
// Links keep http(s) and mailto targets only.
//
// Supported: headings, paragraphs, hard breaks, emphasis, strong, strikethrough, code spans and fences,
// $…$ and $$…$$ math (shown as text), block quotes, ordered and unordered (nested) lists, GFM pipe
// tables, horizontal rules, links, images (as placeholders), autolinks and HTML blocks.

const ALLOWED_TAGS = new Set([
  "table", "thead", "tbody", "tfoot", "tr", "td", "th", "caption", "colgroup", "col",
  "p", "br", "b", "strong", "i", "em", "u", "s", "del", "sub", "sup", "code", "pre", "span", "div",
  "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "hr", "center",
]);
// Dropped with everything inside them: their content is code or markup, not document text.
const DROPPED_TAGS = new Set([
  "script", "style", "template", "iframe", "frame", "frameset", "object", "embed", "noscript", "noembed",
  "textarea", "select", "option", "svg", "math", "head", "title", "link", "meta", "base", "form", "input",
  "button", "audio", "video", "canvas",
]);
const NUMERIC_ATTRIBUTES = { td: ["colspan", "rowspan"], th: ["colspan", "rowspan"], col: ["span"], colgroup: ["span"] };
const SAFE_LINK = /^(https?:\/\/|mailto:)/i;

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const LIST_ITEM = /^( *)([-*+]|\d{1,9}[.)])[ \t]+(.*)$/;
const HTML_BLOCK = /^ {0,3}<\/?([a-zA-Z][a-zA-Z0-9-]*)(?:[\s/>]|$)/;
const TABLE_SEPARATOR = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;
const MATH_FENCE = /^ {0,3}\$\$(.*)$/;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const DEFAULT_LABELS = { figure: "figure", figureTitle: "Figures are stored next to result.md on the server" };
let labels = DEFAULT_LABELS;

/** Render Markdown ``source`` to a DocumentFragment built from safe elements and text nodes only.
 * ``words`` translates the page's own words: {figure, figureTitle} for the figure placeholders. */
export function renderMarkdown(source, words = {}) {
  const fragment = document.createDocumentFragment();
  const lines = String(source ?? "").replace(/\r\n?/g, "\n").split("\n");
  labels = { ...DEFAULT_LABELS, ...words };
  try {
    renderBlocks(lines, fragment);
  } finally {
    labels = DEFAULT_LABELS;
  }
  return fragment;
}

function isBlank(line) {
  return line.trim() === "";
}

function startsBlock(line, next) {
  return (
    FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || LIST_ITEM.test(line) ||
    HTML_BLOCK.test(line) || MATH_FENCE.test(line) || (next !== undefined && isTableStart(line, next))
  );
}

function isTableStart(line, next) {
  return line.includes("|") && TABLE_SEPARATOR.test(next) && next.includes("-");
}

function renderBlocks(lines, parent) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (isBlank(line)) {
      i += 1;
      continue;
    }
    let match;
    if ((match = FENCE.exec(line))) {
      const fence = match[1];
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(fence)) body.push(lines[i++]);
      i += 1; // the closing fence (or the end)
      const pre = el("pre");
      const code = el("code", match[2] ? `language-${match[2]}` : "", body.join("\n"));
      pre.append(code);
      parent.append(pre);
    } else if ((match = MATH_FENCE.exec(line))) {
      // $$ … $$ on one line, or spread over several lines
      const rest = match[1];
      const body = [];
      if (rest.trimEnd().endsWith("$$") && rest.trim() !== "") {
        body.push(rest.trimEnd().slice(0, -2));
        i += 1;
      } else {
        if (rest.trim()) body.push(rest);
        i += 1;
        while (i < lines.length && !lines[i].includes("$$")) body.push(lines[i++]);
        if (i < lines.length) {
          const last = lines[i].slice(0, lines[i].indexOf("$$"));
          if (last.trim()) body.push(last);
          i += 1;
        }
      }
      parent.append(el("pre", "math", body.join("\n").trim()));
    } else if ((match = HEADING.exec(line))) {
      const heading = el(`h${match[1].length}`);
      renderInline(match[2] || "", heading);
      parent.append(heading);
      i += 1;
    } else if (RULE.test(line)) {
      parent.append(el("hr"));
      i += 1;
    } else if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && !isBlank(lines[i])) {
        const quoted = QUOTE.exec(lines[i]);
        inner.push(quoted ? quoted[1] : lines[i]);
        i += 1;
      }
      const quote = el("blockquote");
      renderBlocks(inner, quote);
      parent.append(quote);
    } else if (LIST_ITEM.test(line)) {
      i = renderList(lines, i, parent);
    } else if (HTML_BLOCK.test(line)) {
      const html = [];
      while (i < lines.length && !isBlank(lines[i])) html.push(lines[i++]);
      parent.append(sanitizeHtml(html.join("\n")));
    } else if (i + 1 < lines.length && isTableStart(line, lines[i + 1])) {
      i = renderTable(lines, i, parent);
    } else {
      const text = [];
      while (i < lines.length && !isBlank(lines[i]) && (text.length === 0 || !startsBlock(lines[i], lines[i + 1]))) {
        text.push(lines[i]);
        i += 1;
      }
      const paragraph = el("p");
      text.forEach((part, index) => {
        const hardBreak = /( {2,}|\\)$/.test(part) && index < text.length - 1;
        renderInline(hardBreak ? part.replace(/( {2,}|\\)$/, "") : part.trim(), paragraph);
        if (index < text.length - 1) paragraph.append(hardBreak ? el("br") : document.createTextNode(" "));
      });
      parent.append(paragraph);
    }
  }
}

function renderList(lines, start, parent) {
  const first = LIST_ITEM.exec(lines[start]);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const list = el(ordered ? "ol" : "ul");
  if (ordered) {
    const number = parseInt(first[2], 10);
    if (number !== 1) list.start = number;
  }
  let i = start;
  let item = null;
  let body = [];
  const flush = () => {
    if (item) {
      const nested = [];
      const inline = [];
      let j = 0;
      while (j < body.length && !LIST_ITEM.test(body[j])) inline.push(body[j++].trim());
      while (j < body.length) nested.push(body[j++]);
      renderInline(inline.join(" "), item);
      if (nested.length) renderBlocks(nested, item);
      list.append(item);
    }
  };
  while (i < lines.length) {
    const line = lines[i];
    const match = LIST_ITEM.exec(line);
    const sameLevel = match && match[1].length <= indent + 1;
    if (sameLevel && /\d/.test(match[2]) !== ordered) {
      break; // the other kind of list starts here
    } else if (sameLevel) {
      flush();
      item = el("li");
      body = [match[3]];
      i += 1;
    } else if (isBlank(line)) {
      // a blank line ends the list unless the next line continues it (an item or an indented line)
      const next = lines[i + 1];
      if (next !== undefined && (LIST_ITEM.test(next) || /^ {2,}\S/.test(next))) {
        i += 1;
      } else {
        break;
      }
    } else if (match || /^ {2,}\S/.test(line) || (!startsBlock(line, lines[i + 1]) && body.length)) {
      body.push(match ? line.slice(Math.min(indent + 2, match[1].length)) : line);
      i += 1;
    } else {
      break;
    }
  }
  flush();
  parent.append(list);
  return i;
}

function splitRow(line) {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
  const cells = [];
  let current = "";
  for (let k = 0; k < row.length; k += 1) {
    if (row[k] === "\\" && row[k + 1] === "|") {
      current += "|";
      k += 1;
    } else if (row[k] === "|") {
      cells.push(current.trim());
      current = "";
    } else {
      current += row[k];
    }
  }
  cells.push(current.trim());
  return cells;
}

function renderTable(lines, start, parent) {
  const header = splitRow(lines[start]);
  const aligns = splitRow(lines[start + 1]).map((cell) => {
    const left = cell.startsWith(":");
    const right = cell.endsWith(":");
    return left && right ? "center" : right ? "right" : left ? "left" : "";
  });
  const table = el("table");
  const head = el("thead");
  const headRow = el("tr");
  header.forEach((cell, index) => {
    const th = el("th");
    if (aligns[index]) th.style.textAlign = aligns[index];
    renderInline(cell, th);
    headRow.append(th);
  });
  head.append(headRow);
  table.append(head);
  const body = el("tbody");
  let i = start + 2;
  while (i < lines.length && !isBlank(lines[i]) && lines[i].includes("|")) {
    const row = el("tr");
    const cells = splitRow(lines[i]);
    header.forEach((_, index) => {
      const td = el("td");
      if (aligns[index]) td.style.textAlign = aligns[index];
      renderInline(cells[index] ?? "", td);
      row.append(td);
    });
    body.append(row);
    i += 1;
  }
  table.append(body);
  parent.append(wrapTable(table));
  return i;
}

function wrapTable(table) {
  const wrapper = el("div", "table-wrap");
  wrapper.append(table);
  return wrapper;
}

function figure(alt, src) {
  const label = alt && alt.trim() && alt.trim().toLowerCase() !== "image" ? alt.trim() : labels.figure;
  const name = src ? String(src).split(/[\\/]/).pop() : "";
  const node = el("span", "figure", `[${label}${name ? `: ${name}` : ""}]`);
  node.title = labels.figureTitle;
  return node;
}

const INLINE_PATTERNS = [
  // [regex, handler(match, parent)] tried at special characters, first match wins
  [/^\\([\\`*_{}[\]()#+\-.!|~<>$])/, (m, parent) => parent.append(document.createTextNode(m[1]))],
  [/^(`+)([\s\S]*?[^`])\1(?!`)/, (m, parent) => parent.append(el("code", "", m[2].replace(/^ (.*) $/, "$1")))],
  [/^!\[([^\]]*)\]\(\s*<?([^\s>)]*)>?(?:\s+"[^"]*")?\s*\)/, (m, parent) => parent.append(figure(m[1], m[2]))],
  [/^\[((?:[^[\]]|\[[^\]]*\])*)\]\(\s*<?([^\s>)]*)>?(?:\s+"([^"]*)")?\s*\)/, (m, parent) => {
    if (SAFE_LINK.test(m[2])) {
      const link = el("a");
      link.href = m[2];
      link.rel = "noopener noreferrer nofollow";
      link.target = "_blank";
      if (m[3]) link.title = m[3];
      renderInline(m[1], link);
      parent.append(link);
    } else {
      renderInline(m[1], parent);
    }
  }],
  [/^<(https?:\/\/[^\s<>"]+)>/, (m, parent) => {
    const link = el("a", "", m[1]);
    link.href = m[1];
    link.rel = "noopener noreferrer nofollow";
    link.target = "_blank";
    parent.append(link);
  }],
  [/^<br\s*\/?>/i, (m, parent) => parent.append(el("br"))],
  [/^(\*\*|__)(?=\S)([\s\S]*?\S)\1/, (m, parent) => wrapInline("strong", m[2], parent)],
  [/^~~(?=\S)([\s\S]*?\S)~~/, (m, parent) => wrapInline("del", m[1], parent)],
  [/^([*_])(?=[^\s*_])([\s\S]*?[^\s\\])\1(?![*_\w])/, (m, parent) => wrapInline("em", m[2], parent)],
  [/^\$(?=[^\s$])([^$\n]*?[^\s$\\])\$(?!\d)/, (m, parent) => parent.append(el("span", "math", m[1]))],
];
const SPECIAL = new Set(["\\", "`", "!", "[", "<", "*", "_", "~", "$"]);

function wrapInline(tag, text, parent) {
  const node = el(tag);
  renderInline(text, node);
  parent.append(node);
}

function renderInline(text, parent) {
  let buffer = "";
  let i = 0;
  const flush = () => {
    if (buffer) parent.append(document.createTextNode(buffer));
    buffer = "";
  };
  while (i < text.length) {
    const char = text[i];
    if (SPECIAL.has(char)) {
      // "_" inside a word (snake_case) is not emphasis
      const intraword = char === "_" && i > 0 && /\w/.test(text[i - 1]);
      const rest = text.slice(i);
      let matched = false;
      for (const [pattern, handle] of INLINE_PATTERNS) {
        if (intraword && pattern.source.startsWith("^([*_])")) continue;
        const match = pattern.exec(rest);
        if (match) {
          flush();
          handle(match, parent);
          i += match[0].length;
          matched = true;
          break;
        }
      }
      if (matched) continue;
    }
    buffer += char;
    i += 1;
  }
  flush();
}

/** Parse ``html`` inertly and copy it back through the allowlist: a fragment of safe nodes. */
export function sanitizeHtml(html) {
  const parsed = new DOMParser().parseFromString(`<!doctype html><body>${html}</body>`, "text/html");
  const fragment = document.createDocumentFragment();
  copyChildren(parsed.body, fragment);
  return fragment;
}

function copyChildren(from, to) {
  for (const node of Array.from(from.childNodes)) {
    if (node.nodeType === Node.TEXT_NODE) {
      to.append(document.createTextNode(node.data));
    } else if (node.nodeType === Node.ELEMENT_NODE) {
      const tag = node.localName;
      if (DROPPED_TAGS.has(tag) || node.namespaceURI !== "http://www.w3.org/1999/xhtml") continue;
      if (tag === "img") {
        to.append(figure(node.getAttribute("alt"), node.getAttribute("src")));
      } else if (ALLOWED_TAGS.has(tag)) {
        const copy = document.createElement(tag === "center" ? "div" : tag);
        for (const name of NUMERIC_ATTRIBUTES[tag] || []) {
          const value = node.getAttribute(name);
          if (value !== null && /^\d{1,3}$/.test(value.trim())) copy.setAttribute(name, value.trim());
        }
        copyChildren(node, copy);
        to.append(tag === "table" ? wrapTable(copy) : copy);
      } else {
        copyChildren(node, to); // an unknown element keeps its text, not itself
      }
    }
  }
}
