/* Baosong admin: CSRF header for HTMX requests, confirmations, bar widths and charts from embedded JSON.
   No external resources, no inline script anywhere (the Content-Security-Policy forbids it): pages declare
   behaviour with data- attributes read here. */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // Every HTMX request carries the session's CSRF token (the server checks it on every POST).
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  // A session that expired while a page was polling: go to the login page.
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    if (xhr && xhr.status === 401) { window.location.href = "/login"; }
  });

  // Confirmations: data-confirm="..." on a form (asked before it is submitted, HTMX or not) or on a
  // submit button / link (asked when it is used). Captured on the document so a refusal stops HTMX too.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var submitter = event.submitter;
    var question = (submitter && submitter.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[data-confirm]") : null;
    if (link && !window.confirm(link.getAttribute("data-confirm"))) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // Progress bars: <span data-percent="42"> gets its width here (style attributes would need an unsafe CSP).
  function sizeBars(root) {
    (root || document).querySelectorAll("[data-percent]").forEach(function (bar) {
      var percent = Math.max(0, Math.min(100, parseFloat(bar.getAttribute("data-percent")) || 0));
      bar.style.width = percent + "%";
    });
  }

  function drawCharts(root) {
    if (typeof window.Chart === "undefined") { return; }
    (root || document).querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas.dataset.drawn) { return; }
      var source = document.getElementById(canvas.dataset.chart);
      if (!source) { return; }
      var spec = JSON.parse(source.textContent);
      canvas.dataset.drawn = "1";
      new window.Chart(canvas, {
        type: spec.type,
        data: { labels: spec.labels, datasets: spec.datasets },
        options: {
          responsive: true,
          maintainAspectRatio: false,
          animation: false,
          interaction: { mode: "index", intersect: false },
          plugins: { legend: { position: "bottom" } },
          scales: Object.assign({
            x: { stacked: spec.stacked },
            y: { stacked: spec.stacked, beginAtZero: true, title: { display: !!spec.yTitle, text: spec.yTitle } }
          }, spec.y1 ? {
            y1: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false },
                  title: { display: !!spec.y1Title, text: spec.y1Title } }
          } : {})
        }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (window.Chart) {
      window.Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    }
    sizeBars(document);
    drawCharts(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    sizeBars(document);
    drawCharts(event.target);
  });
})();
