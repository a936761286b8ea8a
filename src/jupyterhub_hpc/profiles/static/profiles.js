// jupyterhub-hpc profile form: dependent fields, per-partition bounds, live availability.
// The form works without this script; the server validates everything again.
(function () {
  "use strict";
  var root = document.getElementById("hpc-profiles");
  var dataNode = document.getElementById("hpc-profiles-data");
  if (!root || !dataNode) return;
  var data = JSON.parse(dataNode.textContent);
  var form = root.closest("form");
  var UNLISTED = "unlisted-choice";

  function parseMemoryMiB(text) {
    var m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(String(text));
    if (!m) return null;
    var factor = { K: 1 / 1024, "": 1, M: 1, G: 1024, T: 1024 * 1024 }[m[2].toUpperCase()];
    return Math.ceil(parseFloat(m[1]) * factor);
  }
  function parseWalltime(text) {
    var t = String(text).trim(), days = 0;
    if (/^\d+$/.test(t)) return parseInt(t, 10) * 60;
    var d = /^(\d+)-(.*)$/.exec(t);
    if (d) { days = parseInt(d[1], 10); t = d[2]; }
    var parts = t.split(":");
    if (parts.length < 1 || parts.length > 3 || !parts.every(function (p) { return /^\d+$/.test(p); })) return null;
    var n = parts.map(function (p) { return parseInt(p, 10); });
    var s = n.length === 1 ? n[0] * 60 : n.length === 2 ? n[0] * 3600 + n[1] * 60 : n[0] * 3600 + n[1] * 60 + n[2];
    return days * 86400 + s;
  }
  function fmtWalltime(s) {
    var m = Math.ceil(s / 60), h = Math.floor(m / 60);
    return (h < 10 ? "0" : "") + h + ":" + (m % 60 < 10 ? "0" : "") + (m % 60) + ":00";
  }
  function fmtMemory(mib) { return mib % 1024 === 0 ? mib / 1024 + "G" : mib + "M"; }
  function typed(type, value) {
    if (type === "integer") return value === "" ? null : parseInt(value, 10);
    if (type === "memory") return parseMemoryMiB(value);
    if (type === "walltime") return parseWalltime(value);
    return value;
  }
  function holds(cond, value) {
    if (value === null || value === undefined) return false;
    if (cond.min !== undefined && !(value >= cond.min)) return false;
    if (cond.max !== undefined && !(value <= cond.max)) return false;
    if (cond["in"] !== undefined && cond["in"].indexOf(String(value)) < 0) return false;
    if (cond.not_in !== undefined && cond.not_in.indexOf(String(value)) >= 0) return false;
    return true;
  }
  function partitionInfo(profile, slug) {
    var meta = data.profiles[slug], limits = data.limits[meta.target];
    if (!limits) return null;
    var name = meta.partition;
    var select = profile.querySelector('[data-target="partition"] select, [data-target="partition"] input');
    if (select && select.value && select.value !== UNLISTED) name = select.value;
    name = name || limits.default_partition;
    for (var i = 0; i < limits.partitions.length; i++) if (limits.partitions[i].name === name) return limits.partitions[i];
    return null;
  }
  function cap(target, part, gpuType) {
    if (!part) return null;
    if (target === "walltime") return part.max_walltime_seconds;
    if (target === "cpus") return part.cpus_per_node || null;
    if (target === "memory") return part.memory_per_node_mib || null;
    if (target === "nodes") return part.nodes || null;
    if (target === "gpus") {
      var g = part.gpus_per_node || {};
      if (gpuType) return g[gpuType] || 0;
      var most = 0;
      Object.keys(g).forEach(function (k) { most = Math.max(most, g[k]); });
      return most;
    }
    return null;
  }

  function showMaintenance(chosen) {
    // the maintenance notes of the chosen profile's scheduler and partition (all without a choice)
    root.querySelectorAll(".hpc-maintenance [data-partition]").forEach(function (note) {
      note.hidden = !!chosen && (note.getAttribute("data-target") !== chosen.target ||
        note.getAttribute("data-partition") !== chosen.partition);
    });
    var box = root.querySelector(".hpc-maintenance");
    if (box) box.hidden = !box.querySelector("[data-partition]:not([hidden])");
  }

  function update() {
    var chosen = null;
    root.querySelectorAll(".hpc-profile").forEach(function (profile) {
      var slug = profile.getAttribute("data-profile");
      var radio = profile.querySelector('input[name="profile"]');
      var selected = radio && radio.checked;
      profile.classList.toggle("hpc-selected", !!selected);
      var box = profile.querySelector(".hpc-options");
      if (!box) return;
      box.hidden = !selected;
      box.disabled = !selected;
      var meta = data.profiles[slug], values = {};
      var part = partitionInfo(profile, slug);
      if (selected) chosen = { target: meta.target, partition: part ? part.name : meta.partition };
      var gpuTypeField = profile.querySelector('[data-target="gpu_type"] select');
      var gpuType = gpuTypeField && gpuTypeField.value !== UNLISTED ? gpuTypeField.value : null;
      box.querySelectorAll(".hpc-option").forEach(function (div) {
        var key = div.getAttribute("data-option"), om = meta.options[key] || {};
        var when = om.when || {}, on = true;
        Object.keys(when).forEach(function (k) { if (!holds(when[k], values[k])) on = false; });
        div.hidden = !on;
        div.querySelectorAll("input, select").forEach(function (el) { el.disabled = !on || !selected; });
        var field = div.querySelector("select, input");
        if (on && field) values[key] = typed(om.type, field.value);
        var other = div.querySelector(".hpc-unlisted");
        if (other) {
          var pick = field.value === UNLISTED;
          other.hidden = !pick;
          var input = other.querySelector("input");
          input.disabled = !pick || !on || !selected;
          input.required = pick;
        }
        checkBounds(div, om, part, field, on && selected ? gpuType : null);
      });
    });
    showMaintenance(chosen);
  }

  function checkBounds(div, om, part, field, gpuType) {
    if (!field || ["integer", "memory", "walltime"].indexOf(om.type) < 0) return;
    var high = om.max, limit = cap(om.target, part, gpuType);
    if (limit !== null && limit !== undefined) high = high === null || high === undefined ? limit : Math.min(high, limit);
    var low = om.min, value = typed(om.type, field.value), message = "";
    var show = om.type === "memory" ? fmtMemory : om.type === "walltime" ? fmtWalltime : String;
    if (om.type === "integer" && high !== null && high !== undefined) field.max = high;
    if (field.value !== "" && value === null) message = "Not a valid value.";
    else if (value !== null && low !== null && low !== undefined && value < low) message = "At least " + show(low) + ".";
    else if (value !== null && high !== null && high !== undefined && value > high) {
      message = "At most " + show(high) + (part && limit !== null && limit === high ? " on partition " + part.name : "") + ".";
    }
    field.setCustomValidity(message);
    field.classList.toggle("is-invalid", message !== "");
    var err = div.querySelector(".hpc-field-error");
    if (err) err.textContent = message;
    var hint = div.querySelector(".hpc-hint");
    if (hint && high !== null && high !== undefined) {
      var binding = part && limit !== null && limit === high && (om.max === null || om.max === undefined || limit < om.max);
      hint.textContent = (low !== null && low !== undefined ? show(low) + " to " : "up to ") + show(high) +
        (binding ? " on partition " + part.name : "");
    }
  }

  function refreshTables() {
    if (!data.api_url) return;
    var xsrf = form ? new URL(form.action, location.href).searchParams.get("_xsrf") : null;
    var headers = { Accept: "application/json" };
    if (xsrf) headers["X-XSRFToken"] = xsrf;
    fetch(data.api_url, { headers: headers, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (body) {
        Object.keys(body.limits || {}).forEach(function (target) {
          data.limits[target] = body.limits[target];
          var table = root.querySelector('table[data-target="' + CSS.escape(target) + '"]');
          if (!table) return;
          body.limits[target].partitions.forEach(function (p) {
            var row = table.querySelector('tr[data-partition="' + CSS.escape(p.name) + '"]');
            if (!row) return;
            var cells = row.querySelectorAll("td");
            cells[0].textContent = p.up ? "up" : "down";
            cells[1].textContent = p.idle_nodes + " / " + p.nodes;
            cells[2].textContent = p.idle_cpus;
            cells[3].textContent = p.idle_gpus;
            cells[4].textContent = p.max_walltime || "no limit";
          });
          var asOf = table.querySelector(".hpc-as-of");
          if (asOf) asOf.textContent = body.limits[target].error ? " (the scheduler did not answer)" :
            " (updated " + new Date().toLocaleTimeString() + ")";
        });
        update();
      })
      .catch(function () {
        root.querySelectorAll(".hpc-as-of").forEach(function (el) { el.textContent = " (could not refresh)"; });
      });
  }

  root.addEventListener("change", update);
  root.addEventListener("input", update);
  // the browser checks the fields before "submit" fires: list what it refused, next to the form
  function showErrors() {
    var bad = Array.prototype.filter.call(form.querySelectorAll("input, select"), function (el) {
      return !el.disabled && !el.validity.valid;
    });
    var errors = document.getElementById("hpc-errors");
    errors.hidden = bad.length === 0;
    errors.textContent = bad.map(function (el) {
      var label = form.querySelector('label[for="' + el.id + '"]');
      return (label ? label.textContent.trim() : el.name) + ": " + el.validationMessage;
    }).join(" ");
  }
  var pending = null;
  if (form) {
    form.addEventListener("invalid", function () {
      if (!pending) pending = setTimeout(function () { pending = null; showErrors(); }, 0);
    }, true);
    form.addEventListener("submit", function (event) {
      update();
      if (!form.checkValidity()) event.preventDefault();
      showErrors();
    });
  }
  update();
  if (data.refresh_seconds > 0) setInterval(refreshTables, data.refresh_seconds * 1000);
})();
