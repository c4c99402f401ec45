/* Image viewer: the original image with the Grad-CAM heatmap (an RGBA PNG)
   layered on top. Opacity is plain CSS so that moving the slider never
   re-renders anything on the server. Zoom and pan are one CSS transform on
   the layer that holds both images, so the heatmap can never drift off the
   anatomy it belongs to. */
(function () {
  "use strict";

  var MIN_SCALE = 0.1;
  var MAX_SCALE = 16;
  var BUTTON_STEP = 1.25;

  function clamp(value, lo, hi) {
    return Math.min(hi, Math.max(lo, value));
  }

  function Viewer(root) {
    this.root = root;
    this.stage = root.querySelector(".viewer-stage");
    this.layer = root.querySelector(".viewer-layer");
    this.base = root.querySelector("img.base");
    this.heat = root.querySelector("img.heat");
    this.toggle = root.querySelector("[data-heatmap-toggle]");
    this.slider = root.querySelector("[data-opacity]");
    this.sliderOut = root.querySelector("[data-opacity-out]");
    this.zoomOut = root.querySelector("[data-zoom-level]");
    this.scale = 1;
    this.tx = 0;
    this.ty = 0;
    this.fitted = true;
    this.drag = null;
    this.bind();
    this.applyOpacity();
    this.applyHeatVisibility();
  }

  Viewer.prototype.bind = function () {
    var self = this;
    if (this.toggle) {
      this.toggle.addEventListener("change", function () { self.applyHeatVisibility(); });
    }
    if (this.slider) {
      this.slider.addEventListener("input", function () { self.applyOpacity(); });
    }
    this.root.querySelectorAll("[data-zoom]").forEach(function (button) {
      button.addEventListener("click", function () {
        var action = button.getAttribute("data-zoom");
        if (action === "in") self.zoomAtCentre(BUTTON_STEP);
        else if (action === "out") self.zoomAtCentre(1 / BUTTON_STEP);
        else self.fit();
      });
    });
    this.base.addEventListener("load", function () { self.fit(); });
    this.stage.addEventListener("wheel", function (event) {
      event.preventDefault();
      var rect = self.stage.getBoundingClientRect();
      // Exponential in the wheel delta so trackpads and mice feel the same.
      var factor = Math.exp(-event.deltaY * (event.deltaMode === 1 ? 0.05 : 0.0015));
      self.zoomAt(factor, event.clientX - rect.left, event.clientY - rect.top);
    }, { passive: false });
    this.stage.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) return;
      self.stage.setPointerCapture(event.pointerId);
      self.drag = { x: event.clientX, y: event.clientY, tx: self.tx, ty: self.ty };
      self.stage.classList.add("is-dragging");
    });
    this.stage.addEventListener("pointermove", function (event) {
      if (!self.drag) return;
      self.tx = self.drag.tx + (event.clientX - self.drag.x);
      self.ty = self.drag.ty + (event.clientY - self.drag.y);
      self.fitted = false;
      self.applyTransform();
    });
    var endDrag = function () {
      self.drag = null;
      self.stage.classList.remove("is-dragging");
    };
    this.stage.addEventListener("pointerup", endDrag);
    this.stage.addEventListener("pointercancel", endDrag);
    this.stage.addEventListener("dblclick", function () { self.fit(); });
    this.stage.addEventListener("keydown", function (event) { self.onKey(event); });
    window.addEventListener("resize", function () { if (self.fitted) self.fit(); });
  };

  Viewer.prototype.onKey = function (event) {
    var step = 40;
    var handled = true;
    switch (event.key) {
      case "+": case "=": this.zoomAtCentre(BUTTON_STEP); break;
      case "-": case "_": this.zoomAtCentre(1 / BUTTON_STEP); break;
      case "0": this.fit(); break;
      case "ArrowLeft": this.panBy(step, 0); break;
      case "ArrowRight": this.panBy(-step, 0); break;
      case "ArrowUp": this.panBy(0, step); break;
      case "ArrowDown": this.panBy(0, -step); break;
      case "h": case "H":
        if (this.toggle && !this.toggle.disabled) {
          this.toggle.checked = !this.toggle.checked;
          this.applyHeatVisibility();
        }
        break;
      default: handled = false;
    }
    if (handled) event.preventDefault();
  };

  Viewer.prototype.show = function (originalUrl, heatmapUrl, altText) {
    this.base.alt = altText || "";
    if (heatmapUrl) {
      this.heat.src = heatmapUrl;
      if (this.toggle) this.toggle.disabled = false;
    } else {
      this.heat.removeAttribute("src");
      if (this.toggle) this.toggle.disabled = true;
    }
    this.base.src = originalUrl;
    this.applyHeatVisibility();
  };

  Viewer.prototype.applyOpacity = function () {
    if (!this.slider) return;
    var value = Number(this.slider.value) / 100;
    this.heat.style.opacity = String(value);
    if (this.sliderOut) this.sliderOut.textContent = Math.round(value * 100) + "%";
    this.slider.setAttribute("aria-valuetext", Math.round(value * 100) + " percent");
  };

  Viewer.prototype.applyHeatVisibility = function () {
    var on = !this.toggle || (this.toggle.checked && !this.toggle.disabled);
    this.heat.hidden = !on || !this.heat.getAttribute("src");
    if (this.slider) this.slider.disabled = !on;
    this.root.setAttribute("data-heatmap", on ? "on" : "off");
  };

  Viewer.prototype.naturalSize = function () {
    return { w: this.base.naturalWidth || 1, h: this.base.naturalHeight || 1 };
  };

  Viewer.prototype.fit = function () {
    var size = this.naturalSize();
    var box = this.stage.getBoundingClientRect();
    this.layer.style.width = size.w + "px";
    this.layer.style.height = size.h + "px";
    this.scale = clamp(Math.min(box.width / size.w, box.height / size.h), MIN_SCALE, MAX_SCALE);
    this.tx = (box.width - size.w * this.scale) / 2;
    this.ty = (box.height - size.h * this.scale) / 2;
    this.fitted = true;
    this.applyTransform();
  };

  Viewer.prototype.zoomAt = function (factor, x, y) {
    var next = clamp(this.scale * factor, MIN_SCALE, MAX_SCALE);
    var applied = next / this.scale;
    // Keep the image point under (x, y) fixed on screen.
    this.tx = x - (x - this.tx) * applied;
    this.ty = y - (y - this.ty) * applied;
    this.scale = next;
    this.fitted = false;
    this.applyTransform();
  };

  Viewer.prototype.zoomAtCentre = function (factor) {
    var box = this.stage.getBoundingClientRect();
    this.zoomAt(factor, box.width / 2, box.height / 2);
  };

  Viewer.prototype.panBy = function (dx, dy) {
    this.tx += dx;
    this.ty += dy;
    this.fitted = false;
    this.applyTransform();
  };

  Viewer.prototype.applyTransform = function () {
    this.layer.style.transform =
      "translate(" + this.tx.toFixed(1) + "px," + this.ty.toFixed(1) + "px) scale(" + this.scale.toFixed(4) + ")";
    if (this.zoomOut) this.zoomOut.textContent = Math.round(this.scale * 100) + "%";
  };

  window.FetalViewer = Viewer;
})();
