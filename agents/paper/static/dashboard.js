// quantgym paper dashboard: refresh the panel when the ledger changes; send the kill switch.
// Same-origin requests only (the server's Content-Security-Policy forbids any other).
"use strict";
(function () {
  var POLL_MS = 1000;
  var panel = document.getElementById("panel");

  function version() {
    var body = document.getElementById("panel-body");
    return body ? body.getAttribute("data-version") : null;
  }

  function poll() {
    fetch("/api/state", { cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (state) {
        if (!state || state.version === version()) return null;
        return fetch("/panel", { cache: "no-store" }).then(function (r) { return r.ok ? r.text() : null; });
      })
      .then(function (html) { if (html) panel.innerHTML = html; })
      .catch(function () { /* the session ended or is restarting: keep the last view */ })
      .then(function () { setTimeout(poll, POLL_MS); });
  }

  var form = document.getElementById("kill");
  var result = document.getElementById("kill-result");
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var body = JSON.stringify({
      token: document.getElementById("kill-token").value,
      reason: document.getElementById("kill-reason").value
    });
    fetch("/api/kill", { method: "POST", headers: { "Content-Type": "application/json" }, body: body })
      .then(function (r) { return r.json().then(function (j) { return [r.status, j]; }); })
      .then(function (res) {
        result.textContent = res[0] === 200 ? "kill switch set: " + res[1].reason
                                            : "refused (" + res[0] + "): " + res[1].error;
        result.setAttribute("data-status", String(res[0]));
        document.getElementById("kill-token").value = "";
      })
      .catch(function (err) { result.textContent = "request failed: " + err; });
  });

  setTimeout(poll, POLL_MS);
})();
