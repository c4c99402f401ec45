/* Worklist: client-side sort and filter over the case list, refreshed from the
   JSON API every few seconds while any case is still waiting or being analysed. */
(function () {
  "use strict";

  var F = window.Fetal;
  var POLL_MS = 3000;
  var root = document.querySelector("[data-worklist]");
  if (!root) return;

  var apiUrl = root.getAttribute("data-api");
  var tbody = root.querySelector("tbody");
  var countOut = root.querySelector("[data-count]");
  var liveNote = root.querySelector("[data-live]");
  var form = root.querySelector("form.filters");
  var headers = Array.prototype.slice.call(root.querySelectorAll("th[data-sort]"));
  var classNames = JSON.parse(document.getElementById("class-names").textContent);
  var normalClass = root.getAttribute("data-normal-class");
  var INDETERMINATE = "indeterminate";

  // The API's study summary (nested, as documented at /docs) flattened into one sortable row.
  function fromApi(item) {
    var verdict = item.verdict;
    var determinate = verdict && verdict.label !== INDETERMINATE;
    return {
      id: item.id,
      status: item.status,
      patient_name: item.patient && item.patient.name ? F.personName(item.patient.name) : null,
      patient_id: item.patient ? item.patient.patient_id : null,
      study_date: item.study_date,
      created_at: item.created_at,
      gestational_age_weeks: item.gestational_age_weeks,
      n_images: item.n_images,
      verdict_label: verdict ? verdict.label : null,
      verdict_abnormal: Boolean(determinate && verdict.label !== normalClass),
      p_abnormal: verdict && verdict.p_abnormal !== undefined ? verdict.p_abnormal : null,
      ai_withheld: item.ai_withheld,
      reviewed: item.reviewed,
      final_label: item.final_label,
    };
  }

  var rows = JSON.parse(document.getElementById("worklist-data").textContent).map(fromApi);
  // The most suspicious first unless the radiologist picks another order.
  var sort = { key: "p_abnormal", dir: "desc" };
  var timer = null;

  function humanClass(label) {
    if (label === INDETERMINATE) return "No verdict — indeterminate";
    return label ? classNames[label] || label : "";
  }

  function sortValue(row, key) {
    var value = row[key];
    if (key === "verdict") return humanClass(row.verdict_label);
    if (key === "reviewed") return row.reviewed ? 1 : 0;
    return value === undefined ? null : value;
  }

  function compare(a, b) {
    var va = sortValue(a, sort.key);
    var vb = sortValue(b, sort.key);
    // Cases without a value (not analysed yet) always go last, whichever the direction.
    if (va === null && vb === null) return b.id - a.id;
    if (va === null) return 1;
    if (vb === null) return -1;
    var order = va < vb ? -1 : va > vb ? 1 : 0;
    if (order === 0) return b.id - a.id;
    return sort.dir === "asc" ? order : -order;
  }

  function filters() {
    var data = new FormData(form);
    return {
      q: String(data.get("q") || "").trim().toLowerCase(),
      status: String(data.get("status") || ""),
      verdict: String(data.get("verdict") || ""),
      reviewed: String(data.get("reviewed") || ""),
      minP: data.get("min_p") === "" || data.get("min_p") === null ? null : Number(data.get("min_p")) / 100,
      from: String(data.get("date_from") || ""),
      to: String(data.get("date_to") || ""),
    };
  }

  function keep(row, f) {
    if (f.q) {
      var hay = [row.patient_name, row.patient_id, "#" + row.id].join(" ").toLowerCase();
      if (hay.indexOf(f.q) === -1) return false;
    }
    if (f.status && row.status !== f.status) return false;
    if (f.verdict === "abnormal" && !(row.verdict_label && row.verdict_abnormal)) return false;
    // "normal" is the normal class only: a study without a verdict is not a normal one.
    if (f.verdict === "normal" && row.verdict_label !== normalClass) return false;
    if (f.verdict && f.verdict !== "abnormal" && f.verdict !== "normal" && row.verdict_label !== f.verdict) {
      return false;
    }
    if (f.reviewed === "yes" && !row.reviewed) return false;
    if (f.reviewed === "no" && row.reviewed) return false;
    if (f.minP !== null && !(row.p_abnormal !== null && row.p_abnormal >= f.minP)) return false;
    var day = row.study_date || (row.created_at || "").slice(0, 10);
    if (f.from && (!day || day < f.from)) return false;
    if (f.to && (!day || day > f.to)) return false;
    return true;
  }

  function verdictCell(row) {
    if (row.ai_withheld) return F.el("span", { className: "muted", text: "Hidden until your read" });
    if (!row.verdict_label) return F.el("span", { className: "muted", text: "—" });
    if (row.verdict_label === INDETERMINATE) {
      return F.el("span", { className: "badge badge-indeterminate", text: humanClass(INDETERMINATE) });
    }
    return F.el("span", {
      className: "badge " + (row.verdict_abnormal ? "badge-abnormal" : "badge-normal"),
      text: humanClass(row.verdict_label),
    });
  }

  function pCell(row) {
    if (row.p_abnormal === null || row.p_abnormal === undefined) return F.el("span", { className: "muted", text: "—" });
    var bar = F.el("span", { className: "pbar-inline", "aria-hidden": "true" }, [
      F.el("span", { style: "width:" + (row.p_abnormal * 100).toFixed(1) + "%" }),
    ]);
    return F.el("span", {}, [bar, F.percent(row.p_abnormal, 1)]);
  }

  function reviewCell(row) {
    if (!row.reviewed) return F.el("span", { className: "badge badge-unreviewed", text: "Not reviewed" });
    return F.el("span", { className: "badge badge-reviewed", text: "Reviewed: " + humanClass(row.final_label) });
  }

  function renderRow(row) {
    var who = row.patient_name || row.patient_id || "Unnamed patient";
    var link = F.el("a", { className: "row-link", href: "/cases/" + row.id, text: who });
    var idLine = row.patient_id && row.patient_name ? F.el("div", { className: "muted small", text: "ID " + row.patient_id }) : null;
    return F.el("tr", { "data-case-id": String(row.id), "data-status": row.status }, [
      F.el("td", { className: "num", text: "#" + row.id }),
      F.el("td", {}, [link, idLine]),
      F.el("td", { className: "num", text: row.study_date || "—" }),
      F.el("td", { className: "num", text: row.gestational_age_weeks ? Number(row.gestational_age_weeks).toFixed(1) + " w" : "—" }),
      F.el("td", { className: "num", text: String(row.n_images || 0) }),
      F.el("td", {}, [F.statusBadge(row.status)]),
      F.el("td", {}, [verdictCell(row)]),
      F.el("td", { className: "num" }, [pCell(row)]),
      F.el("td", {}, [reviewCell(row)]),
    ]);
  }

  function render() {
    var f = filters();
    var shown = rows.filter(function (row) { return keep(row, f); }).sort(compare);
    tbody.textContent = "";
    if (!shown.length) {
      var message = rows.length ? "No case matches these filters." : "No cases yet. Upload a study to start.";
      tbody.appendChild(F.el("tr", {}, [F.el("td", { colspan: "9", className: "empty-state", text: message })]));
    }
    shown.forEach(function (row) { tbody.appendChild(renderRow(row)); });
    countOut.textContent = shown.length + " of " + rows.length + " case" + (rows.length === 1 ? "" : "s");
    headers.forEach(function (th) {
      th.setAttribute("aria-sort", th.getAttribute("data-sort") === sort.key ? (sort.dir === "asc" ? "ascending" : "descending") : "none");
    });
  }

  function pending() {
    return rows.some(function (row) { return row.status === "queued" || row.status === "running"; });
  }

  function schedule() {
    clearTimeout(timer);
    if (pending()) {
      liveNote.textContent = "Analysis in progress — this list updates itself every few seconds.";
      timer = setTimeout(refresh, POLL_MS);
    } else {
      liveNote.textContent = "";
    }
  }

  // Filters the API knows are applied by the server, so that the list is complete even when
  // there are more cases than one page holds; the rest (text, P threshold, "any anomaly") here.
  function queryUrl() {
    var f = filters();
    var params = [];
    if (f.status) params.push("status=" + encodeURIComponent(f.status));
    if (f.verdict && f.verdict !== "abnormal" && f.verdict !== "normal") params.push("label=" + encodeURIComponent(f.verdict));
    if (f.verdict === "normal") params.push("label=" + encodeURIComponent(normalClass));
    if (f.reviewed) params.push("review=" + (f.reviewed === "yes" ? "reviewed" : "unreviewed"));
    if (f.from) params.push("date_from=" + f.from);
    if (f.to) params.push("date_to=" + f.to);
    return apiUrl + (params.length ? (apiUrl.indexOf("?") === -1 ? "?" : "&") + params.join("&") : "");
  }

  function refresh() {
    clearTimeout(timer);
    F.getJSON(queryUrl()).then(function (data) {
      rows = (data.items || data).map(fromApi);
      render();
      schedule();
    }).catch(function (error) {
      liveNote.textContent = "Could not refresh the list (" + error.message + "). Retrying…";
      timer = setTimeout(refresh, POLL_MS * 3);
    });
  }

  headers.forEach(function (th) {
    th.querySelector("button").addEventListener("click", function () {
      var key = th.getAttribute("data-sort");
      if (sort.key === key) sort.dir = sort.dir === "asc" ? "desc" : "asc";
      else sort = { key: key, dir: th.getAttribute("data-default-dir") || "asc" };
      render();
    });
  });
  var refetchTimer = null;
  function onFilter() {
    render();  // at once on what is loaded, then again with the server's answer
    clearTimeout(refetchTimer);
    refetchTimer = setTimeout(refresh, 300);
  }
  form.addEventListener("input", onFilter);
  form.addEventListener("change", onFilter);
  form.addEventListener("submit", function (event) { event.preventDefault(); onFilter(); });
  form.addEventListener("reset", function () { setTimeout(onFilter, 0); });

  render();
  schedule();
})();
