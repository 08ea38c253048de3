/* Baosong admin: CSRF header for HTMX requests, charts from embedded JSON. No external resources. */
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
    drawCharts(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) { drawCharts(event.target); });
})();
