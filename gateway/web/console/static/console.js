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

// Urgent alerts: every console page polls /console/alerts.json; a new duty alert or urgent
// report shows the banner, changes the page title, beeps, and raises a browser notification
// once the operator has allowed them.
(function () {
  const banner = document.getElementById("alert-banner");
  if (!banner) return;
  const ask = document.getElementById("enable-notifications");
  const baseTitle = document.title;
  const seen = new Set(JSON.parse(sessionStorage.getItem("pahtSeenAlerts") || "[]"));
  let first = true;
  if (ask && "Notification" in window && Notification.permission === "default") {
    ask.hidden = false;
    ask.addEventListener("click", function () {
      Notification.requestPermission().then(function () { ask.hidden = true; });
    });
  }
  function beep() {
    try {
      const ctx = new (window.AudioContext || window.webkitAudioContext)();
      const osc = ctx.createOscillator();
      osc.frequency.value = 880;
      osc.connect(ctx.destination);
      osc.start();
      osc.stop(ctx.currentTime + 0.4);
    } catch (e) { /* no audio device */ }
    window.pahtBeeps = (window.pahtBeeps || 0) + 1;
  }
  function item(text, href, ackId) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    li.appendChild(a);
    if (ackId) {
      const form = document.createElement("form");
      form.method = "post";
      form.action = "/console/alerts/" + ackId + "/ack";
      form.className = "inline";
      const csrf = document.querySelector("input[name=csrf]");
      if (csrf) {
        const hidden = document.createElement("input");
        hidden.type = "hidden"; hidden.name = "csrf"; hidden.value = csrf.value;
        form.appendChild(hidden);
      }
      const button = document.createElement("button");
      button.type = "submit"; button.className = "ack"; button.textContent = "Đã nhận";
      form.appendChild(button);
      li.appendChild(form);
    }
    return li;
  }
  async function poll() {
    try {
      const resp = await fetch(banner.dataset.src, { credentials: "same-origin" });
      if (!resp.ok || resp.redirected) return;
      const data = await resp.json();
      const list = document.createElement("ul");
      const fresh = [];
      for (const a of data.alerts) {
        list.appendChild(item("KHẨN · " + a.hazard + " · " + (a.code || "") + " · " + a.at,
                              "/console/reports/" + a.report_id, a.id));
        if (!seen.has("a" + a.id)) fresh.push({ key: "a" + a.id, text: a.hazard + " · " + (a.code || "") });
      }
      for (const r of data.urgent) {
        list.appendChild(item("Tin khẩn chờ xác nhận · " + (r.code || "") + " · " + r.text,
                              "/console/reports/" + r.id, null));
        if (!seen.has("u" + r.id)) fresh.push({ key: "u" + r.id, text: (r.code || "") + " · " + r.text });
      }
      const count = data.alerts.length + data.urgent.length;
      banner.replaceChildren(list);
      banner.hidden = count === 0;
      document.title = count ? "(" + count + ") KHẨN · " + baseTitle : baseTitle;
      if (fresh.length && !(first && sessionStorage.getItem("pahtSeenAlerts"))) {
        beep();
        if ("Notification" in window && Notification.permission === "granted") {
          for (const f of fresh) new Notification("Tin khẩn", { body: f.text, tag: f.key });
        }
      }
      for (const f of fresh) seen.add(f.key);
      sessionStorage.setItem("pahtSeenAlerts", JSON.stringify([...seen]));
      first = false;
    } catch (e) { /* offline for a moment */ }
  }
  poll();
  setInterval(poll, 5000);
  window.pahtPollAlerts = poll;
})();

// Report page: the thread refreshes itself; a canned reply fills the text box; the map.
(function () {
  const thread = document.getElementById("thread");
  if (thread) {
    async function refresh() {
      if (document.hidden) return;
      try {
        const resp = await fetch(thread.dataset.src, { credentials: "same-origin" });
        if (!resp.ok || resp.redirected) return;
        const mark = resp.headers.get("X-Thread-Mark");
        if (mark && mark !== thread.dataset.mark) {
          thread.innerHTML = await resp.text();
          thread.dataset.mark = mark;
        }
      } catch (e) { /* try again */ }
    }
    setInterval(refresh, 5000);
    window.pahtRefreshThread = refresh;
  }
  const canned = document.getElementById("canned");
  const box = document.getElementById("reply-text");
  if (canned && box) {
    canned.addEventListener("change", function () {
      const opt = canned.selectedOptions[0];
      if (opt && opt.dataset.text) box.value = opt.dataset.text;
    });
  }
  // leaflet.js is deferred after this file: draw the map once every deferred script ran.
  document.addEventListener("DOMContentLoaded", function () {
    const map = document.getElementById("map");
    if (!map || !window.L) return;
    const point = [parseFloat(map.dataset.lat), parseFloat(map.dataset.lon)];
    const m = L.map(map).setView(point, parseInt(map.dataset.zoom, 10) || 17);
    L.tileLayer(map.dataset.tiles, { attribution: map.dataset.attribution, maxZoom: 19 }).addTo(m);
    L.Icon.Default.imagePath = "/console/static/leaflet/images/";
    L.marker(point, { title: map.dataset.label }).addTo(m);
  });
})();
