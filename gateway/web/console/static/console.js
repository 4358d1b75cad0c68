// PAHT console: small progressive enhancements; every page works without this file.
"use strict";

// Queue: refresh the table body every 20 s with the same filters, keeping the scroll position.
(function () {
  const body = document.getElementById("queue-body");
  if (!body) return;
  const total = document.getElementById("queue-total");
  async function refresh() {
    if (document.hidden) return;
    try {
      const resp = await fetch(body.dataset.src + window.location.search,
                               { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (!resp.ok || resp.redirected) return;
      const html = await resp.text();
      const y = window.scrollY;
      body.innerHTML = html;
      window.scrollTo(0, y);
      if (total && resp.headers.get("X-Queue-Total")) total.textContent = resp.headers.get("X-Queue-Total");
      tick();
    } catch (e) { /* offline for a moment: try again next time */ }
  }
  setInterval(refresh, 20000);
  window.pahtRefreshQueue = refresh;  // also callable (tests, a future "refresh" button)
})();

// SLA countdowns: update "còn N phút" / "quá hạn N phút" between refreshes.
function tick() {
  const now = Date.now();
  for (const cell of document.querySelectorAll("[data-deadline]")) {
    const left = Math.round((Date.parse(cell.dataset.deadline) - now) / 60000);
    const abs = Math.abs(left);
    const text = abs >= 60 ? Math.floor(abs / 60) + " giờ " + (abs % 60) + " phút" : abs + " phút";
    cell.textContent = left >= 0 ? "còn " + text : "quá hạn " + text;
    const row = cell.closest("tr");
    if (row) row.classList.toggle("overdue", left < 0);
    else cell.classList.toggle("late", left < 0);
  }
}
tick();
setInterval(tick, 30000);

// Ask before irreversible actions (reject, merge).
document.addEventListener("submit", function (event) {
  const form = event.target;
  if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});
