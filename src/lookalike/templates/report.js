// lookalike review page. Inlined into the page; allowed by its sha256 in the CSP.
//
// Safety: report data (file names, paths, messages) only ever reaches the DOM through
// textContent, setAttribute or img.src; never innerHTML. No inline handlers: addEventListener.
// Scale: groups are rendered BATCH at a time as the user scrolls near the end of the list
// (IntersectionObserver on a sentinel), so 10,000 groups open as fast as 40 do.
// Decisions: a member is kept or removed by, in order of precedence, the reviewer's own
// choice, a folder rule, the report's keep policy; they are marked by borders and badges,
// never by changing how the picture looks.
(function () {
  "use strict";

  const BATCH = 40;
  const MAX_ERROR_ROWS = 5000;
  const data = JSON.parse(document.getElementById("lookalike-data").textContent);
  const groups = data.groups;
  const threshold = data.threshold;
  const folders = data.folders || [];
  // state[g][i]: true = keep member i of group g, from manual, then rules, then m.k.
  const noChoices = () => groups.map((g) => g.m.map(() => null));
  let manual = noChoices(); // the reviewer's own choices: null, true (keep) or false
  const rules = new Map(); // folder index -> "keep" | "remove", in the order they were made
  const state = groups.map((g) => g.m.map((m) => m.k));
  // Why the keep policy suggests a member (the reason of its own decision, made again when
  // the page was written, as apply makes it), else null. A member
  // embeddings joined is kept for the reviewer to choose: no signal says which is the original.
  // Another shot (a burst's frame) the policy keeps besides its keeper says so.
  // Joined by embeddings (not by hashes, nor by the verified band's "aligned" hashes).
  const byEmbedding = (m) => m.mk === "embedding" || m.mk === "verified";
  const suggestedWhy = (g, m, mi) => (!m.k || !g.kr ? null : byEmbedding(m) ?
    "kept: joined by its embedding (a crop, frame or turn of the others, or their original)" :
    m.sh && mi !== g.kf ? "kept: another shot (its EXIF names another capture moment), " +
    "not a copy" : "suggested keeper: " + g.kr);
  // A protected member (a leakage scan's reference set, --protect): apply never removes it.
  const protectedWhy = data.lk ? "protected: in the reference set (apply never removes it)" :
    "protected: in a protected folder (apply never removes it)";
  const why = groups.map((g) => g.m.map((m, mi) => (m.pr ? protectedWhy :
    suggestedWhy(g, m, mi))));
  let visible = groups.map((_, i) => i); // indices of groups that match the filter
  let rendered = 0;
  const shown = new Map(); // group index -> its rendered <article>

  const $ = (id) => document.getElementById(id);
  const list = $("groups");
  const sentinel = $("sentinel");
  const timing = (window.lookalikeTiming = { groups: groups.length });

  // Control and format characters of a name, escaped as the text report escapes them
  // (lookalike.paths.shown): a right-to-left override made "evil\u202egnp.exe.jpg" read
  // "evilgpj.exe.png", a zero-width space hid between two names that look alike.
  const INVISIBLE = /[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Zl}\p{Zp}]/gu;
  function escaped(text) {
    return String(text).replace(INVISIBLE, (ch) => {
      const named = { "\n": "\\n", "\r": "\\r", "\t": "\\t" }[ch];
      if (named) return named;
      const code = ch.codePointAt(0);
      const hex = code.toString(16).padStart(code < 0x100 ? 2 : code < 0x10000 ? 4 : 8, "0");
      return (code < 0x100 ? "\\x" : code < 0x10000 ? "\\u" : "\\U") + hex;
    });
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = escaped(text);
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
    // A backslash separates folders only in Windows paths (C:\...); on POSIX it is a
    // character that a file name may hold.
    const windows = /^[A-Za-z]:\\|^\\\\/.test(p);
    const cut = windows ? Math.max(p.lastIndexOf("/"), p.lastIndexOf("\\")) : p.lastIndexOf("/");
    return [p.slice(0, cut + 1), p.slice(cut + 1)];
  }

  function placeholder(text) {
    return el("div", "placeholder", text);
  }

  // How a member matched: by hash, or (scan --embed) by embedding similarity alone.
  // "distance 0 bits": a mirrored, turned or padded copy said nothing of being one.
  function distanceText(m) {
    const bits = (n) => n + " bit" + (n === 1 ? "" : "s");
    return bits(m.d) + (m.dt === undefined || m.dt === null ? "" :
      " flipped, turned or trimmed (" + bits(m.dt) + " as it is)");
  }

  function matchText(m) {
    const sim = m.sim !== undefined && m.sim !== null ? "similarity " + m.sim.toFixed(2) : "";
    if (!m.mk) return sim;
    if (m.mk === "aligned") return "beyond the threshold, verified by aligning the pictures";
    return (m.mk === "verified" ? "embedding match, verified" : "embedding match only") +
      (sim ? ", " + sim : "");
  }

  function renderMember(gi, mi) {
    const g = groups[gi];
    const m = g.m[mi];
    const card = el("div", "member");
    card.dataset.member = String(mi);
    if (m.k) card.classList.add("suggested");

    const box = el("div", "thumb-box");
    box.tabIndex = 0;
    box.setAttribute("role", "button");
    box.title = "compare large";
    box.dataset.group = String(gi);
    box.dataset.member = String(mi);
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
    box.appendChild(el("span", "badge"));
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
      const far = threshold !== null && m.d > threshold && !m.mk;
      facts.appendChild(el("div", "dist", "distance " + distanceText(m) +
        (far ? " (chained)" : "")));
    }
    if (m.mk || m.sim !== undefined) facts.appendChild(el("div", "dist", matchText(m)));
    if (m.s) facts.appendChild(el("div", "state",
      m.s === "missing" ? "file is gone since the scan" : "file changed since the scan"));
    facts.appendChild(el("div", "why"));
    card.appendChild(facts);

    const path = el("div", "path");
    path.title = escaped(m.p);
    const dirNode = el("span", "dir");
    for (const part of dir.split(/(?<=[/\\])/)) { // let long paths wrap after a separator
      dirNode.appendChild(document.createTextNode(escaped(part)));
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
    const open = el("button", "ghost compare-btn", "Compare");
    open.type = "button";
    open.dataset.group = String(gi);
    head.appendChild(open);
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
      if (keep) kept += 1; else freed += Number(g.m[mi].b) || 0;
      // Only cards whose choice or reason changed are written: rewriting all of a
      // 2,500-member group took ~100 ms a click (review), one card ~4 ms.
      const reason = why[gi][mi] || "";
      const shown = (keep ? "k:" : "r:") + reason;
      if (card.dataset.shown === shown) return;
      card.dataset.shown = shown;
      card.classList.toggle("keep", keep);
      card.classList.toggle("remove", !keep);
      const t = card.querySelector(".toggle");
      t.setAttribute("aria-pressed", keep ? "true" : "false");
      t.textContent = keep ? "\u2713 keep" : "\u2715 remove";
      t.disabled = Boolean(g.m[mi].pr);
      t.title = g.m[mi].pr ? protectedWhy : keep ? "click to mark for removal" : "click to keep";
      const badge = card.querySelector(".badge");
      badge.className = "badge " + (keep ? "keep" : "remove");
      badge.textContent = keep ? "KEEP" : "REMOVE";
      card.querySelector(".why").textContent = reason;
    });
    const skip = skipped(gi);
    art.querySelector(".facts").textContent = g.m.length + " images \u00b7 " +
      (skip ? "nothing to remove" : (g.m.length - kept) + " to remove \u00b7 " +
        humanBytes(freed) + " freed");
    // A report keep list the policy no longer keeps (g.kw) is said too: apply on the report
    // skips such a group; the page pre-filled the policy's choice.
    art.querySelector(".warn").textContent = [skip, g.kw].filter(Boolean).join(" \u00b7 ");
    art.classList.toggle("nokeep", kept === 0);
  }

  // Why `apply` would leave group gi untouched as now decided, or null: it keeps nothing
  // (apply refuses that unless told to remove every copy), or a file of it is gone or
  // changed since the scan (apply re-checks every file and skips such a group).
  function skipped(gi) {
    if (!state[gi].some(Boolean)) {
      return "nothing kept in this group: apply skips it (unless run with --keep none)";
    }
    if (groups[gi].m.some((m) => m.s)) {
      return "a file of this group is gone or changed since the scan: apply skips it " +
        "(scan again)";
    }
    return null;
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
    $("empty").textContent = groups.length ? "No groups match the filter." :
      "No duplicates: this report has no groups.";
    updateStatus();
    requestAnimationFrame(fill);
  }

  function updateStatus() {
    let files = 0;
    let bytes = 0;
    let skips = 0;
    for (const gi of visible) {
      if (skipped(gi)) { skips += 1; continue; } // apply leaves it alone: not counted
      const keeps = state[gi];
      for (let mi = 0; mi < keeps.length; mi += 1) {
        if (!keeps[mi]) { files += 1; bytes += Number(groups[gi].m[mi].b) || 0; }
      }
    }
    const status = $("status");
    status.replaceChildren();
    status.appendChild(el("b", null, visible.length.toLocaleString()));
    status.appendChild(document.createTextNode(
      " of " + groups.length.toLocaleString() + " groups \u00b7 removing "));
    status.appendChild(el("b", null, files.toLocaleString()));
    status.appendChild(document.createTextNode(" files (" + humanBytes(bytes) + ")"));
    if (skips) {
      status.appendChild(document.createTextNode(" \u00b7 "));
      status.appendChild(el("span", "warn", skips + " group" + (skips === 1 ? "" : "s") +
        " apply will skip (see each)"));
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
    // Only the groups the filter shows are exported: the button says so while it hides some.
    const button = $("export");
    button.textContent = visible.length < groups.length
      ? "Export decisions (" + visible.length.toLocaleString() + " of " +
        groups.length.toLocaleString() + " groups: the filter's)"
      : "Export decisions";
    rerender();
  }

  function decisions() {
    return {
      kind: data.kind,
      schema_version: data.schema_version,
      report_path: data.report_path,
      report_created: data.report_created,
      // What the groups' lists below were made with; apply acts on the lists.
      folder_rules: [...rules].map(([f, rule]) => ({ folder: folders[f].p, rule: rule })),
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
    if (filterTimer) {  // typed just now: export what the box says, not the last filter
      clearTimeout(filterTimer);
      filterTimer = 0;
      applyFilter();
    }
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
    const open = ev.target.closest("button.compare-btn, .thumb-box");
    if (open) {
      openCompare(Number(open.dataset.group),
        open.dataset.member === undefined ? null : Number(open.dataset.member));
      return;
    }
    const t = ev.target.closest("button.toggle");
    if (!t) return;
    const gi = Number(t.dataset.group);
    const mi = Number(t.dataset.member);
    choose(gi, mi, !state[gi][mi]);
  });
  list.addEventListener("keydown", (ev) => {
    const box = ev.target.closest(".thumb-box");
    if (box && (ev.key === "Enter" || ev.key === " ")) {
      ev.preventDefault();
      openCompare(Number(box.dataset.group), Number(box.dataset.member));
    }
  });

  // ------------------------------------------------------------------ decisions and rules

  // The folder rule that applies to a member: its deepest ruled folder, or null.
  // The rule deciding a file with several names (hard links), as apply decides it: a keep
  // rule on any name keeps it; it is removed only if every name lies under a remove rule.
  function ruleOfNames(m) {
    const found = [m.fd, ...(m.afd || [])].map(ruleFor);
    const keeps = found.filter((f) => f !== null && rules.get(f) === "keep");
    if (keeps.length) return keeps[0];
    return found.includes(null) ? null : found[0];
  }

  function ruleFor(fd) {
    for (let f = fd; f !== null && f !== undefined; f = folders[f].up) {
      if (rules.has(f)) return f;
    }
    return null;
  }

  // Recompute state[gi] and why[gi] from the keep policy, the folder rules and manual choices.
  function decide(gi) {
    const g = groups[gi];
    const ruled = g.m.map((m) => (rules.size ? ruleOfNames(m) : null));
    // As in `apply --remove-in`: with a remove rule, only the copies it covers go.
    const removing = [...rules.values()].includes("remove");
    // As in `apply --remove-in` too: no rule removes a file of several pictures (its hash
    // sees the first) or a member only unverified embeddings matched.
    // (Not in a leakage check whose reference holds a copy its hashes matched: a leak goes.)
    const purging = data.lk && g.m.some((m) => m.pr && m.mk !== "embedding");
    const spared = (m) => (m.fr && !purging ? "kept: it holds several pictures, and its hash " +
      "sees the first only: no rule removes it" : m.mk === "embedding" ? "kept: matched by " +
      "embeddings only (not verified): no rule removes it" : null);
    const keep = g.m.map((m, mi) => (ruled[mi] === null ? removing || m.k :
      rules.get(ruled[mi]) === "keep" || spared(m) !== null));
    const reason = ruled.map((f, mi) => (f === null ? (removing ? "kept: no remove rule covers it" :
      suggestedWhy(g, g.m[mi], mi)) : rules.get(f) === "keep" ? "kept by rule: everything under " +
      folders[f].p : spared(g.m[mi]) || "removed by rule: duplicates under " + folders[f].p));
    // As apply: each capture moment of a burst keeps a member, the rules' own if they keep
    // one, else the one the keep policy kept, else (a report whose keep list predates the
    // rule) its first (not when the policy purges leaks).
    if (!purging) {
      const held = new Set(g.m.filter((m, mi) => keep[mi] && m.mo !== undefined)
        .map((m) => m.mo));
      const pick = new Map(); // moment -> the member that keeps it
      g.m.forEach((m, mi) => {
        if (m.mo === undefined || keep[mi] || held.has(m.mo)) return;
        const cur = pick.get(m.mo);
        if (cur === undefined || (m.sh && !g.m[cur].sh)) pick.set(m.mo, mi);
      });
      pick.forEach((mi) => {
        keep[mi] = true;
        reason[mi] = "kept: another shot (its EXIF says it was taken at another moment), " +
          "not a copy: no rule removes it";
      });
    }
    // No rule removes a group's last copy, as apply judges it: a member its hashes matched
    // (or a protected one they did not only look alike to) must stay; members embeddings
    // joined do not count. Then the policy's keeper of the hash-matched stays.
    const counts = (m) => !byEmbedding(m) || (m.pr && m.mk !== "embedding");
    if (rules.size && !keep.some((k, mi) => k && counts(g.m[mi]))) {
      let pick = g.m.findIndex((m) => m.k && !byEmbedding(m));
      if (pick < 0) pick = g.rep;
      keep[pick] = true;
      reason[pick] = "kept: no rule removes a group's last copy (members embeddings joined " +
        "do not count)";
    }
    g.m.forEach((m, mi) => {
      const own = manual[gi][mi];
      state[gi][mi] = m.pr ? true : own === null ? keep[mi] : own;
      why[gi][mi] = m.pr ? protectedWhy : own === null ? reason[mi] : "your choice";
    });
  }

  function refreshGroup(gi) {
    if (shown.has(gi)) applyGroupState(gi, shown.get(gi));
    if (cmp.open && cmp.gi === gi) showDecisions();
  }

  function decideAll() {
    for (let gi = 0; gi < groups.length; gi += 1) decide(gi);
    shown.forEach((art, gi) => applyGroupState(gi, art));
    if (cmp.open) showDecisions();
    updateStatus();
  }

  // The reviewer keeps (true) or removes (false) member mi of group gi (a protected one stays).
  function choose(gi, mi, keep) {
    if (groups[gi].m[mi].pr) return;
    manual[gi][mi] = keep;
    decide(gi);
    refreshGroup(gi);
    updateStatus();
  }

  function keepOnly(gi, mi) {
    groups[gi].m.forEach((_, i) => { manual[gi][i] = i === mi; });
    decide(gi);
    refreshGroup(gi);
    updateStatus();
  }

  const rulesBox = $("rules");
  const folderSelect = $("rule-folder");
  rulesBox.addEventListener("toggle", () => {
    if (!rulesBox.open || folderSelect.options.length) return; // built once, when first opened
    const frag = document.createDocumentFragment();
    folders.forEach((f, i) => {
      const o = el("option", null, f.p + "  (" + f.n.toLocaleString() + " file" +
        (f.n === 1 ? "" : "s") + ")");
      o.value = String(i);
      frag.appendChild(o);
    });
    folderSelect.appendChild(frag);
  });
  if (!folders.length) rulesBox.hidden = true;

  function renderRules() {
    const ul = $("rule-list");
    ul.replaceChildren();
    let kept = 0;
    for (const [f, rule] of rules) {
      if (rule === "keep") kept += 1;
      const li = el("li");
      li.dataset.rule = rule;
      li.appendChild(el("span", "pill " + rule, rule === "keep" ? "keep" : "remove"));
      li.appendChild(el("span", null, rule === "keep" ? "everything under" : "duplicates under"));
      li.appendChild(el("span", "mono", folders[f].p));
      const drop = el("button", "ghost", "\u00d7");
      drop.type = "button";
      drop.title = "remove this rule";
      drop.addEventListener("click", () => setRule(f, null));
      li.appendChild(drop);
      ul.appendChild(li);
    }
    $("rules-summary").textContent = rules.size ? "(" + rules.size + ": keep " + kept +
      ", remove " + (rules.size - kept) + ")" : "(none)";
  }

  function setRule(f, rule) {
    rules.delete(f);
    if (rule) rules.set(f, rule);
    renderRules();
    decideAll();
  }

  for (const rule of ["keep", "remove"]) {
    $("rule-" + rule).addEventListener("click", () => {
      if (folderSelect.value !== "") setRule(Number(folderSelect.value), rule);
    });
  }

  // ------------------------------------------------------------------ the compare view

  const box = $("compare");
  const views = $("cmp-views");
  const frames = [...views.querySelectorAll(".frame")];
  const imgs = frames.map((f) => f.querySelector("img"));
  const panels = [...box.querySelectorAll(".cmp-side")];
  const cmp = {
    open: false, pos: 0, gi: 0, sides: [0, 1], active: 0, flicker: false, shownSide: 0,
    timer: 0, z: 1, cx: 0.5, cy: 0.5, back: null,
  };
  window.lookalikeCompareView = () => ({
    open: cmp.open, group: cmp.open ? groups[cmp.gi].id : null, sides: cmp.sides.slice(),
    active: cmp.active, flicker: cmp.flicker, shown: cmp.shownSide, z: cmp.z, cx: cmp.cx,
    cy: cmp.cy,
  });
  const MODES = { "1": "black and white", L: "grayscale", LA: "grayscale with alpha",
    "I;16": "16-bit grayscale", I: "32-bit grayscale", P: "palette", RGB: "colour",
    RGBA: "colour with alpha", CMYK: "CMYK", YCbCr: "YCbCr" };

  function openCompare(gi, mi) {
    const pos = visible.indexOf(gi);
    cmp.pos = pos < 0 ? 0 : pos;
    if (!cmp.open) {
      cmp.back = document.activeElement;
      cmp.open = true;
      box.hidden = false;
      document.body.classList.add("comparing");
    }
    showGroup(visible.length ? visible[cmp.pos] : gi, mi);
    box.focus();
  }

  function closeCompare() {
    if (!cmp.open) return;
    setFlicker(false);
    cmp.open = false;
    box.hidden = true;
    document.body.classList.remove("comparing");
    const gi = cmp.gi;
    while (!shown.has(gi) && visible.includes(gi) && renderMore()) { /* render up to it */ }
    if (shown.has(gi)) shown.get(gi).scrollIntoView({ block: "nearest" });
    if (cmp.back && cmp.back.focus) cmp.back.focus();
  }

  // The pair shown first: the first kept member on the left, the clicked one (or the
  // next member) on the right.
  function showGroup(gi, mi) {
    const g = groups[gi];
    cmp.gi = gi;
    let left = state[gi].indexOf(true);
    if (left < 0) left = g.rep;
    let right = mi !== null && mi !== undefined && mi !== left ? mi : (left + 1) % g.m.length;
    if (g.m.length === 1) right = left;
    cmp.sides = [left, right];
    cmp.z = 1; cmp.cx = 0.5; cmp.cy = 0.5;
    $("cmp-title").textContent = "Group " + g.id + " \u00b7 " + g.kind + " \u00b7 " +
      g.m.length + " images";
    $("cmp-pos").textContent = (cmp.pos + 1).toLocaleString() + " of " +
      visible.length.toLocaleString() + " groups";
    for (const side of [0, 1]) {
      const pick = panels[side].querySelector(".cmp-pick");
      pick.replaceChildren();
      g.m.forEach((m, i) => {
        const o = el("option", null, (i + 1) + ". " + splitPath(m.p)[1] + " (" + (m.w || "?") +
          "\u00d7" + (m.h || "?") + ")");
        o.value = String(i);
        pick.appendChild(o);
      });
      loadSide(side);
    }
    setActive(cmp.active);
    showDecisions();
  }

  function loadSide(side) {
    const m = groups[cmp.gi].m[cmp.sides[side]];
    const img = imgs[side];
    const note = frames[side].querySelector(".cmp-note");
    panels[side].querySelector(".cmp-pick").value = String(cmp.sides[side]);
    // What stands in the frame: the original, else a preview the writer made (formats
    // browsers cannot show), else the thumbnail.
    const shows = m.o ? "original" : m.v ? "preview" : "thumbnail";
    let text = "";
    if (shows === "preview") {
      text = "preview: browsers cannot show this file's format"; // the size is added on load
    } else if (shows === "thumbnail") {
      text = m.u ? "thumbnail only: " + (m.s === "missing" ? "the file is gone" :
        "browsers cannot show this file's format") : "no preview";
    }
    note.textContent = text;
    img.alt = splitPath(m.p)[1];
    img.dataset.shows = shows;
    const src = m.o || m.v || m.u;
    img.hidden = !src;
    if (src) img.src = src; else img.removeAttribute("src");
    showFacts(side);
  }

  imgs.forEach((img, side) => {
    img.addEventListener("load", () => {
      if (img.dataset.shows === "preview") {
        frames[side].querySelector(".cmp-note").textContent = "preview, " +
          Math.max(img.naturalWidth, img.naturalHeight) +
          " px: browsers cannot show this file's format";
      }
      layout();
    });
    img.addEventListener("error", () => {
      const m = groups[cmp.gi].m[cmp.sides[side]];
      if (img.dataset.shows === "original" && m.u) { // the original cannot be read from here
        img.dataset.shows = "thumbnail";
        frames[side].querySelector(".cmp-note").textContent =
          "thumbnail only: the original file cannot be read from this page";
        img.src = m.u;
      } else {
        img.hidden = true;
      }
    });
  });

  function fact(dl, name, value, diff) {
    dl.appendChild(el("dt", null, name));
    dl.appendChild(el("dd", diff ? "diff" : null, value === null || value === undefined ||
      value === "" ? "\u2014" : value));
  }

  function showFacts(side) {
    const g = groups[cmp.gi];
    const m = g.m[cmp.sides[side]];
    const o = g.m[cmp.sides[1 - side]];
    const x = m.x || {};
    const ox = o.x || {};
    const differs = (a, b) => o !== m && String(a) !== String(b);
    const [dir, name] = splitPath(m.p);
    const dl = panels[side].querySelector(".cmp-facts");
    dl.replaceChildren();
    const mp = m.w && m.h ? " (" + (m.w * m.h / 1e6).toFixed(1) + " MP)" : "";
    fact(dl, "file", name);
    fact(dl, "resolution", (m.w || "?") + "\u00d7" + (m.h || "?") + mp,
      differs(m.w + "x" + m.h, o.w + "x" + o.h));
    fact(dl, "file size", humanBytes(m.b) + " (" + Number(m.b).toLocaleString() + " bytes)",
      differs(m.b, o.b));
    fact(dl, "format", (m.f || "?") + (x.cm ? ", " + (MODES[x.cm] || x.cm) : ""),
      differs(m.f + x.cm, o.f + ox.cm));
    fact(dl, "JPEG quality", x.q ? "\u2248 " + x.q + " (estimated from its tables)" : null,
      differs(x.q, ox.q));
    fact(dl, "taken", x.dt || null, differs(x.dt, ox.dt));
    fact(dl, "exposure", x.ex || null, differs(x.ex, ox.ex));
    fact(dl, "modified", formatTime(m.t));
    fact(dl, "camera", x.c || null, differs(x.c, ox.c));
    fact(dl, "distance", cmp.sides[side] === g.rep ? "reference for distances" :
      distanceText(m) + " from the reference");
    if (m.mk || m.sim !== undefined) fact(dl, "match", matchText(m));
    if (m.s) fact(dl, "state", m.s === "missing" ? "gone since the scan" : "changed since the scan", true);
    fact(dl, "folder", dir);
    dl.lastChild.title = escaped(m.p);
  }

  function showDecisions() {
    const gi = cmp.gi;
    for (const side of [0, 1]) {
      const mi = cmp.sides[side];
      const keep = state[gi][mi];
      frames[side].classList.toggle("keep", keep);
      frames[side].classList.toggle("remove", !keep);
      const badge = frames[side].querySelector(".cmp-badge");
      badge.className = "cmp-badge " + (keep ? "keep" : "remove");
      badge.textContent = (side === 0 ? "LEFT" : "RIGHT") + " \u00b7 " +
        (keep ? "KEEP" : "REMOVE") + (groups[gi].m[mi].k ? " \u00b7 \u2605 suggested" : "");
      badge.title = why[gi][mi] || "";
      panels[side].querySelector(".cmp-keep").setAttribute("aria-pressed", String(keep));
      panels[side].querySelector(".cmp-remove").setAttribute("aria-pressed", String(!keep));
    }
  }

  function setActive(side) {
    cmp.active = side;
    frames.forEach((f, i) => f.classList.toggle("active", i === side));
    panels.forEach((p, i) => p.classList.toggle("active", i === side));
  }

  function showSide(side) { // in flicker mode: which of the two is in the frame
    cmp.shownSide = side;
    frames.forEach((f, i) => f.classList.toggle("shown", i === side));
  }

  function setFlicker(on, auto = true) {
    clearInterval(cmp.timer);
    cmp.timer = 0;
    cmp.flicker = on;
    views.classList.toggle("flicker", on);
    $("cmp-flicker").setAttribute("aria-pressed", String(on));
    if (on) {
      showSide(cmp.active);
      if (auto) cmp.timer = setInterval(() => showSide(1 - cmp.shownSide), 600);
    }
    layout();
  }

  // Geometry of one side: the image fitted into its frame, then zoomed by z about the
  // shared centre (cx, cy), given as fractions of the image's width and height.
  function geometry(side) {
    const img = imgs[side];
    const nw = img.naturalWidth;
    const nh = img.naturalHeight;
    const W = frames[side].clientWidth;
    const H = frames[side].clientHeight;
    if (!nw || !nh || !W || !H) return null;
    const s = Math.min(W / nw, H / nh) * cmp.z;
    const m = groups[cmp.gi].m[cmp.sides[side]];
    const real = Math.max(m.w || nw, m.h || nh);
    return { nw, nh, W, H, s, tx: W / 2 - cmp.cx * nw * s, ty: H / 2 - cmp.cy * nh * s,
      pct: 100 * s * Math.max(nw, nh) / real };
  }

  function layout() {
    if (!cmp.open) return;
    const parts = [];
    for (const side of [0, 1]) {
      const geo = geometry(side);
      if (!geo) continue;
      const img = imgs[side];
      img.style.transform = "translate(" + geo.tx + "px, " + geo.ty + "px) scale(" + geo.s + ")";
      img.classList.toggle("pixels", geo.pct >= 200);
      frames[side].dataset.scale = geo.pct.toFixed(1);
      parts.push((side === 0 ? "left " : "right ") + Math.round(geo.pct) + "%" +
        (img.dataset.shows === "original" ? "" : " of the " + img.dataset.shows));
    }
    $("cmp-zoom").textContent = "zoom \u00d7" + cmp.z.toFixed(2) + " (" + parts.join(", ") + ")";
  }

  // Zoom by factor k keeping the scene point under (px, py) of a side's frame in place.
  function zoomAt(k, side, px, py) {
    const geo = geometry(side);
    const z = Math.min(100, Math.max(0.1, cmp.z * k));
    if (geo) {
      const u = cmp.cx + (px - geo.W / 2) / (geo.nw * geo.s);
      const v = cmp.cy + (py - geo.H / 2) / (geo.nh * geo.s);
      const s2 = geo.s * z / cmp.z;
      cmp.cx = u - (px - geo.W / 2) / (geo.nw * s2);
      cmp.cy = v - (py - geo.H / 2) / (geo.nh * s2);
    }
    cmp.z = z;
    clampCentre();
    layout();
  }

  function zoomCentre(k) {
    const f = frames[cmp.active];
    zoomAt(k, cmp.active, f.clientWidth / 2, f.clientHeight / 2);
  }

  function clampCentre() {
    cmp.cx = Math.min(1, Math.max(0, cmp.cx));
    cmp.cy = Math.min(1, Math.max(0, cmp.cy));
  }

  function fit() { cmp.z = 1; cmp.cx = 0.5; cmp.cy = 0.5; layout(); }

  function oneToOne() { // one pixel of the active side's file per screen pixel
    const geo = geometry(cmp.active);
    if (!geo) return;
    cmp.z = Math.min(100, Math.max(0.1, cmp.z * 100 / geo.pct));
    layout();
  }

  function pan(dx, dy) { cmp.cx += dx / cmp.z; cmp.cy += dy / cmp.z; clampCentre(); layout(); }

  function step(delta) {
    if (!visible.length) return;
    cmp.pos = (cmp.pos + delta + visible.length) % visible.length;
    showGroup(visible[cmp.pos], null);
  }

  function cycle(delta) { // another member of the group on the active side
    const n = groups[cmp.gi].m.length;
    if (n < 3) return;
    let mi = cmp.sides[cmp.active];
    do { mi = (mi + delta + n) % n; } while (mi === cmp.sides[1 - cmp.active]);
    cmp.sides[cmp.active] = mi;
    loadSide(cmp.active);
    showFacts(1 - cmp.active);
    showDecisions();
  }

  frames.forEach((frame, side) => {
    frame.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const r = frame.getBoundingClientRect();
      zoomAt(Math.exp(-ev.deltaY * 0.0015), side, ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });
    frame.addEventListener("pointerdown", (ev) => {
      const geo = geometry(side);
      setActive(side);
      if (!geo) return;
      frame.setPointerCapture(ev.pointerId);
      frame.classList.add("dragging");
      const start = { x: ev.clientX, y: ev.clientY, cx: cmp.cx, cy: cmp.cy };
      const move = (e) => {
        cmp.cx = start.cx - (e.clientX - start.x) / (geo.nw * geo.s);
        cmp.cy = start.cy - (e.clientY - start.y) / (geo.nh * geo.s);
        clampCentre();
        layout();
      };
      const up = () => {
        frame.classList.remove("dragging");
        frame.removeEventListener("pointermove", move);
        frame.removeEventListener("pointerup", up);
        frame.removeEventListener("pointercancel", up);
      };
      frame.addEventListener("pointermove", move);
      frame.addEventListener("pointerup", up);
      frame.addEventListener("pointercancel", up);
    });
    frame.addEventListener("dblclick", () => (cmp.z === 1 ? oneToOne() : fit()));
  });
  panels.forEach((panel, side) => {
    panel.querySelector(".cmp-pick").addEventListener("change", (ev) => {
      const mi = Number(ev.target.value);
      if (mi === cmp.sides[1 - side]) cmp.sides[1 - side] = cmp.sides[side]; // swap
      cmp.sides[side] = mi;
      loadSide(0);
      loadSide(1);
      showDecisions();
      ev.target.blur();
      box.focus();
    });
    panel.querySelector(".cmp-keep").addEventListener("click", () =>
      choose(cmp.gi, cmp.sides[side], true));
    panel.querySelector(".cmp-remove").addEventListener("click", () =>
      choose(cmp.gi, cmp.sides[side], false));
    panel.addEventListener("pointerdown", () => setActive(side));
  });
  $("cmp-close").addEventListener("click", closeCompare);
  $("cmp-prev").addEventListener("click", () => step(-1));
  $("cmp-next").addEventListener("click", () => step(1));
  $("cmp-fit").addEventListener("click", fit);
  $("cmp-flicker").addEventListener("click", () => setFlicker(!cmp.flicker));
  $("open-compare").addEventListener("click", () => openFirstOnScreen());
  window.addEventListener("resize", layout);

  function openFirstOnScreen() {
    if (!visible.length) return;
    let gi = visible[0];
    for (const [i, art] of shown) {
      if (art.getBoundingClientRect().bottom > 60) { gi = i; break; }
    }
    openCompare(gi, null);
  }

  const KEYS = {
    Escape: () => closeCompare(),
    n: () => step(1), PageDown: () => step(1), p: () => step(-1), PageUp: () => step(-1),
    ArrowLeft: () => { setActive(0); if (cmp.flicker) setFlicker(true, false); },
    ArrowRight: () => { setActive(1); if (cmp.flicker) setFlicker(true, false); },
    ArrowUp: () => cycle(-1), ArrowDown: () => cycle(1),
    k: () => choose(cmp.gi, cmp.sides[cmp.active], true),
    K: () => keepOnly(cmp.gi, cmp.sides[cmp.active]),
    x: () => choose(cmp.gi, cmp.sides[cmp.active], false),
    Delete: () => choose(cmp.gi, cmp.sides[cmp.active], false),
    f: () => setFlicker(!cmp.flicker),
    // The facts under the pictures take ~300 px of a laptop's screen: I hides them (and
    // the pictures grow), for as long as the page is open.
    i: () => { $("compare").classList.toggle("no-facts"); layout(); },
    " ": () => {
      setActive(1 - cmp.active);
      if (cmp.flicker) setFlicker(true, false);
    },
    "+": () => zoomCentre(1.25), "=": () => zoomCentre(1.25), "-": () => zoomCentre(0.8),
    "0": fit, "1": oneToOne,
  };
  const PANS = { ArrowLeft: [-0.1, 0], ArrowRight: [0.1, 0], ArrowUp: [0, -0.1], ArrowDown: [0, 0.1] };

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return; // the browser's own shortcuts
    if (!cmp.open) {
      // Only where keys type text: after a click on a toggle or a thumbnail, C still opens.
      const typing = ev.target.closest("input, select, textarea, [contenteditable]");
      if (!typing && (ev.key === "c" || ev.key === "C")) openFirstOnScreen();
      return;
    }
    if (ev.target.tagName === "SELECT" && ev.key !== "Escape") return;
    const action = ev.shiftKey && PANS[ev.key] ? () => pan(...PANS[ev.key]) :
      KEYS[ev.key.length === 1 && ev.key !== "K" ? ev.key.toLowerCase() : ev.key];
    if (!action) return;
    ev.preventDefault();
    action();
  });

  let filterTimer = 0;
  $("filter").addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => { filterTimer = 0; applyFilter(); }, 150);
  });
  $("kind").addEventListener("change", applyFilter);
  $("reset").addEventListener("click", () => {
    manual = noChoices();
    decideAll();
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
