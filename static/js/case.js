/* Case page: image selection, per-image AI findings, time to decision and
   live status while the analysis is still running. */
(function () {
  "use strict";

  var F = window.Fetal;
  // performance.now() counts from navigation start: the time the page was opened.
  var POLL_MS = 3000;
  var root = document.querySelector("[data-case]");
  if (!root) return;

  var groups = JSON.parse(document.getElementById("case-groups").textContent);
  var meta = JSON.parse(document.getElementById("case-meta").textContent);
  var viewerRoot = document.querySelector("[data-viewer]");
  var thumbs = Array.prototype.slice.call(document.querySelectorAll("[data-image-index]"));
  var caption = document.querySelector("[data-image-caption]");
  var fileOut = document.querySelector("[data-image-file]");
  var labelOut = document.querySelector("[data-image-label]");
  var probsOut = document.querySelector("[data-image-probs]");
  var flagsOut = document.querySelector("[data-image-flags]");
  var excludedOut = document.querySelector("[data-image-excluded]");
  var form = document.querySelector("[data-diagnosis-form]");
  var viewer = viewerRoot && viewerRoot.querySelector(".viewer-stage") ? new window.FetalViewer(viewerRoot) : null;
  var cineRoot = document.querySelector("[data-cine]");
  var biometryPanel = document.querySelector("[data-biometry]");
  var biometry = viewer && biometryPanel ? new window.FetalBiometry(biometryPanel, viewer, meta.case_id) : null;
  var cine = viewer && cineRoot ? new window.FetalCine(cineRoot, viewer, function (frame, i) { showFindings(frame, i); }, meta.ai_visible) : null;
  var current = 0;
  var formTouched = false;

  function probItems(probs) {
    return probs.map(function (p) {
      var pct = (p.p * 100).toFixed(1);
      return F.el("li", { className: p.top ? "top" : "", "data-class": p.cls }, [
        F.el("div", { className: "prob-row" }, [
          F.el("span", { text: p.human }),
          F.el("span", { className: "pval", text: pct + "%" }),
        ]),
        F.el("div", {
          className: "prob-track", role: "meter", "aria-label": p.human,
          "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": pct,
        }, [F.el("div", { className: "prob-fill", style: "width:" + pct + "%" })]),
      ]);
    });
  }

  function flagItems(image) {
    var flags = [];
    if (image.error) flags.push(["badge-failed", "Could not be analysed: " + image.error]);
    if (image.ood) flags.push(["badge-flag", "Unlike the training images (out of distribution)"]);
    if (image.quality_issue) flags.push(["badge-flag", "Quality: " + image.quality_issue]);
    if (image.used === false && !image.error) flags.push(["badge-unreviewed", "Not used in the verdict"]);
    if (!flags.length && image.label) flags.push(["badge-normal", "No quality or distribution flags"]);
    return flags.map(function (f) { return F.el("li", {}, [F.el("span", { className: "badge " + f[0], text: f[1] })]); });
  }

  function frameName(image) {
    return image.filename + (image.frame !== null && image.frame !== undefined ? " (frame " + (image.frame + 1) + ")" : "");
  }

  // The AI findings and caption of the frame on screen (a still is a one-frame entry).
  function showFindings(image) {
    var group = groups[current];
    var name = frameName(image);
    caption.textContent = "Image " + (current + 1) + " of " + groups.length + " · " + name +
      (group.plane ? " · plane: " + group.plane : "");
    // Lossy inputs move the model's probabilities: the reader sees it beside the file name.
    fileOut.textContent = name + " · " + image.width + "×" + image.height + " px" + (image.lossy ? " · " + image.lossy : "");
    if (labelOut) {
      labelOut.textContent = image.human || (image.error ? "not analysed" : (group.kind === "loop" ? "frame not analysed (played only)" : "no result yet"));
      probsOut.textContent = "";
      probItems(image.probs || []).forEach(function (li) { probsOut.appendChild(li); });
      flagsOut.textContent = "";
      flagItems(image).forEach(function (li) { flagsOut.appendChild(li); });
      // Said in words, not only by the greyed thumbnail: the reader must know the model ignored it.
      excludedOut.hidden = !image.excluded;
      excludedOut.textContent = image.excluded ? "Left out of the verdict: " + image.excluded_reason + "." : "";
    }
    if (biometry) biometry.setFrame(image);
  }

  function frameList(group) {
    return group.frames.map(function (image, i) {
      return {
        original_url: image.original_url,
        heatmap_url: meta.ai_visible ? image.heatmap_url : null,
        alt: "Ultrasound image " + (current + 1) + ", " + frameName(image) + (group.kind === "loop" ? ", frame " + (i + 1) + " of " + group.frames.length : ""),
      };
    });
  }

  function select(index, opening) {
    if (!groups.length) return;
    current = (index + groups.length) % groups.length;
    var group = groups[current];
    thumbs.forEach(function (thumb, i) { thumb.setAttribute("aria-current", i === current ? "true" : "false"); });
    // Only when the reader moves through the images: on opening, the page stays at its top,
    // with the patient and the verdict in view (at 1024×768 it used to open ~785 px down).
    if (thumbs[current] && !opening) thumbs[current].scrollIntoView({ block: "nearest", inline: "nearest" });
    if (viewer) viewer.load(group.key, frameList(group), 0);
    if (cine) cine.attach(group, 0);
    if (group.kind !== "loop") showFindings(group.frames[0], 0);
  }

  thumbs.forEach(function (thumb) {
    thumb.addEventListener("click", function () { select(Number(thumb.getAttribute("data-image-index"))); });
  });
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName) && target.type !== "range" && target.type !== "radio") return;
    if (event.key === "PageDown" || event.key === "]") { select(current + 1); event.preventDefault(); }
    if (event.key === "PageUp" || event.key === "[") { select(current - 1); event.preventDefault(); }
    if ((event.key === "r" || event.key === "R") && viewer) { viewer.resetWindow(); syncPreset(); event.preventDefault(); }
    if (cine && cine.group && !(target && target.tagName === "BUTTON")) {
      if (event.key === " ") { cine.toggle(); event.preventDefault(); }
      if (event.key === "," ) { cine.step(-1); event.preventDefault(); }
      if (event.key === ".") { cine.step(1); event.preventDefault(); }
    }
  });

  // Mouse tools: pan, window/level drag, measure.
  var toolHint = document.querySelector("[data-tool-hint]");
  var TOOL_HINTS = {
    pan: "Wheel to zoom · drag to pan · double-click to fit",
    wl: "Drag right/left for less/more contrast, down/up for darker/brighter · R resets",
    measure: "Click the ends of the measurement on the image (an ellipse: both ends of one axis, then its width)",
  };
  document.querySelectorAll("[data-tool]").forEach(function (radio) {
    radio.addEventListener("change", function () {
      if (!radio.checked || !viewer) return;
      viewer.setTool(radio.value);
      if (toolHint) toolHint.textContent = TOOL_HINTS[radio.value];
    });
  });
  var preset = document.querySelector("[data-wl-preset]");
  function syncPreset() {
    if (!preset || !viewer) return;
    var value = viewer.window + "," + viewer.level;
    var match = Array.prototype.some.call(preset.options, function (o) { return o.value === value; });
    preset.value = match ? value : "";
  }
  if (preset && viewer) {
    preset.addEventListener("change", function () {
      var parts = preset.value.split(",");
      if (parts.length === 2) { viewer.setWindow(Number(parts[0]), Number(parts[1])); viewer.saveState(); }
    });
  }
  var resetButton = document.querySelector("[data-wl-reset]");
  if (resetButton && viewer) resetButton.addEventListener("click", function () { viewer.resetWindow(); syncPreset(); });

  // Side-by-side comparison: a second, independent viewer of another entry's first frame.
  var compareToggle = document.querySelector("[data-compare-toggle]");
  var compareStage = document.querySelector("[data-compare-stage]");
  var compareBar = document.querySelector("[data-compare-bar]");
  var compareWith = document.querySelector("[data-compare-with]");
  var compareViewer = null;
  function showCompare() {
    var group = groups[Number(compareWith.value)];
    if (!group) return;
    var image = group.frames[group.most_suspicious !== null && group.most_suspicious !== undefined ? group.most_suspicious : 0];
    compareViewer.load("cmp-" + group.key, [{ original_url: image.original_url, heatmap_url: null, alt: "Comparison image, " + frameName(image) }], 0);
    document.querySelector("[data-compare-caption]").textContent = frameName(image);
  }
  if (compareToggle && compareStage && viewer) {
    compareToggle.addEventListener("click", function () {
      var on = compareToggle.getAttribute("aria-pressed") !== "true";
      compareToggle.setAttribute("aria-pressed", on ? "true" : "false");
      compareStage.hidden = !on;
      compareBar.hidden = !on;
      viewerRoot.classList.toggle("is-comparing", on);
      if (on) {
        if (!compareViewer) compareViewer = new window.FetalViewer(viewerRoot, { stage: compareStage, controls: false });
        if (compareWith.value === String(current) && groups.length > 1) compareWith.value = String((current + 1) % groups.length);
        showCompare();
      }
      if (viewer.fitted) viewer.fit();
    });
    compareWith.addEventListener("change", showCompare);
  }

  // Thumbnails in AI-support order (as served) or grouped by plane in acquisition order.
  var orderMode = document.querySelector("[data-order-mode]");
  var thumbList = document.querySelector("[data-thumbs]");
  if (orderMode && thumbList) {
    var served = Array.prototype.slice.call(thumbList.children);
    orderMode.addEventListener("change", function () {
      thumbList.querySelectorAll(".thumb-group").forEach(function (h) { h.remove(); });
      var items = served.slice();
      if (orderMode.value === "plane") {
        items.sort(function (a, b) {
          var pa = a.getAttribute("data-plane") || "\uffff";
          var pb = b.getAttribute("data-plane") || "\uffff";
          if (pa !== pb) return pa < pb ? -1 : 1;
          var qa = a.getAttribute("data-acquisition");
          var qb = b.getAttribute("data-acquisition");
          return qa < qb ? -1 : (qa > qb ? 1 : 0);
        });
      }
      var lastPlane = null;
      items.forEach(function (li) {
        if (orderMode.value === "plane") {
          var plane = li.getAttribute("data-plane") || "Plane not named";
          if (plane !== lastPlane) {
            thumbList.appendChild(F.el("li", { className: "thumb-group", text: plane }));
            lastPlane = plane;
          }
        }
        thumbList.appendChild(li);
      });
    });
  }

  if (form) {
    form.addEventListener("input", function () { formTouched = true; });
    setUpDraft(form);
    setUpAgreement(form);
  }

  // A read is never lost: every change is kept in this browser (per user and case) until the
  // server confirms it was recorded. A rejected form comes back filled in by the server; a
  // session that ended mid-read comes back here after the new sign-in and is filled in from it.
  function setUpDraft(dxForm) {
    var key = dxForm.getAttribute("data-draft-key");
    var note = document.querySelector("[data-draft-note]");
    var store = null;
    try { store = window.localStorage; } catch (e) { store = null; }
    if (!store || !key) return;
    if (dxForm.hasAttribute("data-draft-saved")) { store.removeItem(key); return; }
    function fields() {
      var out = {};
      new FormData(dxForm).forEach(function (value, name) {
        if (name === "csrf_token" || name === "based_on" || name === "analysis_id" || name === "kind") return;
        out[name] = String(value);
      });
      return out;
    }
    function save() {
      var values = fields();
      var empty = Object.keys(values).every(function (name) { return !values[name]; });
      if (empty) store.removeItem(key);
      else store.setItem(key, JSON.stringify({ kind: dxForm.elements.kind.value, values: values, at: Date.now() }));
    }
    var saved = null;
    try { saved = JSON.parse(store.getItem(key) || "null"); } catch (e) { saved = null; }
    if (dxForm.hasAttribute("data-server-values")) {
      save();  // what the server sent back is the latest
    } else if (saved && saved.values && saved.kind === dxForm.elements.kind.value) {
      Object.keys(saved.values).forEach(function (name) {
        var field = dxForm.elements[name];
        if (!field) return;
        if (field instanceof RadioNodeList || (field.length && !field.tagName)) {
          Array.prototype.forEach.call(field, function (radio) { radio.checked = radio.value === saved.values[name]; });
        } else if (field.type === "radio") {
          field.checked = field.value === saved.values[name];
        } else {
          field.value = saved.values[name];
        }
      });
      formTouched = true;
      if (note) {
        note.hidden = false;
        note.textContent = "Your unsent read of this case was restored from this browser. Check it, then send it.";
      }
    }
    dxForm.addEventListener("input", save);
    dxForm.addEventListener("change", save);
  }

  // Agreement with the AI follows from the chosen class (the server derives it the same way).
  function setUpAgreement(dxForm) {
    var box = document.querySelector("[data-agreement]");
    if (!box) return;
    var aiLabel = box.getAttribute("data-ai-label");
    var text = box.querySelector("[data-agreement-text]");
    function update() {
      var chosen = dxForm.querySelector("input[name=label]:checked");
      if (!chosen) return;
      text.textContent = chosen.value === aiLabel ? "Your diagnosis agrees with the AI." : "Your diagnosis differs from the AI.";
      box.setAttribute("data-agrees", chosen.value === aiLabel ? "yes" : "no");
    }
    dxForm.addEventListener("change", update);
    update();
  }

  // The soft reading lock: renewed while the page is open; it runs out a few minutes after the
  // reader leaves (releasing it on every reload or form post would fill the audit trail).
  var lockUrl = root.getAttribute("data-lock-url");
  var LOCK_RENEW_MS = 60000;
  function renewLock() {
    var body = new FormData();
    fetch(lockUrl, { method: "POST", body: body, credentials: "same-origin", headers: { "X-CSRF-Token": F.csrfToken(), Accept: "application/json" } })
      .catch(function () { /* the next renewal tries again */ });
  }
  if (lockUrl && document.querySelector("[data-lock-mine]")) {
    setInterval(renewLock, LOCK_RENEW_MS);
  }

  function pollStatus() {
    var status = root.getAttribute("data-status");
    if (status !== "queued" && status !== "running") return;
    setTimeout(function () {
      F.getJSON(root.getAttribute("data-status-api")).then(function (study) {
        if (study.status === status) return pollStatus();
        if (study.status === "queued" || study.status === "running") {
          root.setAttribute("data-status", study.status);
          var badge = document.querySelector("[data-case-status]");
          badge.className = "badge badge-" + study.status;
          badge.textContent = F.STATUS_TEXT[study.status] || study.status;
          return pollStatus();
        }
        // Finished: show the results, unless the radiologist is typing a read.
        if (!formTouched) {
          window.location.reload();
        } else {
          var badge2 = document.querySelector("[data-case-status]");
          badge2.className = "badge badge-" + study.status;
          badge2.textContent = (F.STATUS_TEXT[study.status] || study.status) + " — reload the page to see the results";
        }
      }).catch(function () { pollStatus(); });
    }, POLL_MS);
  }

  select(0, true);
  pollStatus();
})();
