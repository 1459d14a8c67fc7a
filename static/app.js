// sfconnect: small progressive enhancements; every page works without this file.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("soql-form");
  if (!form) {
    return;
  }
  const textarea = form.querySelector("textarea");
  const submit = form.querySelector("button[type=submit]");

  // Ctrl+Enter (or Cmd+Enter) runs the query from the textarea.
  textarea.addEventListener("keydown", (event) => {
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
});

// A page restored from the back/forward cache gets its button back.
window.addEventListener("pageshow", () => {
  const submit = document.querySelector("#soql-form button[type=submit]");
  if (submit && submit.dataset.busyLabel) {
    submit.disabled = false;
    submit.textContent = "Run query";
  }
});
