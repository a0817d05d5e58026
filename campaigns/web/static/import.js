// Shows an honest "working" indicator while the server imports the file row by row.
(function () {
  "use strict";
  var form = document.getElementById("import-form");
  if (!form) { return; }
  form.addEventListener("submit", function () {
    var progress = document.getElementById("import-progress");
    var button = form.querySelector("button[type=submit]");
    if (progress) { progress.hidden = false; }
    if (button) { button.disabled = true; }
  });
}());
