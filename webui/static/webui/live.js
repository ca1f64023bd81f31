// Refresh a page section from a fragment URL every few seconds while the fragment says it is active.
(function () {
  "use strict";
  document.querySelectorAll("[data-live-url]").forEach(function (box) {
    var url = box.getAttribute("data-live-url");
    var every = parseInt(box.getAttribute("data-live-every") || "2000", 10);
    function active() {
      var body = box.querySelector("[data-active]");
      return !body || body.getAttribute("data-active") === "1";
    }
    function tick() {
      if (!active()) { return; }
      fetch(url, {credentials: "same-origin", headers: {"X-Requested-With": "fetch"}})
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
        .then(function (html) { box.innerHTML = html; })
        .catch(function () { /* a missed poll is retried on the next tick */ })
        .finally(function () { if (active()) { setTimeout(tick, every); } });
    }
    setTimeout(tick, every);
  });
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.getElementById(button.getAttribute("data-copy"));
      field.select();
      var done = function () { button.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); });
      } else { document.execCommand("copy"); done(); }
    });
  });
})();
