// Tessera dashboard: live job page over Server-Sent Events, select-all and confirmations.
(function () {
  "use strict";
  // A job page: on each event of the job, fetch the changing part again (debounced).
  // EventSource reconnects by itself and sends Last-Event-ID, so no event is missed.
  var job = document.querySelector("[data-live-job]");
  if (job && window.EventSource) {
    var url = "/ui/events?job=" + encodeURIComponent(job.dataset.liveJob) +
      "&after=" + encodeURIComponent(job.dataset.after || "0");
    var source = new EventSource(url);
    var pending = null;
    var refresh = function () {
      pending = null;
      htmx.ajax("GET", job.dataset.liveUrl, { target: "#live", swap: "outerHTML" });
    };
    // A lease taken or renewed is no event: look again now and then while the job runs.
    setInterval(function () {
      var ended = document.querySelector("#job-state.done, #job-state.failed, #job-state.cancelled");
      if (!pending && !ended && !document.hidden) { refresh(); }
    }, 5000);
    ["state", "result", "verdict", "transfer"].forEach(function (kind) {
      source.addEventListener(kind, function (e) {
        job.dataset.lastEvent = e.lastEventId;
        if (!pending) { pending = setTimeout(refresh, 250); }
      });
    });
  }
  // "Select all" checkboxes of a table.
  document.addEventListener("change", function (e) {
    var all = e.target.closest && e.target.closest("[data-select-all]");
    if (!all) { return; }
    var boxes = all.closest("table").querySelectorAll("input[name='" + all.dataset.selectAll + "']");
    boxes.forEach(function (b) { b.checked = all.checked; });
  });
  // Buttons that ask first.
  document.addEventListener("click", function (e) {
    var b = e.target.closest && e.target.closest("[data-confirm]");
    if (b && !window.confirm(b.dataset.confirm)) { e.preventDefault(); e.stopPropagation(); }
  }, true);
})();
