// sfconnect: the Copy buttons of "Copy as" on /flow. Without this file the code stays selectable.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  if (!navigator.clipboard || !navigator.clipboard.writeText) {
    return;  // not a secure context, or an old browser: select the text instead
  }
  for (const button of document.querySelectorAll("button.copy-button[data-copy-target]")) {
    const code = document.getElementById(button.dataset.copyTarget);
    const status = button.parentElement.querySelector(".copy-status");
    if (!code) {
      continue;
    }
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(code.textContent);
        status.textContent = "Copied.";
      } catch (error) {
        status.textContent = "Could not copy: select the code and copy it yourself.";
      }
    });
  }
});
