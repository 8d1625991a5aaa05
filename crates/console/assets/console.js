// openami console: live refresh. While the page's live region (#live) shows a state that
// is about to change (data-live="yes"), fetch the same page every 2 seconds and swap in
// the fresh region. Pages work without this script; it only saves reloads.
"use strict";
(function () {
  function tick() {
    var live = document.getElementById("live");
    if (!live || live.getAttribute("data-live") !== "yes") return;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Console-Refresh": "1" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("live");
        var now = document.getElementById("live");
        if (fresh && now) now.replaceWith(document.importNode(fresh, true));
        setTimeout(tick, 2000);
      })
      .catch(function () { setTimeout(tick, 5000); });
  }
  document.addEventListener("DOMContentLoaded", function () { setTimeout(tick, 2000); });
})();

// Disk image upload (tasks page): send the form with XMLHttpRequest to show the upload's
// progress. The server answers text/plain: the page to go to, or what was wrong. Without
// this script the form posts normally.
(function () {
  function start(form, event) {
    var file = form.querySelector("input[type=file]");
    if (!window.FormData || !file || !file.files || file.files.length !== 1) return;
    event.preventDefault();
    var bar = document.getElementById("upload-progress");
    var status = document.getElementById("upload-status");
    var button = form.querySelector("button[type=submit]");
    var xhr = new XMLHttpRequest();
    function say(text, failed) {
      status.textContent = text;
      status.className = failed ? "failed" : "";
      status.setAttribute("data-state", failed ? "failed" : "uploading");
    }
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-CSRF-Token", form.querySelector("input[name=csrf]").value);
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      var pct = Math.floor(e.loaded * 100 / e.total);
      bar.value = pct;
      bar.setAttribute("data-percent", String(pct));
      say("Uploading… " + pct + "%", false);
    });
    xhr.upload.addEventListener("load", function () {
      bar.value = 100;
      bar.setAttribute("data-percent", "100");
      say("Uploaded; starting the import…", false);
    });
    xhr.addEventListener("load", function () {
      if (xhr.status === 200) {
        status.setAttribute("data-state", "done");
        window.location.href = xhr.responseText;
      } else {
        button.disabled = false;
        bar.hidden = true;
        say(xhr.responseText || ("The upload failed (HTTP " + xhr.status + ")."), true);
      }
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      say("The upload failed: the connection was lost.", true);
    });
    button.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    say("Uploading… 0%", false);
    xhr.send(new FormData(form));
  }
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("upload-form");
    if (form) form.addEventListener("submit", function (e) { start(form, e); });
  });
})();
