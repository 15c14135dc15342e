// The operations page's charts: the last 48 hours from the JSON data block #hourly-series, drawn with Chart.js.
"use strict";

(function () {
  const source = document.getElementById("hourly-series");
  if (!source || typeof Chart === "undefined") {
    return;
  }
  const series = JSON.parse(source.textContent);
  const labels = series.hours.map((hour) => hour.slice(5, 13).replace("T", " ") + "h");
  const colors = ["#1565c0", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f"];

  function draw(id, type, datasets) {
    const canvas = document.getElementById(id);
    if (!canvas) {
      return;
    }
    const chart = new Chart(canvas, {
      type: type,
      data: { labels: labels, datasets: datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: { x: { stacked: type === "bar", ticks: { maxTicksLimit: 12 } }, y: { beginAtZero: true, stacked: type === "bar" } },
      },
    });
    canvas.dataset.rendered = String(datasets.reduce((sum, set) => sum + set.data.reduce((a, b) => a + b, 0), 0));
    return chart;
  }

  function byCurrency(values) {
    return Object.keys(values).sort().map((currency, n) => ({
      label: currency,
      data: values[currency],
      borderColor: colors[n % colors.length],
      backgroundColor: colors[n % colors.length],
      tension: 0.2,
    }));
  }

  draw("chart-ballots", "bar", [
    { label: "accepted", data: series.ballots_accepted, backgroundColor: colors[0] },
    { label: "refused", data: series.ballots_refused, backgroundColor: colors[1] },
  ]);
  draw("chart-fraud", "bar", [{ label: "fraud rejections", data: series.fraud_rejections, backgroundColor: colors[3] }]);
  draw("chart-revenue", "line", byCurrency(series.staked_revenue));
  draw("chart-payouts", "line", byCurrency(series.payouts));
})();
