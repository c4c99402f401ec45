/* Biometry on the case page: calipers (two points) and ellipses (both ends of one axis, then
   the width) drawn on the image in its own pixels, shown in millimetres from the image's DICOM
   calibration (PhysicalDeltaX/Y of its ultrasound region), saved with the case through the API.
   The server computes the saved value and its Z-score again; the number here is a preview. */
(function () {
  "use strict";

  var F = window.Fetal;
  var SVG_NS = "http://www.w3.org/2000/svg";
  var NO_CALIBRATION = "No calibration: this image has no physical scale (a PNG/JPEG export, or DICOM " +
    "without an ultrasound region in cm). Lengths are in pixels and cannot be saved.";

  function distanceMm(a, b, cal) {
    return Math.hypot((b.x - a.x) * cal.mm_per_px_x, (b.y - a.y) * cal.mm_per_px_y);
  }

  // Centre and conjugate semi-axes (pixels) of the ellipse through the reader's three points.
  function ellipseAxes(p) {
    var c = { x: (p[0].x + p[1].x) / 2, y: (p[0].y + p[1].y) / 2 };
    var u = { x: (p[1].x - p[0].x) / 2, y: (p[1].y - p[0].y) / 2 };
    var len = Math.hypot(u.x, u.y) || 1;
    var n = { x: -u.y / len, y: u.x / len };
    var b = Math.abs((p[2].x - c.x) * n.x + (p[2].y - c.y) * n.y);
    return { c: c, u: u, v: { x: n.x * b, y: n.y * b } };
  }

  function ellipseCircumference(p, sx, sy) {
    var e = ellipseAxes(p);
    var total = 0;
    var steps = 720;
    for (var k = 0; k < steps; k += 1) {
      var t = (2 * Math.PI * k) / steps;
      total += Math.hypot((-e.u.x * Math.sin(t) + e.v.x * Math.cos(t)) * sx, (-e.u.y * Math.sin(t) + e.v.y * Math.cos(t)) * sy);
    }
    return (total / steps) * 2 * Math.PI;
  }

  function Biometry(panel, viewer, caseId) {
    this.panel = panel;
    this.viewer = viewer;
    this.api = panel.getAttribute("data-measure-api");
    this.calOut = panel.querySelector("[data-calibration]");
    this.nameSelect = panel.querySelector("[data-measure-name]");
    this.live = panel.querySelector("[data-measure-live]");
    this.save = panel.querySelector("[data-measure-save]");
    this.clear = panel.querySelector("[data-measure-clear]");
    this.error = panel.querySelector("[data-measure-error]");
    this.rows = panel.querySelector("[data-measurement-rows]");
    this.frame = null;
    this.points = [];
    this.saved = [];
    this.caseId = caseId;
    this.bind();
    this.refresh();
  }

  Biometry.prototype.kind = function () {
    return this.nameSelect.value.split("|")[1];
  };

  Biometry.prototype.name = function () {
    return this.nameSelect.value.split("|")[0];
  };

  Biometry.prototype.bind = function () {
    var self = this;
    this.viewer.onMeasurePoint = function (point) { self.addPoint(point); };
    this.nameSelect.addEventListener("change", function () { self.reset(); });
    this.clear.addEventListener("click", function () { self.reset(); });
    this.save.addEventListener("click", function () { self.submit(); });
  };

  // The frame on screen changed (another image, or another cine frame).
  Biometry.prototype.setFrame = function (frame) {
    var changed = !this.frame || this.frame.id !== frame.id;
    this.frame = frame;
    var cal = frame.calibration;
    this.calOut.textContent = cal
      ? "Calibrated: " + cal.mm_per_px_x.toFixed(3) + " × " + cal.mm_per_px_y.toFixed(3) + " mm per pixel (DICOM ultrasound region)."
      : NO_CALIBRATION;
    this.calOut.className = "calibration " + (cal ? "is-calibrated" : "no-calibration");
    this.panel.setAttribute("data-calibrated", cal ? "true" : "false");
    if (changed) this.reset();
    this.draw();
  };

  Biometry.prototype.reset = function () {
    this.points = [];
    this.live.textContent = "";
    this.error.hidden = true;
    this.update();
  };

  Biometry.prototype.addPoint = function (point) {
    var needed = this.kind() === "ellipse" ? 3 : 2;
    if (this.points.length >= needed) this.points = [];
    this.points.push(point);
    this.update();
  };

  Biometry.prototype.value = function () {
    var cal = this.frame && this.frame.calibration;
    var p = this.points;
    var sx = cal ? cal.mm_per_px_x : 1;
    var sy = cal ? cal.mm_per_px_y : 1;
    if (this.kind() === "distance" && p.length === 2) return distanceMm(p[0], p[1], { mm_per_px_x: sx, mm_per_px_y: sy });
    if (this.kind() === "ellipse" && p.length === 3) return ellipseCircumference(p, sx, sy);
    return null;
  };

  Biometry.prototype.update = function () {
    var value = this.value();
    var cal = this.frame && this.frame.calibration;
    var unit = cal ? " mm" : " px (no calibration)";
    var label = this.nameSelect.options[this.nameSelect.selectedIndex].textContent;
    if (value === null) {
      var needed = this.kind() === "ellipse" ? 3 : 2;
      this.live.textContent = this.points.length ? label + ": point " + this.points.length + " of " + needed + " placed." : "";
    } else {
      this.live.textContent = label + ": " + value.toFixed(1) + unit + (this.kind() === "ellipse" ? " (circumference)" : "");
    }
    this.panel.setAttribute("data-live-value", value === null ? "" : value.toFixed(3));
    this.save.disabled = value === null || !cal;
    this.clear.disabled = !this.points.length;
    this.draw();
  };

  Biometry.prototype.shape = function (points, kind, className) {
    var node;
    if (kind === "ellipse" && points.length === 3) {
      var e = ellipseAxes(points);
      var angle = Math.atan2(e.u.y, e.u.x) * 180 / Math.PI;
      node = document.createElementNS(SVG_NS, "ellipse");
      node.setAttribute("cx", e.c.x);
      node.setAttribute("cy", e.c.y);
      node.setAttribute("rx", Math.hypot(e.u.x, e.u.y));
      node.setAttribute("ry", Math.hypot(e.v.x, e.v.y));
      node.setAttribute("transform", "rotate(" + angle + " " + e.c.x + " " + e.c.y + ")");
    } else if (points.length >= 2) {
      node = document.createElementNS(SVG_NS, "line");
      node.setAttribute("x1", points[0].x);
      node.setAttribute("y1", points[0].y);
      node.setAttribute("x2", points[1].x);
      node.setAttribute("y2", points[1].y);
    } else {
      return null;
    }
    node.setAttribute("class", className);
    node.setAttribute("vector-effect", "non-scaling-stroke");
    return node;
  };

  Biometry.prototype.draw = function () {
    var svg = this.viewer.marks;
    if (!svg) return;
    svg.textContent = "";
    var self = this;
    var frame = this.frame;
    this.saved.forEach(function (m) {
      if (!frame || m.image_id !== frame.id) return;
      var pts = m.points.map(function (p) { return { x: p[0], y: p[1] }; });
      var node = self.shape(pts, m.kind, "mark mark-saved");
      if (node) svg.appendChild(node);
    });
    var live = this.shape(this.points.length === 2 && this.kind() === "ellipse" ? this.points.slice(0, 2) : this.points, this.kind(), "mark mark-live");
    if (live) svg.appendChild(live);
    this.points.forEach(function (p) {
      var dot = document.createElementNS(SVG_NS, "circle");
      dot.setAttribute("cx", p.x);
      dot.setAttribute("cy", p.y);
      dot.setAttribute("r", String(3 / (self.viewer.scale || 1)));
      dot.setAttribute("class", "mark-point");
      svg.appendChild(dot);
    });
  };

  Biometry.prototype.send = function (method, url, body) {
    return fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": F.csrfToken() },
      body: body ? JSON.stringify(body) : undefined,
    }).then(function (response) {
      if (response.status === 204) return null;
      return response.json().then(function (data) {
        if (!response.ok) throw new Error(typeof data.detail === "string" ? data.detail : "The server refused the measurement.");
        return data;
      });
    });
  };

  Biometry.prototype.submit = function () {
    var self = this;
    if (!this.frame || this.value() === null) return;
    var body = {
      image_id: this.frame.id,
      name: this.name(),
      kind: this.kind(),
      points: this.points.map(function (p) { return [p.x, p.y]; }),
    };
    this.save.disabled = true;
    this.send("POST", this.api, body).then(function () {
      self.points = [];
      self.update();
      self.live.textContent = "Saved.";
      return self.refresh();
    }).catch(function (error) {
      self.error.textContent = error.message;
      self.error.hidden = false;
      self.save.disabled = false;
    });
  };

  Biometry.prototype.refresh = function () {
    var self = this;
    return F.getJSON(this.api).then(function (rows) {
      self.saved = rows;
      self.render();
      self.draw();
    }).catch(function (error) {
      self.error.textContent = error.message;
      self.error.hidden = false;
    });
  };

  Biometry.prototype.render = function () {
    var self = this;
    this.rows.textContent = "";
    if (!this.saved.length) {
      this.rows.appendChild(F.el("tr", {}, [F.el("td", { colspan: "5", className: "muted", text: "No measurements yet." })]));
      return;
    }
    this.saved.forEach(function (m) {
      var value = m.value_mm.toFixed(1) + " mm" + (m.kind === "ellipse" && m.axes_mm ? " (" + m.axes_mm[0].toFixed(1) + " × " + m.axes_mm[1].toFixed(1) + ")" : "");
      var limits = m.within_limits === false ? " · outside limits" : "";
      var remove = F.el("button", {
        type: "button", className: "btn btn-small", text: "Remove",
        "aria-label": "Remove " + m.name + " " + m.value_mm.toFixed(1) + " mm",
      });
      remove.addEventListener("click", function () {
        self.send("DELETE", "/api/v1/measurements/" + m.id).then(function () { return self.refresh(); }).catch(function (error) {
          self.error.textContent = error.message;
          self.error.hidden = false;
        });
      });
      self.rows.appendChild(F.el("tr", { "data-measurement-id": String(m.id), title: m.note || m.reference || "" }, [
        F.el("th", { scope: "row", text: m.title + " (" + m.name + ")" }),
        F.el("td", { "data-value-mm": m.value_mm.toFixed(3), text: value + limits }),
        F.el("td", { text: m.z_score === null ? "—" : (m.z_score >= 0 ? "+" : "") + m.z_score.toFixed(2) }),
        F.el("td", { text: m.percentile === null ? "—" : m.percentile.toFixed(1) }),
        F.el("td", {}, [remove]),
      ]));
    });
  };

  window.FetalBiometry = Biometry;
  window.FetalBiometry.distanceMm = distanceMm;
  window.FetalBiometry.ellipseCircumference = ellipseCircumference;
})();
