// sfconnect: small progressive enhancements; every page works without this file.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("soql-form");
  if (form) {
    enhanceForm(form);
  }
  const progress = document.getElementById("export-progress");
  if (progress && window.ReadableStream && window.AbortController && window.TextDecoder) {
    for (const link of document.querySelectorAll("a.export-link")) {
      link.addEventListener("click", (event) => {
        event.preventDefault();
        runExport(link, progress);
      });
    }
  }
});

function enhanceForm(form) {
  const textarea = form.querySelector("textarea");
  const submit = form.querySelector("button[type=submit]");
  const suggestions = new Suggestions(form, textarea);

  // Ctrl+Enter (or Cmd+Enter) runs the query from the textarea.
  textarea.addEventListener("keydown", (event) => {
    if (suggestions.handleKey(event)) {
      return;
    }
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  // One query at a time: the button says it is running and ignores further clicks.
  form.addEventListener("submit", () => {
    if (submit && submit.dataset.busyLabel) {
      submit.disabled = true;
      submit.textContent = submit.dataset.busyLabel;
    }
  });

  // Example links fill the form instead of leaving the page, so the query can be edited first.
  for (const example of document.querySelectorAll("a.example[data-soql]")) {
    example.addEventListener("click", (event) => {
      event.preventDefault();
      textarea.value = example.dataset.soql;
      textarea.focus();
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Suggestions of objects (describeGlobal) and fields (describeSObject of the FROM object) while
// typing. The app caches describes in the session; this page caches them too.

const SOQL_WORDS = ["SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER BY",
  "GROUP BY", "HAVING", "LIMIT", "OFFSET", "ASC", "DESC", "NULLS FIRST", "NULLS LAST", "COUNT()",
  "ALL ROWS", "FOR VIEW"];
const MAX_SUGGESTIONS = 12;

class Suggestions {
  constructor(form, textarea) {
    this.textarea = textarea;
    this.list = document.getElementById("soql-suggestions");
    this.status = document.getElementById("soql-suggestions-status");
    this.baseUrl = form.dataset.describeUrl;
    this.cache = new Map();
    this.items = [];
    this.active = -1;
    this.token = null;
    this.timer = null;
    this.generation = 0;
    if (!this.list || !this.baseUrl || !window.fetch) {
      return;
    }
    textarea.addEventListener("input", () => this.schedule());
    textarea.addEventListener("click", () => this.close());
    textarea.addEventListener("blur", () => setTimeout(() => this.close(), 150));
    this.list.addEventListener("mousedown", (event) => {
      const option = event.target.closest("li[data-index]");
      if (option) {
        event.preventDefault();
        this.accept(Number(option.dataset.index));
      }
    });
  }

  describe(name) {
    // The base URL may name a connection (?org=<key>): the object's name goes in the path.
    const target = new URL(this.baseUrl, window.location.href);
    if (name) target.pathname += `/${encodeURIComponent(name)}`;
    const url = target.pathname + target.search;
    if (!this.cache.has(url)) {
      this.cache.set(url, fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
        .then((response) => (response.ok ? response.json() : null))
        .catch(() => null));
    }
    return this.cache.get(url);
  }

  schedule(force = false) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.update(force), 60);
  }

  async update(force) {
    const generation = ++this.generation;
    const context = soqlContext(this.textarea.value, this.textarea.selectionStart);
    if (!context || (!force && context.token === "" && !context.afterDot)) {
      this.close();
      return;
    }
    const found = await this.candidates(context);
    if (generation !== this.generation) {
      return; // the text changed while describing
    }
    this.token = context;
    this.show(found);
  }

  async candidates(context) {
    const prefix = context.token.toLowerCase();
    const matching = (entries) => {
      const starts = entries.filter((e) => e.name.toLowerCase().startsWith(prefix));
      const inside = entries.filter((e) => !starts.includes(e) && e.name.toLowerCase().includes(prefix));
      return [...starts, ...inside].slice(0, MAX_SUGGESTIONS);
    };
    if (context.kind === "object") {
      const global = await this.describe("");
      return matching((global && global.sobjects || []).map((o) => ({name: o.name, detail: o.label})));
    }
    if (context.kind === "child") {
      const parent = await this.describe(context.sobject);
      return matching((parent && parent.childRelationships || []).map(
        (c) => ({name: c.relationshipName, detail: c.childSObject})));
    }
    let described = context.sobject ? await this.describe(context.sobject) : null;
    if (context.subquery && described) {
      const child = (described.childRelationships || []).find(
        (c) => c.relationshipName.toLowerCase() === context.subquery.toLowerCase());
      described = child ? await this.describe(child.childSObject) : null;
    }
    for (const step of context.path) { // Account.Owner. -> the fields of User
      const lookup = described && (described.fields || []).find(
        (f) => (f.relationshipName || "").toLowerCase() === step.toLowerCase());
      described = lookup && lookup.referenceTo.length ? await this.describe(lookup.referenceTo[0]) : null;
    }
    if (!described) {
      return context.path.length ? [] : matching(SOQL_WORDS.map((w) => ({name: w, detail: "SOQL"})));
    }
    const entries = [];
    for (const f of described.fields || []) {
      entries.push({name: f.name, detail: f.type});
      if (f.relationshipName && f.referenceTo.length) {
        entries.push({name: `${f.relationshipName}.`, detail: `→ ${f.referenceTo.join(", ")}`});
      }
    }
    if (!context.path.length) {
      entries.push(...SOQL_WORDS.map((w) => ({name: w, detail: "SOQL"})));
    }
    return matching(entries);
  }

  show(found) {
    this.items = found;
    this.active = found.length ? 0 : -1;
    this.list.replaceChildren(...found.map((item, index) => {
      const li = document.createElement("li");
      li.id = `soql-suggestion-${index}`;
      li.setAttribute("role", "option");
      li.dataset.index = String(index);
      const name = document.createElement("span");
      name.className = "suggestion-name";
      name.textContent = item.name;
      const detail = document.createElement("span");
      detail.className = "suggestion-detail";
      detail.textContent = item.detail || "";
      li.append(name, detail);
      return li;
    }));
    this.list.hidden = found.length === 0;
    this.announce(found.length === 1 ? "1 suggestion" : found.length ? `${found.length} suggestions` : "");
    this.highlight();
  }

  highlight() {
    for (const li of this.list.children) {
      const on = Number(li.dataset.index) === this.active;
      li.classList.toggle("active", on);
      li.setAttribute("aria-selected", String(on));
      if (on) {
        li.scrollIntoView({block: "nearest"});
      }
    }
    if (this.active >= 0) {
      this.textarea.setAttribute("aria-activedescendant", `soql-suggestion-${this.active}`);
    } else {
      this.textarea.removeAttribute("aria-activedescendant");
    }
  }

  close() {
    clearTimeout(this.timer);
    this.generation++;
    this.items = [];
    this.active = -1;
    if (this.list) {
      this.list.hidden = true;
      this.list.replaceChildren();
    }
    this.announce("");
    this.textarea.removeAttribute("aria-activedescendant");
  }

  // A textarea may not carry aria-expanded, so a status says that suggestions opened; it is
  // written only when it changes, so typing does not repeat it.
  announce(text) {
    if (this.status && this.status.textContent !== text) {
      this.status.textContent = text;
    }
  }

  handleKey(event) {
    if (event.key === " " && event.ctrlKey) { // Ctrl+Space: suggest even with nothing typed
      event.preventDefault();
      this.schedule(true);
      return true;
    }
    if (!this.items.length || this.list.hidden) {
      return false;
    }
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.active = (this.active + step + this.items.length) % this.items.length;
      this.highlight();
      return true;
    }
    if ((event.key === "Enter" && !event.ctrlKey && !event.metaKey) || event.key === "Tab") {
      event.preventDefault();
      this.accept(this.active);
      return true;
    }
    if (event.key === "Escape") {
      event.preventDefault();
      this.close();
      return true;
    }
    return false;
  }

  accept(index) {
    const item = this.items[index];
    const context = this.token;
    if (!item || !context) {
      return;
    }
    const value = this.textarea.value;
    const end = context.end;
    const start = end - context.token.length;
    const insert = item.name;
    this.textarea.value = value.slice(0, start) + insert + value.slice(end);
    const caret = start + insert.length;
    this.textarea.setSelectionRange(caret, caret);
    this.textarea.focus();
    this.close();
    if (insert.endsWith(".")) {
      this.schedule(); // a relationship: go on with its fields
    }
  }
}

// Where the caret is in the SOQL: an object name (after FROM), a child relationship (FROM inside
// a subquery), or a field (anywhere else) of the FROM object, maybe after parent steps ("Account.").
function soqlContext(text, caret) {
  const before = text.slice(0, caret);
  if ((before.match(/'/g) || []).length % 2 === 1) {
    return null; // inside a string literal
  }
  const dotted = /([A-Za-z_][\w]*\.)*[\w]*$/.exec(before)[0];
  const parts = dotted.split(".");
  const token = parts.pop();
  const path = parts;
  const head = before.slice(0, before.length - dotted.length);
  const previous = (/(\w+)\s*$/.exec(head) || [])[1] || "";
  const open = unclosedParen(before);
  const mainFrom = topLevelFrom(text);
  const base = {token, path, end: caret, afterDot: dotted.endsWith("."), sobject: mainFrom};
  if (previous.toLowerCase() === "from" && !path.length) {
    return {...base, kind: open >= 0 ? "child" : "object"};
  }
  if (open >= 0) {
    const inner = text.slice(open + 1, closingParen(text, open));
    if (/^\s*select\b/i.test(inner)) {
      const from = /\bfrom\s+([A-Za-z_][\w.]*)/i.exec(inner);
      return {...base, kind: "field", subquery: from ? from[1].split(".").pop() : null};
    }
  }
  return {...base, kind: "field", subquery: null};
}

function unclosedParen(text) {
  const stack = [];
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "'" && text[i - 1] !== "\\") {
      quoted = !quoted;
    } else if (!quoted && c === "(") {
      stack.push(i);
    } else if (!quoted && c === ")") {
      stack.pop();
    }
  }
  return stack.length ? stack[stack.length - 1] : -1;
}

function closingParen(text, open) {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === "(") {
      depth++;
    } else if (text[i] === ")" && --depth === 0) {
      return i;
    }
  }
  return text.length;
}

function topLevelFrom(text) {
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "'" && text[i - 1] !== "\\") {
      quoted = !quoted;
    } else if (!quoted && c === "(") {
      depth++;
    } else if (!quoted && c === ")") {
      depth--;
    } else if (!quoted && depth === 0 && /from/i.test(text.substr(i, 4)) &&
               (i === 0 || /[\s)]/.test(text[i - 1]))) {
      const match = /^from\s+([A-Za-z_]\w*)/i.exec(text.slice(i));
      if (match) {
        return match[1];
      }
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Exports with a progress bar: the file streams in through fetch(), records are counted as they
// arrive (against X-Total-Size, the query's size), and Cancel aborts the request, which closes
// the connection and so stops the server's queryMore loop.

function runExport(link, box) {
  const bar = box.querySelector("progress");
  const status = box.querySelector(".export-status");
  const cancel = box.querySelector(".export-cancel");
  const label = box.querySelector(".export-label");
  if (box.dataset.running === "1") {
    return;
  }
  const controller = new AbortController();
  const kind = link.dataset.kind;
  const counter = kind === "json" ? jsonRecordCounter() : csvRecordCounter();
  let received = 0;
  let total = Number(bar.max) || 0;
  box.hidden = false;
  box.dataset.running = "1";
  box.classList.remove("export-done", "export-failed", "export-cancelled");
  cancel.hidden = false;
  label.textContent = `Exporting ${kind.toUpperCase()}`;
  bar.value = 0;
  const say = (text) => { status.textContent = text; };
  const finish = (state, text) => {
    box.dataset.running = "0";
    box.classList.add(`export-${state}`);
    cancel.hidden = true;
    say(text);
  };
  say("Starting…");
  cancel.onclick = () => controller.abort();

  (async () => {
    let response;
    try {
      response = await fetch(link.href, {credentials: "same-origin", signal: controller.signal});
    } catch (error) {
      finish(controller.signal.aborted ? "cancelled" : "failed",
        controller.signal.aborted ? "Cancelled." : "The export could not start.");
      return;
    }
    if (!response.ok || !response.body) {
      let message = `The export failed (HTTP ${response.status}).`;
      try {
        const body = await response.json();
        message = `${body.error}: ${body.message}`;
      } catch (error) { /* not JSON */ }
      finish("failed", message);
      return;
    }
    total = Number(response.headers.get("X-Total-Size")) || total;
    bar.max = Math.max(total, 1);
    const name = downloadName(response.headers.get("Content-Disposition"), kind);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const chunks = [];
    let tail = "";
    try {
      for (;;) {
        const {done, value} = await reader.read();
        if (done) {
          break;
        }
        chunks.push(value);
        const text = decoder.decode(value, {stream: true});
        received = counter(text);
        tail = (tail + text).slice(-4096);
        bar.value = Math.min(received, total);
        say(`${received.toLocaleString("en-US")} of ${total.toLocaleString("en-US")} records`);
      }
    } catch (error) {
      finish(controller.signal.aborted ? "cancelled" : "failed", controller.signal.aborted
        ? `Cancelled after ${received.toLocaleString("en-US")} of ${total.toLocaleString("en-US")} records.`
        : "The connection broke during the export.");
      return;
    }
    const failure = kind === "json" ? /"error":\s*\{[^}]*"message":\s*"([^"]*)"/.exec(tail)
      : /(?:^|\n)#error ([^\r\n]*)/.exec(tail);
    const blob = new Blob(chunks, {type: kind === "json" ? "application/json" : "text/csv"});
    const url = URL.createObjectURL(blob);
    const anchor = document.createElement("a");
    anchor.href = url;
    anchor.download = name;
    anchor.hidden = true;
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    if (failure) {
      finish("failed", `Stopped after ${received.toLocaleString("en-US")} records: ${failure[1]} (saved as ${name})`);
    } else {
      bar.value = bar.max;
      finish("done", `Done: ${received.toLocaleString("en-US")} records saved as ${name}`);
    }
  })();
}

