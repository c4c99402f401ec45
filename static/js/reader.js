// The reading page's activity pings: while the reader moves, types or scrolls, at most one ping
// every 15 s tells the server the read is being worked on, so that only real absences (gaps over
// the study's idle threshold) are left out of the reading time, which the server measures.
(function () {
  "use strict";
  var section = document.querySelector("[data-activity-url]");
  if (!section) return;
  var url = section.getAttribute("data-activity-url");
  var last = 0;
  function ping() {
    var now = Date.now();
    if (now - last < 15000) return;
    last = now;
    var xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-CSRF-Token", window.Fetal.csrfToken());
    xhr.send();
  }
  ["mousemove", "keydown", "scroll", "touchstart", "click"].forEach(function (name) {
    document.addEventListener(name, ping, { passive: true });
  });
})();
