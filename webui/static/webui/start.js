// "Start a custom model": once the form is submitted, its buttons turn busy and disabled, so a second
// click cannot send it again (the server also starts one run per form, whatever arrives).
(function () {
  "use strict";
  var form = document.getElementById("training-start");
  if (!form) { return; }
  var buttons = form.querySelectorAll("input[type=submit][data-busy]");
  buttons.forEach(function (button) { button.setAttribute("data-label", button.value); });
  form.addEventListener("submit", function (event) {
    var pressed = event.submitter;
    if (form.getAttribute("data-sent") === "1") { event.preventDefault(); return; }
    form.setAttribute("data-sent", "1");
    // A disabled button is left out of what the browser sends: its name travels in a hidden field.
    if (pressed && pressed.name) {
      var carry = document.createElement("input");
      carry.type = "hidden";
      carry.name = pressed.name;
      carry.value = pressed.value;
      carry.setAttribute("data-carried", "1");
      form.appendChild(carry);
    }
    buttons.forEach(function (button) {
      button.setAttribute("data-was-disabled", button.disabled ? "1" : "0");
      if (button === pressed) { button.value = button.getAttribute("data-busy"); }
      button.disabled = true;
    });
  });
  // Back to this page from the browser's cache: usable again (the key still starts one run only).
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) { return; }
    form.removeAttribute("data-sent");
    form.querySelectorAll("[data-carried]").forEach(function (input) { input.remove(); });
    buttons.forEach(function (button) {
      button.value = button.getAttribute("data-label");
      button.disabled = button.getAttribute("data-was-disabled") === "1";
    });
  });
})();