function downloadName(disposition, kind) {
  const match = /filename="([^"]+)"/.exec(disposition || "");
  return match ? match[1] : `export.${kind}`;
}

// CSV records: line ends outside quotes ("" inside a quoted value toggles twice), less the header.
function csvRecordCounter() {
  let quoted = false;
  let lines = 0;
  let errorLine = false;
  let lineStart = true;
  return (text) => {
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (lineStart && !quoted && c === 35 /* # */) {
        errorLine = true; // "#error ..." is not a record
      }
      lineStart = false;
      if (c === 34 /* " */) {
        quoted = !quoted;
      } else if (c === 10 /* \n */ && !quoted) {
        if (!errorLine) {
          lines++;
        }
        errorLine = false;
        lineStart = true;
      }
    }
    return Math.max(lines - 1, 0);
  };
}

// JSON records: objects closing at the depth of the "records" array's items.
function jsonRecordCounter() {
  let depth = 0;
  let inString = false;
  let escaped = false;
  let records = 0;
  return (text) => {
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (inString) {
        if (escaped) {
          escaped = false;
        } else if (c === 92 /* \ */) {
          escaped = true;
        } else if (c === 34) {
          inString = false;
        }
      } else if (c === 34) {
        inString = true;
      } else if (c === 123 || c === 91 /* { [ */) {
        depth++;
      } else if (c === 125 || c === 93 /* } ] */) {
        if (c === 125 && depth === 3) {
          records++;
        }
        depth--;
      }
    }
    return records;
  };
}

// A page restored from the back/forward cache gets its button back.
window.addEventListener("pageshow", () => {
  const submit = document.querySelector("#soql-form button[type=submit]");
  if (submit && submit.dataset.busyLabel) {
    submit.disabled = false;
    submit.textContent = "Run query";
  }
});
