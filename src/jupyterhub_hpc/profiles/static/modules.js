// jupyterhub-hpc "modules" options: a search box over the module list, the count picked, the limit.
// The form works without this script (a plain multi-select); the server validates everything again.
(function () {
  "use strict";
  document.querySelectorAll(".hpc-modules").forEach(function (box) {
    var select = box.querySelector("select");
    var search = box.querySelector(".hpc-modules-search");
    var status = box.querySelector(".hpc-modules-status");
    var most = parseInt(box.getAttribute("data-max"), 10);
    var options = Array.prototype.slice.call(select.options);
    function picked() {
      return options.filter(function (o) { return o.selected && !o.disabled; });
    }
    function filter() {
      var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      options.forEach(function (o) {
        var text = (o.value + " " + (o.title || "")).toLowerCase();
        var match = o.selected || words.every(function (w) { return text.indexOf(w) >= 0; });
        o.hidden = !match;
        if (match) shown++;
      });
      return shown;
    }
    function count() {
      var n = picked().length;
      var message = n > most ? "At most " + most + " modules (" + n + " picked)." : "";
      select.setCustomValidity(message);
      select.classList.toggle("is-invalid", message !== "");
      if (status) {
        status.textContent = message || (n + " picked: " + picked().map(function (o) { return o.value; }).join(", "));
      }
    }
    search.addEventListener("input", function (event) {
      event.stopPropagation();
      var shown = filter();
      if (status && search.value) status.textContent = shown + " matching";
    });
    select.addEventListener("change", count);
    count();
  });
})();
