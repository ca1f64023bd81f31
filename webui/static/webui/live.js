// Refresh a page section from a fragment URL every few seconds while the fragment says it is active.
// The fragment is the whole live truth of its page: the tab's title follows its status too, and what
// the reader opened or scrolled (a <details>, a log) stays so across refreshes.
(function () {
  "use strict";
  document.querySelectorAll("[data-live-url]").forEach(function (box) {
    var url = box.getAttribute("data-live-url");
    var every = parseInt(box.getAttribute("data-live-every") || "2000", 10);
    function body() { return box.querySelector("[data-active]"); }
    function active() {
      var b = body();
      return !b || b.getAttribute("data-active") === "1";
    }
    function title() {
      var b = body();
      var words = b && b.getAttribute("data-title");
      if (words) {
        var rest = document.title.indexOf(" | ");
        document.title = words + (rest >= 0 ? document.title.slice(rest) : "");
      }
    }
    function replace(html) {
      var kept = {};
      box.querySelectorAll("details[id], pre[id]").forEach(function (el) {
        kept[el.id] = {open: el.open, top: el.scrollTop};
      });
      box.innerHTML = html;
      Object.keys(kept).forEach(function (id) {
        var el = document.getElementById(id);
        if (!el) { return; }
        if (el.tagName === "DETAILS") { el.open = kept[id].open; }
        el.scrollTop = kept[id].top;
      });
      title();
    }
    function tick() {
      if (!active()) { return; }
      fetch(url, {credentials: "same-origin", headers: {"X-Requested-With": "fetch"}})
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
        .then(replace)
        .catch(function () { /* a missed poll is retried on the next tick */ })
        .finally(function () { if (active()) { setTimeout(tick, every); } });
    }
    title();
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
