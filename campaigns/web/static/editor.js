// Live preview for the step editor: debounced POST of the unsaved templates to the preview
// API; everything returned is inserted as text (never HTML), the email into a sandboxed iframe.
(function () {
  "use strict";
  var form = document.getElementById("step-editor");
  if (!form) return;
  var token = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var timer = null;
  var seq = 0;

  function text(id, value) {
    var el = document.getElementById(id);
    if (el) el.textContent = value || "";
  }

  function show(data) {
    text("preview-sms", data.sms);
    text("preview-segments", data.segments
      ? data.segments.segments + " segments (" + data.segments.encoding + ")" : "");
    text("preview-subject", data.subject);
    text("preview-email-text", data.email_text);
    document.getElementById("preview-email").srcdoc = data.email_html || "";
    var box = document.getElementById("preview-problems");
    box.textContent = "";
    (data.problems || []).forEach(function (p) {
      var line = document.createElement("p");
      line.className = "error";
      line.textContent = p.file + (p.line ? ":" + p.line : "") + ": " + p.message;
      box.appendChild(line);
    });
  }

  function refresh() {
    var files = {};
    form.querySelectorAll("textarea").forEach(function (t) { files[t.name] = t.value; });
    var mine = ++seq;
    fetch(form.dataset.previewUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
      body: JSON.stringify({ step: form.dataset.step, files: files })
    }).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data && mine === seq) show(data); })
      .catch(function () { /* keep the last preview; saving still validates */ });
  }

  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 400);
  });
})();
