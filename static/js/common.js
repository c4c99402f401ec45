/* Helpers shared by every page: the CSRF token, JSON fetches and formatting. */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function getJSON(url) {
    return fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    }).then(function (response) {
      if (response.status === 401) {
        // The session expired: go back to the login page rather than show a broken list.
        window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname);
        throw new Error("Your session has ended. Please sign in again.");
      }
      if (!response.ok) throw new Error("The server answered " + response.status + ".");
      return response.json();
    });
  }

  function percent(value, digits) {
    if (value === null || value === undefined || isNaN(value)) return "—";
    return (Number(value) * 100).toFixed(digits === undefined ? 0 : digits) + "%";
  }

  function fileSize(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(0) + " KB";
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      // Through the CSSOM: the Content-Security-Policy refuses style attributes.
      else if (key === "style") node.style.cssText = value;
      else node.setAttribute(key, value === true ? "" : value);
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  var STATUS_TEXT = {
    queued: "Waiting for analysis",
    running: "Analysing…",
    done: "Analysed",
    failed: "Analysis failed",
  };

  function statusBadge(status) {
    return el("span", { className: "badge badge-" + status, text: STATUS_TEXT[status] || status });
  }

  // DICOM person names are "Family^Given^Middle^Prefix^Suffix"; show "Family, Given Middle".
  function personName(value) {
    if (!value || value.indexOf("^") === -1) return value || "";
    var parts = value.split("=")[0].split("^");
    var given = parts.slice(1, 3).filter(Boolean).join(" ");
    return given ? parts[0] + ", " + given : parts[0];
  }

  // Bars the server draws carry their width as data-fill (percent): the page may hold no
  // style attribute, so the width is set here, through the CSSOM.
  function applyFills(root) {
    Array.prototype.forEach.call((root || document).querySelectorAll("[data-fill]"), function (node) {
      node.style.width = Math.max(0, Math.min(100, Number(node.getAttribute("data-fill")) || 0)) + "%";
    });
  }

  applyFills(document);

  window.Fetal = {
    applyFills: applyFills,
    personName: personName,
    csrfToken: csrfToken,
    getJSON: getJSON,
    percent: percent,
    fileSize: fileSize,
    el: el,
    statusBadge: statusBadge,
    STATUS_TEXT: STATUS_TEXT,
  };
  // "?" opens the keyboard shortcut list on every page (not while typing in a field).
  document.addEventListener("keydown", function (event) {
    if (event.key !== "?" || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    // Not while typing: a "?" typed into a text field is text (radios and checkboxes are no text).
    var typing = target && (/^(TEXTAREA|SELECT)$/.test(target.tagName) || target.isContentEditable ||
      (target.tagName === "INPUT" && !/^(radio|checkbox|range|button|submit|reset|color|file)$/.test(target.type)));
    if (typing) return;
    var dialog = document.querySelector("[data-shortcuts]");
    if (!dialog || dialog.open) return;
    event.preventDefault();
    dialog.showModal();
  });
  document.addEventListener("click", function (event) {
    var opener = event.target && event.target.closest ? event.target.closest("[data-shortcuts-open]") : null;
    var dialog = document.querySelector("[data-shortcuts]");
    if (opener && dialog && !dialog.open) dialog.showModal();
  });
})();
