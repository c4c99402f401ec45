/* Case page: image selection, per-image AI findings, time to decision and
   live status while the analysis is still running. */
(function () {
  "use strict";

  var F = window.Fetal;
  // performance.now() counts from navigation start: the time the page was opened.
  var POLL_MS = 3000;
  var root = document.querySelector("[data-case]");
  if (!root) return;

  var images = JSON.parse(document.getElementById("case-images").textContent);
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

  function select(index) {
    if (!images.length) return;
    current = (index + images.length) % images.length;
    var image = images[current];
    thumbs.forEach(function (thumb, i) { thumb.setAttribute("aria-current", i === current ? "true" : "false"); });
    if (thumbs[current]) thumbs[current].scrollIntoView({ block: "nearest", inline: "nearest" });
    var name = image.filename + (image.frame !== null && image.frame !== undefined ? " (frame " + (image.frame + 1) + ")" : "");
    if (viewer) viewer.show(image.original_url, meta.ai_visible ? image.heatmap_url : null, "Ultrasound image " + (current + 1) + ", " + name);
    caption.textContent = "Image " + (current + 1) + " of " + images.length + " · " + name;
    // Lossy inputs move the model's probabilities: the reader sees it beside the file name.
    fileOut.textContent = name + " · " + image.width + "×" + image.height + " px" + (image.lossy ? " · " + image.lossy : "");
    if (labelOut) {
      labelOut.textContent = image.human || (image.error ? "not analysed" : "no result yet");
      probsOut.textContent = "";
      probItems(image.probs || []).forEach(function (li) { probsOut.appendChild(li); });
      flagsOut.textContent = "";
      flagItems(image).forEach(function (li) { flagsOut.appendChild(li); });
      // Said in words, not only by the greyed thumbnail: the reader must know the model ignored it.
      excludedOut.hidden = !image.excluded;
      excludedOut.textContent = image.excluded ? "Left out of the verdict: " + image.excluded_reason + "." : "";
    }
  }

  thumbs.forEach(function (thumb) {
    thumb.addEventListener("click", function () { select(Number(thumb.getAttribute("data-image-index"))); });
  });
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (target && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)) return;
    if (event.key === "PageDown" || event.key === "]") { select(current + 1); event.preventDefault(); }
    if (event.key === "PageUp" || event.key === "[") { select(current - 1); event.preventDefault(); }
  });

  if (form) {
    form.addEventListener("input", function () { formTouched = true; });
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

  select(0);
  pollStatus();
})();
