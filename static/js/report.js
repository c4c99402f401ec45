/* The structured report page: its Print button (the page's print style hides the controls). */
(function () {
  "use strict";
  var button = document.querySelector("[data-print]");
  if (button) button.addEventListener("click", function () { window.print(); });
})();
