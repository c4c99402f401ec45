/* Cine loop player: play, pause and step through a loop's stored frames with a slider,
   the per-frame P(anomaly) of the analysed frames as a timeline under the player, and a
   jump to the most suspicious frame. Frames are drawn by the viewer (window.FetalViewer),
   which keeps each frame's image once loaded, so playback fetches nothing twice. */
(function () {
  "use strict";

  function Cine(root, viewer, onFrame, aiVisible) {
    this.aiVisible = aiVisible !== false;
    this.root = root;
    this.viewer = viewer;
    this.onFrame = onFrame;
    this.play = root.querySelector("[data-cine-play]");
    this.prev = root.querySelector("[data-cine-prev]");
    this.next = root.querySelector("[data-cine-next]");
    this.slider = root.querySelector("[data-cine-slider]");
    this.frameOut = root.querySelector("[data-cine-frame]");
    this.worst = root.querySelector("[data-cine-worst]");
    this.note = root.querySelector("[data-cine-note]");
    this.timeline = root.querySelector("[data-cine-timeline]");
    this.group = null;
    this.index = 0;
    this.timer = null;
    this.bind();
  }

  Cine.prototype.bind = function () {
    var self = this;
    this.play.addEventListener("click", function () { self.toggle(); });
    this.prev.addEventListener("click", function () { self.step(-1); });
    this.next.addEventListener("click", function () { self.step(1); });
    this.slider.addEventListener("input", function () { self.pause(); self.go(Number(self.slider.value)); });
    this.worst.addEventListener("click", function () {
      if (self.group && self.group.most_suspicious !== null) { self.pause(); self.go(self.group.most_suspicious); }
    });
    this.timeline.addEventListener("click", function (event) {
      var bar = event.target.closest("[data-frame-index]");
      if (bar) { self.pause(); self.go(Number(bar.getAttribute("data-frame-index"))); }
    });
  };

  // A loop group from the page (or null for a still, which hides the player).
  Cine.prototype.attach = function (group, index) {
    this.pause();
    this.group = group && group.kind === "loop" ? group : null;
    this.root.hidden = !this.group;
    if (!this.group) return;
    var n = this.group.frames.length;
    this.slider.max = String(n - 1);
    var scores = this.aiVisible
      ? " The model analysed " + this.group.n_analysed + " of them" +
        (this.group.n_analysed ? "; the loop counts as one image in the verdict (the mean of its frames)." : ".")
      : " The per-frame AI scores appear after your preliminary read.";
    this.note.textContent = "Cine loop: " + this.group.frames_text + "." + scores;
    this.worst.disabled = this.group.most_suspicious === null;
    this.drawTimeline();
    this.go(index || 0);
  };

  Cine.prototype.drawTimeline = function () {
    var F = window.Fetal;
    var frames = this.group.frames;
    this.timeline.textContent = "";
    var self = this;
    frames.forEach(function (frame, i) {
      var bar = F.el("span", {
        className: "tl-bar" + (frame.p_anomaly === null ? " tl-none" : "") + (frame.excluded ? " tl-excluded" : ""),
        "data-frame-index": String(i),
        title: "Frame " + (i + 1) + (frame.p_anomaly === null ? ": not analysed" : ": P(anomaly) " + F.percent(frame.p_anomaly, 1)),
      }, [F.el("span", { className: "tl-fill" })]);
      var height = frame.p_anomaly === null ? 8 : Math.max(4, Math.round(frame.p_anomaly * 100));
      bar.firstChild.style.height = height + "%";
      bar.style.width = (100 / frames.length) + "%";
      self.timeline.appendChild(bar);
    });
    this.timeline.setAttribute("data-n-analysed", String(this.group.n_analysed));
  };

  Cine.prototype.go = function (i) {
    if (!this.group) return;
    var n = this.group.frames.length;
    this.index = ((i % n) + n) % n;
    this.slider.value = String(this.index);
    var text = "Frame " + (this.index + 1) + " of " + n;
    this.frameOut.textContent = text;
    this.slider.setAttribute("aria-valuetext", text);
    this.root.setAttribute("data-frame", String(this.index));
    Array.prototype.forEach.call(this.timeline.children, function (bar, k) {
      bar.classList.toggle("tl-current", k === i);
    });
    this.viewer.showFrame(this.index);
    if (this.onFrame) this.onFrame(this.group.frames[this.index], this.index);
  };

  Cine.prototype.step = function (delta) {
    this.pause();
    this.go(this.index + delta);
  };

  Cine.prototype.playing = function () {
    return this.timer !== null;
  };

  Cine.prototype.toggle = function () {
    if (this.playing()) this.pause();
    else this.start();
  };

  Cine.prototype.start = function () {
    if (!this.group || this.playing()) return;
    var self = this;
    var interval = Math.max(10, this.group.frame_time_ms || 40);
    this.viewer.preload();
    this.play.textContent = "Pause";
    this.play.setAttribute("aria-pressed", "true");
    this.root.setAttribute("data-playing", "true");
    var tick = function () {
      var next = (self.index + 1) % self.group.frames.length;
      // Wait for a frame still loading rather than skip it: every frame is seen, in order.
      if (self.viewer.frameReady(next)) self.go(next);
      self.timer = window.setTimeout(tick, interval);
    };
    this.timer = window.setTimeout(tick, interval);
  };

  Cine.prototype.pause = function () {
    if (this.timer !== null) window.clearTimeout(this.timer);
    this.timer = null;
    this.play.textContent = "Play";
    this.play.setAttribute("aria-pressed", "false");
    this.root.setAttribute("data-playing", "false");
  };

  window.FetalCine = Cine;
})();
