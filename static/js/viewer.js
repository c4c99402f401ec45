/* Image viewer: the original image with the Grad-CAM heatmap (an RGBA PNG)
   layered on top. Opacity is plain CSS so that moving the slider never
   re-renders anything on the server. Zoom and pan are one CSS transform on
   the layer that holds both images, so the heatmap can never drift off the
   anatomy it belongs to.

   An entry (a still, or a cine loop) is a stack of frames. Each frame's images are
   loaded once and kept: showing a frame swaps its <img> nodes into the layer, so a
   loop plays without fetching anything again (the server sends images no-store).
   Window/level is an SVG filter (feComponentTransfer, linear) on the original only,
   never on the heatmap. Zoom, pan and window/level are kept per entry. */
(function () {
  "use strict";

  var MIN_SCALE = 0.1;
  var MAX_SCALE = 16;
  var BUTTON_STEP = 1.25;
  var DEFAULT_WINDOW = 255;
  var DEFAULT_LEVEL = 127.5;
  var SVG_NS = "http://www.w3.org/2000/svg";
  var filterCount = 0;

  function clamp(value, lo, hi) {
    return Math.min(hi, Math.max(lo, value));
  }

  // One filter element per viewer; its slope and intercept are the window/level.
  function makeFilter() {
    filterCount += 1;
    var id = "wl-filter-" + filterCount;
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("class", "wl-defs");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("width", "0");
    svg.setAttribute("height", "0");
    var filter = document.createElementNS(SVG_NS, "filter");
    filter.setAttribute("id", id);
    // In sRGB: the default linearRGB would change the image's look at the identity setting.
    filter.setAttribute("color-interpolation-filters", "sRGB");
    var transfer = document.createElementNS(SVG_NS, "feComponentTransfer");
    var funcs = ["feFuncR", "feFuncG", "feFuncB"].map(function (name) {
      var func = document.createElementNS(SVG_NS, name);
      func.setAttribute("type", "linear");
      func.setAttribute("slope", "1");
      func.setAttribute("intercept", "0");
      transfer.appendChild(func);
      return func;
    });
    filter.appendChild(transfer);
    svg.appendChild(filter);
    // Inside the main landmark, so that every element of the page sits in one.
    (document.querySelector("main") || document.body).appendChild(svg);
    return { id: id, funcs: funcs };
  }

  function Viewer(root, options) {
    options = options || {};
    this.root = root;
    this.stage = options.stage || root.querySelector(".viewer-stage");
    this.layer = this.stage.querySelector(".viewer-layer");
    this.base = this.layer.querySelector("img.base, img.cmp-base");
    this.baseClass = this.base.className;
    this.heat = this.layer.querySelector("img.heat");
    this.marks = this.layer.querySelector("svg.marks");
    this.toggle = options.controls === false ? null : root.querySelector("[data-heatmap-toggle]");
    this.slider = options.controls === false ? null : root.querySelector("[data-opacity]");
    this.sliderOut = options.controls === false ? null : root.querySelector("[data-opacity-out]");
    this.zoomOut = options.controls === false ? null : root.querySelector("[data-zoom-level]");
    this.wlOut = options.controls === false ? null : root.querySelector("[data-wl-out]");
    this.filter = makeFilter();
    this.scale = 1;
    this.tx = 0;
    this.ty = 0;
    this.window = DEFAULT_WINDOW;
    this.level = DEFAULT_LEVEL;
    this.fitted = true;
    this.drag = null;
    this.tool = "pan";
    this.key = null;
    this.frames = [];
    this.frameIndex = 0;
    this.cache = {};
    this.states = {};
    this.onMeasurePoint = null;
    this.onFrameShown = null;
    this.bind(options.controls !== false);
    this.applyOpacity();
    this.applyHeatVisibility();
    this.applyWindow();
  }

  Viewer.prototype.bind = function (controls) {
    var self = this;
    if (controls) {
      if (this.toggle) this.toggle.addEventListener("change", function () { self.applyHeatVisibility(); });
      if (this.slider) this.slider.addEventListener("input", function () { self.applyOpacity(); });
      this.root.querySelectorAll("[data-zoom]").forEach(function (button) {
        button.addEventListener("click", function () {
          var action = button.getAttribute("data-zoom");
          if (action === "in") self.zoomAtCentre(BUTTON_STEP);
          else if (action === "out") self.zoomAtCentre(1 / BUTTON_STEP);
          else self.fit();
        });
      });
    }
    this.stage.addEventListener("wheel", function (event) {
      event.preventDefault();
      var rect = self.stage.getBoundingClientRect();
      // Exponential in the wheel delta so trackpads and mice feel the same.
      var factor = Math.exp(-event.deltaY * (event.deltaMode === 1 ? 0.05 : 0.0015));
      self.zoomAt(factor, event.clientX - rect.left, event.clientY - rect.top);
    }, { passive: false });
    this.stage.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) return;
      if (self.tool === "measure") {
        if (self.onMeasurePoint) self.onMeasurePoint(self.toImage(event.clientX, event.clientY));
        return;
      }
      self.stage.setPointerCapture(event.pointerId);
      self.drag = {
        x: event.clientX, y: event.clientY, tx: self.tx, ty: self.ty,
        window: self.window, level: self.level, mode: self.tool,
      };
      self.stage.classList.add("is-dragging");
    });
    this.stage.addEventListener("pointermove", function (event) {
      if (!self.drag) return;
      var dx = event.clientX - self.drag.x;
      var dy = event.clientY - self.drag.y;
      if (self.drag.mode === "wl") {
        // Right: wider window (less contrast); down: higher level (darker), as on a scanner.
        self.setWindow(self.drag.window + dx, self.drag.level + dy);
        return;
      }
      self.tx = self.drag.tx + dx;
      self.ty = self.drag.ty + dy;
      self.fitted = false;
      self.applyTransform();
    });
    var endDrag = function () {
      self.drag = null;
      self.stage.classList.remove("is-dragging");
      self.saveState();
    };
    this.stage.addEventListener("pointerup", endDrag);
    this.stage.addEventListener("pointercancel", endDrag);
    this.stage.addEventListener("dblclick", function () { if (self.tool !== "measure") self.fit(); });
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

  Viewer.prototype.setTool = function (tool) {
    this.tool = tool;
    this.stage.setAttribute("data-tool", tool);
  };

  // frames: [{original_url, heatmap_url, alt}]; key: the entry whose zoom/pan/window are kept.
  Viewer.prototype.load = function (key, frames, index) {
    if (this.key !== null) this.saveState();
    this.key = key;
    this.frames = frames;
    var cached = this.cache[key];
    if (!cached) {
      cached = frames.map(function () { return null; });
      this.cache[key] = cached;
    }
    this.restoring = true;
    this.showFrame(index || 0);
  };

  Viewer.prototype.frameNodes = function (i) {
    var nodes = this.cache[this.key][i];
    if (nodes) return nodes;
    var frame = this.frames[i];
    var base = new Image();
    base.className = this.baseClass;
    base.alt = frame.alt || "";
    base.draggable = false;
    base.src = frame.original_url;
    var heat = null;
    if (frame.heatmap_url && this.heat) {
      heat = new Image();
      heat.className = "heat";
      heat.alt = "";
      heat.draggable = false;
      heat.setAttribute("data-heat", "");
      heat.src = frame.heatmap_url;
    }
    nodes = { base: base, heat: heat };
    this.cache[this.key][i] = nodes;
    return nodes;
  };

  // Starts loading every frame of the current entry (for playback); the promise settles when all are in.
  Viewer.prototype.preload = function () {
    var self = this;
    return Promise.all(this.frames.map(function (_, i) {
      var img = self.frameNodes(i).base;
      if (img.complete && img.naturalWidth) return Promise.resolve();
      return new Promise(function (resolve) {
        img.addEventListener("load", resolve, { once: true });
        img.addEventListener("error", resolve, { once: true });
      });
    }));
  };

  Viewer.prototype.frameReady = function (i) {
    var nodes = this.frameNodes(i);
    return nodes.base.complete && nodes.base.naturalWidth > 0;
  };

  Viewer.prototype.showFrame = function (i) {
    var self = this;
    this.frameIndex = i;
    var nodes = this.frameNodes(i);
    if (this.base !== nodes.base) {
      this.layer.replaceChild(nodes.base, this.base);
      this.base = nodes.base;
    }
    if (this.heat) {
      var heat = nodes.heat;
      if (!heat) {
        // A frame without a heatmap (not analysed, or withheld): an empty layer keeps the slot.
        heat = this.emptyHeat || (this.emptyHeat = (function () {
          var img = new Image();
          img.className = "heat";
          img.alt = "";
          img.setAttribute("data-heat", "");
          return img;
        })());
      }
      if (this.heat !== heat) {
        this.layer.replaceChild(heat, this.heat);
        this.heat = heat;
      }
      if (this.toggle) this.toggle.disabled = !nodes.heat;
    }
    this.applyOpacity();
    this.applyHeatVisibility();
    this.applyWindow();
    var whenLoaded = function () {
      if (self.restoring) {
        self.restoring = false;
        self.restoreState();
      }
      if (self.marks) self.sizeMarks();
      if (self.onFrameShown) self.onFrameShown(i);
    };
    if (this.base.complete && this.base.naturalWidth) whenLoaded();
    else this.base.addEventListener("load", function () { if (self.base === nodes.base) whenLoaded(); }, { once: true });
  };

  Viewer.prototype.sizeMarks = function () {
    var size = this.naturalSize();
    this.marks.setAttribute("viewBox", "0 0 " + size.w + " " + size.h);
    this.marks.setAttribute("width", String(size.w));
    this.marks.setAttribute("height", String(size.h));
  };

  Viewer.prototype.saveState = function () {
    if (this.key === null) return;
    this.states[this.key] = {
      scale: this.scale, tx: this.tx, ty: this.ty, fitted: this.fitted,
      window: this.window, level: this.level,
    };
  };

  Viewer.prototype.restoreState = function () {
    var state = this.states[this.key];
    if (!state || state.fitted) {
      this.fit();
    } else {
      var size = this.naturalSize();
      this.layer.style.width = size.w + "px";
      this.layer.style.height = size.h + "px";
      this.scale = state.scale;
      this.tx = state.tx;
      this.ty = state.ty;
      this.fitted = false;
      this.applyTransform();
    }
    this.setWindow(state ? state.window : DEFAULT_WINDOW, state ? state.level : DEFAULT_LEVEL);
  };

  // Still images: one frame. Kept for callers of the earlier viewer.
  Viewer.prototype.show = function (originalUrl, heatmapUrl, altText) {
    this.load(originalUrl, [{ original_url: originalUrl, heatmap_url: heatmapUrl, alt: altText }], 0);
  };

  Viewer.prototype.setWindow = function (width, level) {
    this.window = clamp(Math.round(width), 1, 510);
    this.level = clamp(Math.round(level * 2) / 2, -127, 382);
    this.applyWindow();
  };

  Viewer.prototype.resetWindow = function () {
    this.setWindow(DEFAULT_WINDOW, DEFAULT_LEVEL);
    this.saveState();
  };

  Viewer.prototype.applyWindow = function () {
    // out = (in − (L − W/2)) / W on 0–255 greys, i.e. slope 255/W and intercept 0.5 − L/W on 0–1.
    var slope = 255 / this.window;
    var intercept = 0.5 - this.level / this.window;
    this.filter.funcs.forEach(function (func) {
      func.setAttribute("slope", slope.toFixed(5));
      func.setAttribute("intercept", intercept.toFixed(5));
    });
    var identity = this.window === DEFAULT_WINDOW && this.level === DEFAULT_LEVEL;
    this.base.style.filter = identity ? "" : "url(#" + this.filter.id + ")";
    this.root.setAttribute("data-window", String(this.window));
    this.root.setAttribute("data-level", String(this.level));
    if (this.wlOut) this.wlOut.textContent = "W " + this.window + " · L " + Math.round(this.level);
  };

  Viewer.prototype.applyOpacity = function () {
    if (!this.slider || !this.heat) return;
    var value = Number(this.slider.value) / 100;
    this.heat.style.opacity = String(value);
    if (this.sliderOut) this.sliderOut.textContent = Math.round(value * 100) + "%";
    this.slider.setAttribute("aria-valuetext", Math.round(value * 100) + " percent");
  };

  Viewer.prototype.applyHeatVisibility = function () {
    if (!this.heat) return;
    var on = !this.toggle || (this.toggle.checked && !this.toggle.disabled);
    this.heat.hidden = !on || !this.heat.getAttribute("src");
    if (this.slider) this.slider.disabled = !on;
    this.root.setAttribute("data-heatmap", on ? "on" : "off");
  };

  Viewer.prototype.naturalSize = function () {
    return { w: this.base.naturalWidth || 1, h: this.base.naturalHeight || 1 };
  };

  // Screen point → original image pixels (the layer's transform undone).
  Viewer.prototype.toImage = function (clientX, clientY) {
    var rect = this.stage.getBoundingClientRect();
    return {
      x: (clientX - rect.left - this.tx) / this.scale,
      y: (clientY - rect.top - this.ty) / this.scale,
    };
  };

  // Original image pixels → screen point (for tests and for placing labels).
  Viewer.prototype.toScreen = function (x, y) {
    var rect = this.stage.getBoundingClientRect();
    return { x: rect.left + this.tx + x * this.scale, y: rect.top + this.ty + y * this.scale };
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
    this.saveState();
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
    this.saveState();
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
    this.saveState();
  };

  Viewer.prototype.applyTransform = function () {
    this.layer.style.transform =
      "translate(" + this.tx.toFixed(1) + "px," + this.ty.toFixed(1) + "px) scale(" + this.scale.toFixed(4) + ")";
    if (this.zoomOut) this.zoomOut.textContent = Math.round(this.scale * 100) + "%";
    if (this.marks) this.marks.style.setProperty("--mark-scale", String(1 / this.scale));
  };

  window.FetalViewer = Viewer;
})();
