/* Worklist: filtered, ordered and paged by the server. The filters live in the address, so
   Back, Forward, reload and bookmarks show the list they name; the list refreshes itself
   (every few seconds while a case is being analysed, else every half minute) and says when
   new cases arrived. */
(function () {
  "use strict";

  var F = window.Fetal;
  var POLL_BUSY_MS = 3000;
  var POLL_IDLE_MS = 15000;
  var root = document.querySelector("[data-worklist]");
  if (!root) return;

  var feedUrl = root.getAttribute("data-feed");
  var tbody = root.querySelector("tbody");
  var countOut = root.querySelector("[data-count]");
  var liveNote = root.querySelector("[data-live]");
  var form = root.querySelector("form.filters");
  var sortKey = form.querySelector("[data-sort-key]");
  var sortDir = form.querySelector("[data-sort-dir]");
  var prevLink = root.querySelector("[data-page-prev]");
  var nextLink = root.querySelector("[data-page-next]");
  var pageText = root.querySelector("[data-page-text]");
  var headers = Array.prototype.slice.call(root.querySelectorAll("th[data-sort]"));
  var classNames = JSON.parse(document.getElementById("class-names").textContent);
  var normalClass = root.getAttribute("data-normal-class");
  var INDETERMINATE = "indeterminate";
  var DESC_FIRST = { p_abnormal: true, date: true, id: true };

  var data = JSON.parse(document.getElementById("worklist-data").textContent);
  var latestSeen = data.latest_id;
  var timer = null;
  var refetchTimer = null;

  function humanClass(label) {
    if (label === INDETERMINATE) return "No verdict — indeterminate";
    return label ? classNames[label] || label : "";
  }

  function verdictCell(item) {
    var verdict = item.verdict;
    if (item.ai_withheld) return F.el("span", { className: "muted", text: "Hidden until your read" });
    if (!verdict) {
      if (item.status === "failed") return F.el("span", { className: "badge badge-indeterminate", text: "No verdict (analysis failed)" });
      return F.el("span", { className: "muted", text: "—" });
    }
    if (verdict.label === INDETERMINATE) {
      return F.el("span", { className: "badge badge-indeterminate", "data-verdict": INDETERMINATE, text: humanClass(INDETERMINATE) });
    }
    var abnormal = verdict.label !== normalClass;
    return F.el("span", {
      className: "badge " + (abnormal ? "badge-abnormal" : "badge-normal"),
      "data-verdict": abnormal ? "abnormal" : "normal",
      text: humanClass(verdict.label),
    });
  }

  function pCell(item) {
    var p = item.verdict ? item.verdict.p_abnormal : null;
    if (p === null || p === undefined) return F.el("span", { className: "muted", text: "—" });
    var bar = F.el("span", { className: "pbar-inline", "aria-hidden": "true" }, [
      F.el("span", { style: "width:" + (p * 100).toFixed(1) + "%" }),
    ]);
    return F.el("span", {}, [bar, F.percent(p, 1)]);
  }

  function reviewCell(item) {
    if (!item.reviewed) return F.el("span", { className: "badge badge-unreviewed", text: "Not reviewed" });
    return F.el("span", { className: "badge badge-reviewed", text: "Reviewed: " + humanClass(item.final_label) });
  }

  function readerCell(item) {
    var parts = [];
    if (item.reading_by) parts.push(F.el("span", { className: "badge badge-flag", "data-reading-by": item.reading_by, text: "Open by " + item.reading_by }));
    if (item.assigned_to) parts.push(F.el("div", { className: "small", "data-assigned-to": item.assigned_to, text: "Assigned: " + item.assigned_to }));
    if (!parts.length) parts.push(F.el("span", { className: "muted", text: "—" }));
    return F.el("td", {}, parts);
  }

  function renderRow(item) {
    var patient = item.patient || {};
    var name = patient.name ? F.personName(patient.name) : null;
    var who = name || patient.patient_id || "Unnamed patient";
    var link = F.el("a", { className: "row-link", href: "/cases/" + item.id, text: who });
    var idLine = patient.patient_id && name ? F.el("div", { className: "muted small", text: "ID " + patient.patient_id }) : null;
    return F.el("tr", { "data-case-id": String(item.id), "data-status": item.status }, [
      F.el("td", { className: "num", text: "#" + item.id }),
      F.el("td", {}, [link, idLine]),
      F.el("td", { className: "num", text: item.study_date || "—" }),
      F.el("td", { className: "num", text: item.gestational_age_weeks ? Number(item.gestational_age_weeks).toFixed(1) + " w" : "—" }),
      F.el("td", { className: "num", text: String(item.n_images || 0) }),
      F.el("td", {}, [F.statusBadge(item.status)]),
      F.el("td", {}, [verdictCell(item)]),
      F.el("td", { className: "num" }, [pCell(item)]),
      F.el("td", {}, [reviewCell(item)]),
      readerCell(item),
    ]);
  }

  function params() {
    var out = new URLSearchParams();
    new FormData(form).forEach(function (value, key) {
      var text = String(value).trim();
      if (text) out.set(key, text);
    });
    return out;
  }

  function pageUrl(number) {
    var p = params();
    p.set("page", String(number));
    return "/?" + p.toString();
  }

  function render() {
    tbody.textContent = "";
    if (!data.items.length) {
      var filtered = window.location.search.replace(/[?&](sort|dir|page)=[^&]*/g, "").length > 1;
      var message = filtered ? "No case matches these filters." : "No cases yet. Upload a study to start.";
      tbody.appendChild(F.el("tr", {}, [F.el("td", { colspan: "10", className: "empty-state", text: message })]));
    }
    data.items.forEach(function (item) { tbody.appendChild(renderRow(item)); });
    var first = data.total ? (data.page - 1) * data.page_size + 1 : 0;
    var last = (data.page - 1) * data.page_size + data.items.length;
    countOut.textContent = data.total ? first + "–" + last + " of " + data.total + " case" + (data.total === 1 ? "" : "s") : "0 cases";
    pageText.textContent = "Page " + data.page + " of " + data.pages;
    prevLink.hidden = data.page <= 1;
    nextLink.hidden = data.page >= data.pages;
    prevLink.setAttribute("href", data.page > 1 ? pageUrl(data.page - 1) : "#");
    nextLink.setAttribute("href", data.page < data.pages ? pageUrl(data.page + 1) : "#");
    headers.forEach(function (th) {
      var on = th.getAttribute("data-sort") === sortKey.value;
      th.setAttribute("aria-sort", on ? (sortDir.value === "asc" ? "ascending" : "descending") : "none");
    });
  }

  function pending() {
    return data.items.some(function (item) { return item.status === "queued" || item.status === "running"; });
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(function () { load(window.location.search, false); }, pending() ? POLL_BUSY_MS : POLL_IDLE_MS);
  }

  function load(search, userAction) {
    clearTimeout(timer);
    return F.getJSON(feedUrl + search).then(function (answer) {
      var arrived = answer.latest_id && latestSeen && answer.latest_id > latestSeen ? answer.latest_id - latestSeen : 0;
      latestSeen = answer.latest_id;
      data = answer;
      render();
      if (arrived) liveNote.textContent = arrived + " new case" + (arrived === 1 ? "" : "s") + " arrived; the list is up to date.";
      else if (userAction) liveNote.textContent = "";
      else if (pending()) liveNote.textContent = "Analysis in progress — this list updates itself every few seconds.";
      schedule();
    }).catch(function (error) {
      liveNote.textContent = "Could not refresh the list (" + error.message + "). Retrying…";
      timer = setTimeout(function () { load(window.location.search, false); }, POLL_IDLE_MS);
    });
  }

  // The address is the state: a change of filter is a new history entry (Back undoes it).
  function apply(page) {
    var p = params();
    if (page && page > 1) p.set("page", String(page));
    var search = p.toString() ? "?" + p.toString() : "";
    if (search !== window.location.search) history.pushState(null, "", window.location.pathname + search);
    load(search, true);
  }

  function fillForm() {
    var p = new URLSearchParams(window.location.search);
    Array.prototype.forEach.call(form.elements, function (field) {
      if (!field.name) return;
      if (field === sortKey) field.value = p.get("sort") || "p_abnormal";
      else if (field === sortDir) field.value = p.get("dir") || (DESC_FIRST[sortKey.value] ? "desc" : "asc");
      else field.value = p.get(field.name) || "";
    });
  }

  headers.forEach(function (th) {
    th.querySelector("button").addEventListener("click", function () {
      var key = th.getAttribute("data-sort");
      if (sortKey.value === key) sortDir.value = sortDir.value === "asc" ? "desc" : "asc";
      else { sortKey.value = key; sortDir.value = DESC_FIRST[key] ? "desc" : "asc"; }
      apply(1);
    });
  });
  form.addEventListener("change", function () { apply(1); });
  form.addEventListener("input", function (event) {
    if (event.target.type !== "search" && event.target.type !== "number") return;
    clearTimeout(refetchTimer);
    refetchTimer = setTimeout(function () { apply(1); }, 400);
  });
  form.addEventListener("submit", function (event) { event.preventDefault(); apply(1); });
  root.querySelector("[data-clear]").addEventListener("click", function (event) {
    event.preventDefault();
    form.reset();
    Array.prototype.forEach.call(form.elements, function (field) { if (field.name && field.type !== "hidden") field.value = ""; });
    sortKey.value = "p_abnormal";
    sortDir.value = "desc";
    apply(1);
  });
  [prevLink, nextLink].forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      apply(link === prevLink ? data.page - 1 : data.page + 1);
    });
  });
  window.addEventListener("popstate", function () {
    fillForm();
    load(window.location.search, true);
  });

  render();
  schedule();
})();
