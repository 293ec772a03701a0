// lookalike review page. Inlined into the page; allowed by its sha256 in the CSP.
//
// Safety: report data (file names, paths, messages) only ever reaches the DOM through
// textContent, setAttribute or img.src; never innerHTML. No inline handlers: addEventListener.
// Scale: groups are rendered BATCH at a time as the user scrolls near the end of the list
// (IntersectionObserver on a sentinel), so 10,000 groups open as fast as 40 do.
(function () {
  "use strict";

  const BATCH = 40;
  const MAX_ERROR_ROWS = 5000;
  const data = JSON.parse(document.getElementById("lookalike-data").textContent);
  const groups = data.groups;
  const threshold = data.threshold;
  // state[g][i]: true = keep member i of group g. Prefilled from the report's keep policy.
  const initial = () => groups.map((g) => g.m.map((m) => m.k));
  let state = initial();
  let visible = groups.map((_, i) => i); // indices of groups that match the filter
  let rendered = 0;
  const shown = new Map(); // group index -> its rendered <article>

  const $ = (id) => document.getElementById(id);
  const list = $("groups");
  const sentinel = $("sentinel");
  const timing = (window.lookalikeTiming = { groups: groups.length });

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function humanBytes(n) {
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    n = Number(n) || 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return i === 0 ? n + " B" : n.toFixed(1) + " " + units[i];
  }

  function pad(n) { return String(n).padStart(2, "0"); }

  function formatTime(ms) {
    if (ms === null || ms === undefined) return "";
    const d = new Date(ms);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  function splitPath(p) {
    const cut = Math.max(p.lastIndexOf("/"), p.lastIndexOf("\\"));
    return [p.slice(0, cut + 1), p.slice(cut + 1)];
  }

  function placeholder(text) {
    return el("div", "placeholder", text);
  }

  function renderMember(gi, mi) {
    const g = groups[gi];
    const m = g.m[mi];
    const card = el("div", "member");
    card.dataset.member = String(mi);
    if (m.k) card.classList.add("suggested");

    const box = el("div", "thumb-box");
    const [dir, name] = splitPath(m.p);
    if (m.u) {
      const img = document.createElement("img");
      img.className = "thumb";
      img.alt = name;
      img.loading = "lazy";
      img.decoding = "async";
      img.addEventListener("error", () => {
        box.replaceChildren(placeholder("preview unavailable"));
      });
      img.src = m.u;
      box.appendChild(img);
    } else {
      box.appendChild(placeholder(m.s === "missing" ? "file is gone" : "no preview"));
    }
    card.appendChild(box);

    const toggle = el("button", "toggle");
    toggle.type = "button";
    toggle.dataset.group = String(gi);
    toggle.dataset.member = String(mi);
    card.appendChild(toggle);

    const facts = el("div", "facts-list");
    const line1 = el("div");
    line1.appendChild(el("span", "dims", (m.w || "?") + "\u00d7" + (m.h || "?")));
    line1.appendChild(document.createTextNode(
      " \u00b7 " + (m.f || "?") + " \u00b7 " + humanBytes(m.b)));
    facts.appendChild(line1);
    facts.appendChild(el("div", null, formatTime(m.t)));
    if (mi === g.rep) {
      facts.appendChild(el("div", "dist ref", "reference for distances"));
    } else {
      const far = threshold !== null && m.d > threshold;
      facts.appendChild(el("div", "dist", "distance " + m.d + " bit" + (m.d === 1 ? "" : "s") +
        (far ? " (chained)" : "")));
    }
    if (m.s) facts.appendChild(el("div", "state",
      m.s === "missing" ? "file is gone since the scan" : "file changed since the scan"));
    card.appendChild(facts);

    const path = el("div", "path");
    path.title = m.p;
    const dirNode = el("span", "dir");
    for (const part of dir.split(/(?<=[/\\])/)) { // let long paths wrap after a separator
      dirNode.appendChild(document.createTextNode(part));
      dirNode.appendChild(document.createElement("wbr"));
    }
    path.appendChild(dirNode);
    path.appendChild(el("span", "name", name));
    card.appendChild(path);
    for (const alias of m.a || []) { // hard links and other paths of this one file
      const same = el("div", "path alias", "same file: " + alias);
      same.title = "another name of this file (a hard link, or a path through a link); " +
        "it is not a duplicate and is kept or removed with it";
      card.appendChild(same);
    }
    return card;
  }

  function renderGroup(gi) {
    const g = groups[gi];
    const art = el("article", "group card");
    art.dataset.group = String(gi);
    art.dataset.id = String(g.id);
    const head = el("header", "group-head");
    head.appendChild(el("h2", null, "Group " + g.id));
    head.appendChild(el("span", "kind " + (g.kind === "exact" ? "exact" : "near"), g.kind));
    head.appendChild(el("span", "facts"));
    head.appendChild(el("span", "warn"));
    art.appendChild(head);
    const members = el("div", "members");
    for (let mi = 0; mi < g.m.length; mi += 1) members.appendChild(renderMember(gi, mi));
    art.appendChild(members);
    applyGroupState(gi, art);
    return art;
  }

  // Reflect state[gi] in a rendered group: member classes, toggle labels, the group's facts.
  function applyGroupState(gi, art) {
    const g = groups[gi];
    const keeps = state[gi];
    let freed = 0;
    let kept = 0;
    const cards = art.querySelectorAll(".member");
    cards.forEach((card, mi) => {
      const keep = keeps[mi];
      card.classList.toggle("keep", keep);
      card.classList.toggle("remove", !keep);
      const t = card.querySelector(".toggle");
      t.setAttribute("aria-pressed", keep ? "true" : "false");
      t.textContent = keep ? "\u2713 keep" : "\u2715 remove";
      t.title = keep ? "click to mark for removal" : "click to keep";
      if (keep) kept += 1; else freed += Number(g.m[mi].b) || 0;
    });
    art.querySelector(".facts").textContent = g.m.length + " images \u00b7 " +
      (g.m.length - kept) + " to remove \u00b7 " + humanBytes(freed) + " freed";
    art.querySelector(".warn").textContent = kept === 0 ? "nothing kept in this group!" : "";
    art.classList.toggle("nokeep", kept === 0);
  }

  function renderMore() {
    const end = Math.min(rendered + BATCH, visible.length);
    if (end <= rendered) return false;
    const frag = document.createDocumentFragment();
    for (let i = rendered; i < end; i += 1) {
      const gi = visible[i];
      const art = renderGroup(gi);
      shown.set(gi, art);
      frag.appendChild(art);
    }
    list.appendChild(frag);
    if (rendered === 0 && timing.firstGroupMs === undefined) {
      timing.firstGroupMs = performance.now();
    }
    rendered = end;
    return true;
  }

  // Keep rendering while the sentinel is within ~2 screens of the viewport.
  function fill() {
    const margin = 2 * window.innerHeight;
    if (sentinel.getBoundingClientRect().top < window.innerHeight + margin && renderMore()) {
      requestAnimationFrame(fill);
    }
  }

  function rerender() {
    list.replaceChildren();
    shown.clear();
    rendered = 0;
    renderMore();
    $("empty").hidden = visible.length > 0;
    updateStatus();
    requestAnimationFrame(fill);
  }

  function updateStatus() {
    let files = 0;
    let bytes = 0;
    let nokeep = 0;
    for (const gi of visible) {
      const keeps = state[gi];
      let kept = 0;
      for (let mi = 0; mi < keeps.length; mi += 1) {
        if (keeps[mi]) kept += 1;
        else { files += 1; bytes += Number(groups[gi].m[mi].b) || 0; }
      }
      if (kept === 0) nokeep += 1;
    }
    const status = $("status");
    status.replaceChildren();
    status.appendChild(el("b", null, visible.length.toLocaleString()));
    status.appendChild(document.createTextNode(
      " of " + groups.length.toLocaleString() + " groups \u00b7 removing "));
    status.appendChild(el("b", null, files.toLocaleString()));
    status.appendChild(document.createTextNode(" files (" + humanBytes(bytes) + ")"));
    if (nokeep) {
      status.appendChild(document.createTextNode(" \u00b7 "));
      status.appendChild(el("span", "warn", nokeep + " group" + (nokeep === 1 ? "" : "s") +
        " keep nothing"));
    }
  }

  function applyFilter() {
    const q = $("filter").value.trim().toLowerCase();
    const kind = $("kind").value;
    visible = [];
    for (let gi = 0; gi < groups.length; gi += 1) {
      const g = groups[gi];
      if (kind && g.kind !== kind) continue;
      if (q && !g.m.some((m) => m.p.toLowerCase().includes(q))) continue;
      visible.push(gi);
    }
    rerender();
  }

  function decisions() {
    return {
      kind: data.kind,
      schema_version: data.schema_version,
      report_path: data.report_path,
      report_created: data.report_created,
      // Every group that matches the filter, rendered yet or not.
      groups: visible.map((gi) => {
        const g = groups[gi];
        const keep = [];
        const remove = [];
        g.m.forEach((m, mi) => (state[gi][mi] ? keep : remove).push(m.p));
        return { id: g.id, keep: keep, remove: remove };
      }),
    };
  }

  function exportDecisions() {
    const text = JSON.stringify(decisions(), null, 1) + "\n";
    const blob = new Blob([text], { type: "application/json" });
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    const base = splitPath(data.report_path || "report.json")[1].replace(/\.json$/i, "");
    a.href = url;
    a.download = base + ".decisions.json";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  list.addEventListener("click", (ev) => {
    const t = ev.target.closest("button.toggle");
    if (!t) return;
    const gi = Number(t.dataset.group);
    const mi = Number(t.dataset.member);
    state[gi][mi] = !state[gi][mi];
    applyGroupState(gi, shown.get(gi));
    updateStatus();
  });

  let filterTimer = 0;
  $("filter").addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(applyFilter, 150);
  });
  $("kind").addEventListener("change", applyFilter);
  $("reset").addEventListener("click", () => {
    state = initial();
    shown.forEach((art, gi) => applyGroupState(gi, art));
    updateStatus();
  });
  $("export").addEventListener("click", exportDecisions);

  const errorsBox = $("errors");
  if (!data.errors.length) errorsBox.hidden = true;
  errorsBox.addEventListener("toggle", () => {
    const body = $("error-rows");
    if (!errorsBox.open || body.childElementCount) return;
    const frag = document.createDocumentFragment();
    for (const e of data.errors.slice(0, MAX_ERROR_ROWS)) {
      const tr = el("tr");
      for (const v of [e.path, e.stage, e.error, e.message]) tr.appendChild(el("td", null, v));
      frag.appendChild(tr);
    }
    if (data.errors.length > MAX_ERROR_ROWS) {
      const tr = el("tr");
      const td = el("td", "muted", (data.errors.length - MAX_ERROR_ROWS).toLocaleString() +
        " more in the JSON report");
      td.colSpan = 4;
      tr.appendChild(td);
      frag.appendChild(tr);
    }
    body.appendChild(frag);
  });

  if ("IntersectionObserver" in window) {
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) fill();
    }, { rootMargin: "0px 0px 1500px 0px" }).observe(sentinel);
  } else {
    window.addEventListener("scroll", fill, { passive: true });
  }
  rerender();
  timing.readyMs = performance.now();
})();
