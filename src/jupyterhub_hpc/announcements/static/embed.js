// Tells the hub page that frames this one how tall it is and how many announcements it shows.
(function () {
  "use strict";
  function report() {
    var section = document.querySelector("section.hpc-announcements");
    var count = section ? parseInt(section.getAttribute("data-count") || "0", 10) : 0;
    var height = count > 0 ? Math.ceil(document.documentElement.getBoundingClientRect().height) : 0;
    if (window.parent !== window) {
      window.parent.postMessage({ type: "hpc-announcements", count: count, height: height }, window.location.origin);
    }
  }
  window.addEventListener("load", report);
  window.addEventListener("resize", report);
})();
