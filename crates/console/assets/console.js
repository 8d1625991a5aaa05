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
