// polyn catalog: the index's search box and filters. No framework, nothing fetched.
(function () {
  "use strict";
  var search = document.getElementById("search");
  var domain = document.getElementById("domain-filter");
  var service = document.getElementById("service-filter");
  var count = document.getElementById("count");
  var none = document.getElementById("no-match");
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr.event"));
  if (!search) { return; }

  function apply() {
    var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0;
    rows.forEach(function (row) {
      var text = row.getAttribute("data-text");
      var visible = words.every(function (word) { return text.indexOf(word) >= 0; })
        && (!domain.value || row.getAttribute("data-domain") === domain.value)
        && (!service.value || row.getAttribute("data-services").indexOf(" " + service.value + " ") >= 0);
      row.hidden = !visible;
      if (visible) { shown += 1; }
    });
    count.textContent = shown + " of " + rows.length + " events";
    none.hidden = shown !== 0;
  }

  [search, domain, service].forEach(function (input) {
    input.addEventListener("input", apply);
    input.addEventListener("change", apply);
  });
  apply();  // a query the browser restored on back / forward
})();
