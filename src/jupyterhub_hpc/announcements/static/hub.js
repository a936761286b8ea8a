// On the hub's home and spawn pages: shows the announcements frame once it has something to show,
// at its content's height; JupyterHub's yellow "announcement" box around it becomes a plain one.
(function () {
  "use strict";
  var frame = document.getElementById("hpc-announcements");
  if (!frame) {
    return;
  }
  var box = frame.closest(".announcement");
  if (box) {
    box.classList.remove("alert", "alert-warning", "text-center");
  }
  window.addEventListener("message", function (event) {
    if (event.origin !== window.location.origin || event.source !== frame.contentWindow) {
      return;
    }
    var data = event.data || {};
    if (data.type !== "hpc-announcements") {
      return;
    }
    var count = Number(data.count) || 0;
    frame.hidden = count === 0;
    frame.style.height = (Number(data.height) || 0) + "px";
    frame.setAttribute("data-count", String(count));
  });
})();
