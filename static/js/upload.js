/* Upload: drag-and-drop or pick files (DICOM, PNG/JPEG or ZIP), send them in one
   request, and show per-file progress. Files travel in order inside one
   multipart body, so the bytes sent so far tell how far each file has got.
   The server answers as soon as the files are stored; analysis runs in its
   background worker and the new cases' status is polled here. */
(function () {
  "use strict";

  var F = window.Fetal;
  var POLL_MS = 2000;
  var form = document.getElementById("upload-form");
  if (!form) return;

  var input = document.getElementById("files");
  var zone = document.querySelector("[data-dropzone]");
  var list = document.querySelector("[data-file-list]");
  var summary = document.querySelector("[data-file-summary]");
  var submit = form.querySelector("button[type=submit]");
  var clearButton = form.querySelector("[data-clear]");
  var message = document.querySelector("[data-upload-message]");
  var results = document.querySelector("[data-results]");
  var resultList = document.querySelector("[data-result-list]");
  var statusApi = form.getAttribute("data-status-api");
  var files = [];
  var rows = [];
  var pollTimer = null;

  function showMessage(kind, text) {
    message.className = "alert alert-" + kind;
    message.textContent = text;
    message.hidden = false;
  }

  var PEEK_LIMIT = 500;
  var PEEKED_FIELDS = ["patient_name", "patient_id", "study_date"];
  var peekSummary = document.querySelector("[data-peek-summary]");
  var peekGeneration = 0;

  function isRasterOrZip(file) {
    return /\.(png|jpe?g|zip)$/i.test(file.name);
  }

  function setField(name, value, fromFiles) {
    var field = form.elements[name];
    var hint = document.querySelector('[data-source-for="' + name + '"]');
    if (field.classList.contains("from-dicom")) field.value = "";  // drop what an earlier selection filled in
    field.readOnly = Boolean(fromFiles && value);
    field.classList.toggle("from-dicom", field.readOnly);
    if (field.readOnly) field.value = value;
    hint.className = "hint" + (field.readOnly ? " from-dicom" : fromFiles ? " missing" : "");
    hint.textContent = field.readOnly ? "From the DICOM header." : fromFiles ? "Not in the files: enter it if you know it." : "";
  }

  function resetFields(summaryText) {
    PEEKED_FIELDS.forEach(function (name) { setField(name, null, false); });
    peekSummary.textContent = summaryText;
  }

  // Shows what the DICOM headers say. A single study fills (and locks) the fields the files
  // carry, leaving the rest to type; several studies are listed, so nobody types one
  // patient's details for another.
  function peekFiles() {
    var generation = ++peekGeneration;
    if (!files.length) {
      resetFields("Choose files first. The details are read from DICOM headers; type them only for images that lack them.");
      return;
    }
    var candidates = files.filter(function (f) { return !isRasterOrZip(f); }).slice(0, PEEK_LIMIT);
    var others = files.length - candidates.length;
    Promise.all(candidates.map(window.Fetal.peekDicom)).then(function (headers) {
      if (generation !== peekGeneration) return;  // a newer selection is being read
      var studies = {};
      var unread = 0;
      headers.forEach(function (h) {
        if (!h) { unread += 1; return; }
        var key = h.studyUid || h.patientId || h.patientName;
        studies[key] = studies[key] || h;
      });
      var list = Object.keys(studies).map(function (k) { return studies[k]; });
      if (list.length === 1 && others === 0 && unread === 0) {
        var study = list[0];
        setField("patient_name", F.personName(study.patientName), true);
        setField("patient_id", study.patientId, true);
        setField("study_date", window.Fetal.dicomDateToIso(study.studyDate), true);
        peekSummary.textContent = "One DICOM study found. Details in the files are shown locked; fill in what they lack.";
        return;
      }
      var parts = [];
      if (list.length) {
        parts.push(list.length + " DICOM stud" + (list.length === 1 ? "y" : "ies") + " found (" +
          list.slice(0, 4).map(function (h) {
            return [F.personName(h.patientName) || "no name", h.patientId ? "ID " + h.patientId : null]
              .filter(Boolean).join(", ");
          }).join("; ") + (list.length > 4 ? "; …" : "") + ").");
      }
      if (others || unread) {
        parts.push("PNG/JPEG images and ZIP archives are read on the server.");
      }
      parts.push(list.length > 1
        ? "What you type below only fills details that a study's files lack."
        : "Type the details the images lack; for a single study they replace what the files say.");
      resetFields(parts.join(" "));
    });
  }

  function addFiles(fileList) {
    Array.prototype.forEach.call(fileList, function (file) {
      var duplicate = files.some(function (f) {
        return f.name === file.name && f.size === file.size && f.lastModified === file.lastModified;
      });
      if (!duplicate) files.push(file);
    });
    renderList();
  }

  function renderList() {
    list.textContent = "";
    rows = files.map(function (file, index) {
      var bar = F.el("progress", { max: "100", value: "0", "aria-label": "Upload progress of " + file.name });
      var item = F.el("li", { "data-file-index": String(index) }, [
        F.el("span", { className: "fname", title: file.name, text: file.name }),
        F.el("span", { className: "fsize", text: F.fileSize(file.size) }),
        bar,
      ]);
      list.appendChild(item);
      return { file: file, bar: bar };
    });
    var total = files.reduce(function (sum, f) { return sum + f.size; }, 0);
    summary.textContent = files.length
      ? files.length + " file" + (files.length === 1 ? "" : "s") + " selected, " + F.fileSize(total)
      : "No files selected.";
    submit.disabled = files.length === 0;
    peekFiles();
  }

  function showProgress(loaded, total) {
    // Multipart framing adds a few hundred bytes per file; spreading the
    // overhead evenly keeps every bar honest to within a fraction of a percent.
    var payload = files.reduce(function (sum, f) { return sum + f.size; }, 0);
    var scale = total > 0 ? payload / total : 1;
    var sent = loaded * scale;
    var offset = 0;
    rows.forEach(function (row) {
      var size = row.file.size || 1;
      var fraction = Math.max(0, Math.min(1, (sent - offset) / size));
      row.bar.value = Math.round(fraction * 100);
      if (fraction >= 1) row.bar.classList.add("done");
      offset += row.file.size;
    });
  }

  // The server names files as it stored them (unsafe characters replaced; see services/uploads).
  function serverName(name) {
    var base = name.replace(/\\/g, "/").split("/").pop();
    return base.replace(/[^A-Za-z0-9._ -]+/g, "_").replace(/^[ .]+|[ .]+$/g, "").slice(0, 120);
  }

  // A file the server did not use is shown as skipped, with its reason, not as a full green bar.
  function markSkipped(rejected) {
    rows.forEach(function (row) {
      var name = serverName(row.file.name);
      var match = rejected.filter(function (r) { return r.filename === name; })[0];
      if (!match) return;
      row.bar.classList.remove("done");
      row.bar.classList.add("skipped");
      row.bar.setAttribute("aria-label", "Skipped: " + row.file.name);
      var item = row.bar.parentNode;
      item.setAttribute("data-skipped", "");
      item.appendChild(F.el("span", { className: "badge badge-failed", text: "Skipped" }));
    });
  }

  function setAllBars(className, value) {
    rows.forEach(function (row) {
      row.bar.value = value;
      row.bar.classList.add(className);
    });
  }

  function caseDetails(study) {
    var details = [];
    details.push(study.patient_name ? "Patient " + F.personName(study.patient_name) : "No patient name");
    if (study.patient_id) details.push("ID " + study.patient_id);
    details.push(study.study_date ? "study " + study.study_date : "no study date");
    if (study.gestational_age_weeks) details.push(Number(study.gestational_age_weeks).toFixed(1) + " weeks");
    details.push(study.n_images + " image" + (study.n_images === 1 ? "" : "s"));
    return details.join(" · ");
  }

  function caseItem(created) {
    return F.el("li", { "data-case-id": String(created.study_id) }, [
      F.el("a", { className: "row-link", href: "/cases/" + created.study_id, text: "Case #" + created.study_id }),
      created.duplicate
        ? F.el("span", { className: "badge badge-flag", "data-duplicate": "", text: "Already uploaded: nothing new was added to this case" })
        : null,
      F.el("span", { className: "muted small", "data-details": "", text: created.n_images + " image" + (created.n_images === 1 ? "" : "s") }),
      F.el("span", { "data-status": created.status, role: "status" }, [F.statusBadge(created.status)]),
    ]);
  }

  function update(study) {
    var item = resultList.querySelector('[data-case-id="' + study.id + '"]');
    if (!item) return;
    item.querySelector("[data-details]").textContent = caseDetails(study);
    var node = item.querySelector("[data-status]");
    if (node.getAttribute("data-status") !== study.status) {
      node.setAttribute("data-status", study.status);
      node.textContent = "";
      node.appendChild(F.statusBadge(study.status));
    }
  }

  function showResults(created, rejected) {
    results.hidden = false;
    created.forEach(function (study) { resultList.appendChild(caseItem(study)); });
    rejected.forEach(function (item) {
      resultList.appendChild(F.el("li", {}, [
        F.el("span", { className: "badge badge-failed", text: "Not imported" }),
        F.el("span", { text: item.filename + ": " + item.reason }),
      ]));
    });
    var ids = created.map(function (s) { return s.study_id; });
    // Fetch at once: the patient details read from the files are worth showing before analysis ends.
    refresh(ids);
  }

  function refresh(ids) {
    Promise.all(ids.map(function (id) {
      return F.getJSON(statusApi.replace("{id}", String(id))).then(update);
    })).then(function () { schedule(ids); }, function () { schedule(ids); });
  }

  function schedule(ids) {
    clearTimeout(pollTimer);
    var open = ids.filter(function (id) {
      var node = resultList.querySelector('[data-case-id="' + id + '"] [data-status]');
      var status = node && node.getAttribute("data-status");
      return status === "queued" || status === "running";
    });
    if (open.length) pollTimer = setTimeout(function () { refresh(open); }, POLL_MS);
  }

  function errorText(xhr) {
    try {
      var body = JSON.parse(xhr.responseText);
      if (typeof body.detail === "string") return body.detail;
      if (Array.isArray(body.detail)) return body.detail.map(function (d) { return d.msg; }).join("; ");
    } catch (ignored) { /* not JSON: fall through */ }
    if (xhr.status === 413) return "The upload is too large for this server.";
    if (xhr.status === 0) return "The server could not be reached. Check the connection and try again.";
    return "The server answered " + xhr.status + ".";
  }

  function send() {
    var data = new FormData();
    ["patient_name", "patient_id", "study_date", "gestational_age_weeks"].forEach(function (name) {
      var field = form.elements[name];
      // Locked fields only echo the files, which the server reads itself.
      if (field.readOnly) return;
      var value = field.value.trim();
      if (value) data.append(name, value);
    });
    files.forEach(function (file) { data.append("files", file, file.name); });

    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.getAttribute("data-api"));
    xhr.setRequestHeader("X-CSRF-Token", F.csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable) showProgress(event.loaded, event.total);
    });
    xhr.addEventListener("load", function () {
      submit.disabled = false;
      if (xhr.status >= 200 && xhr.status < 300) {
        setAllBars("done", 100);
        var body = JSON.parse(xhr.responseText);
        var studies = body.studies || [];
        var rejected = body.rejected || [];
        markSkipped(rejected);
        var fresh = studies.filter(function (s) { return !s.duplicate; });
        var repeats = studies.length - fresh.length;
        var text = fresh.length
          ? "Uploaded. " + fresh.length + " case" + (fresh.length === 1 ? " was" : "s were") +
            " created or extended and queued for analysis."
          : studies.length ? "" : "Nothing could be imported from these files.";
        if (repeats) text += (text ? " " : "") + repeats + " upload" + (repeats === 1 ? " was" : "s were") + " already stored: see the case link below; no duplicate was made.";
        if (rejected.length) text += " " + rejected.length + " file" + (rejected.length === 1 ? " was" : "s were") + " skipped (see below).";
        showMessage(studies.length ? "ok" : "error", text);
        showResults(studies, rejected);
        files = [];
        input.value = "";
        submit.disabled = true;  // the list stays to show what was sent; choose new files to upload again
      } else {
        setAllBars("failed", 100);
        showMessage("error", "Upload failed: " + errorText(xhr));
      }
    });
    xhr.addEventListener("error", function () {
      submit.disabled = false;
      setAllBars("failed", 100);
      showMessage("error", "Upload failed: " + errorText(xhr));
    });
    submit.disabled = true;
    message.hidden = true;
    xhr.send(data);
  }

  input.addEventListener("change", function () { addFiles(input.files); });
  zone.addEventListener("click", function () { input.click(); });
  zone.addEventListener("keydown", function (event) {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      zone.classList.add("is-over");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      zone.classList.remove("is-over");
    });
  });
  zone.addEventListener("drop", function (event) {
    if (event.dataTransfer && event.dataTransfer.files) addFiles(event.dataTransfer.files);
  });
  clearButton.addEventListener("click", function () {
    files = [];
    input.value = "";
    renderList();
    message.hidden = true;
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (files.length) send();
  });
  renderList();
})();
