// The offline search-tree viewer. Reads the tree from <script id="tree-data">, lays it out
// once per fold/unfold (a tidy left-to-right tree: leaves in DFS order, parents centred on
// their children), and draws it on one canvas, culled to the view, so thousands of nodes
// stay smooth. Model text reaches the page only through textContent and canvas fillText:
// it is never parsed as HTML.
(function () {
  "use strict";
  var startedAt = performance.now();
  window.addEventListener("error", function (event) {
    document.body.setAttribute("data-error", String(event.message));
  });

  // -- data ---------------------------------------------------------------------------
  var data = JSON.parse(document.getElementById("tree-data").textContent);
  var N = data.parent.length;
  var ROOT = 0, NONE = -1;
  var FINAL = data.history.length;  // slider position of the finished tree
  var COL = 200, ROW = 20, RADIUS = 6;  // layout grid and node size, in world units
  var LABEL_CHARS = 34;

  var parent = Int32Array.from(data.parent);
  var depth = new Int32Array(N);
  var childCount = new Int32Array(N), childStart = new Int32Array(N + 1), childList = new Int32Array(Math.max(N - 1, 0));
  (function buildChildren() {
    for (var n = 1; n < N; n++) { childCount[parent[n]]++; depth[n] = depth[parent[n]] + 1; }
    for (var i = 0; i < N; i++) childStart[i + 1] = childStart[i] + childCount[i];
    var fill = Int32Array.from(childStart.subarray(0, N));
    for (var c = 1; c < N; c++) childList[fill[parent[c]]++] = c;
  })();
  var subtreeSize = new Int32Array(N).fill(1);
  for (var s = N - 1; s > 0; s--) subtreeSize[parent[s]] += subtreeSize[s];
  var bornRound = new Int32Array(N).fill(FINAL);  // first slider position where the node exists
  for (var r = 0, grown = 0; r < FINAL; r++) {  // ids grow with time: round r adds ids grown..size-1
    for (; grown < data.history[r].size; grown++) bornRound[grown] = r;
  }
  var visitsNow = new Float64Array(N), valueSumNow = new Float64Array(N);  // as of state.round
  var onChosen = new Uint8Array(N);
  for (var p = data.chosen; p !== NONE && p >= 0; p = parent[p]) onChosen[p] = 1;

  // -- state ----------------------------------------------------------------------------
  var state = {
    round: FINAL, selected: data.chosen >= 0 ? data.chosen : ROOT,
    collapsed: new Uint8Array(N), matches: [], matchFlag: new Uint8Array(N), matchIndex: -1,
    colourRange: false, scale: 1, tx: 40, ty: 40, playing: null,
  };
  var layoutX = new Float64Array(N), layoutY = new Float64Array(N);
  var shown = new Int32Array(N), shownCount = 0;  // nodes not folded away, in DFS order

  // -- text helpers -------------------------------------------------------------------
  function controlPictures(text) {  // control characters become visible symbols (U+2400 block)
    return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, function (ch) {
      return ch === "\u007f" ? "\u2421" : String.fromCharCode(0x2400 + ch.charCodeAt(0));
    });
  }
  function oneLine(text, limit) {
    var flat = controlPictures(text).replace(/\n/g, "\u21b5").replace(/\t/g, " ");
    return flat.length > limit ? flat.slice(0, limit - 1) + "\u2026" : flat;
  }
  function fmt(value, digits) {
    return value === null || value === undefined ? "\u2013" : Number(value).toFixed(digits);
  }
  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  // -- per-round numbers --------------------------------------------------------------
  function exists(n) { return bornRound[n] <= state.round; }
  function visitsAt(n) { return visitsNow[n]; }
  function meanValueAt(n) { var v = visitsNow[n]; return v ? valueSumNow[n] / v : 0; }
  function replayTo(round) {  // history holds per-round changes only: apply rounds 0..round
    if (round === FINAL) { visitsNow.set(data.visits); valueSumNow.set(data.value_sum); return; }
    visitsNow.fill(0); valueSumNow.fill(0);
    for (var r = 0; r <= round; r++) {
      var snap = data.history[r];
      for (var i = 0; i < snap.changed.length; i++) {
        visitsNow[snap.changed[i]] = snap.visits[i];
        valueSumNow[snap.changed[i]] = snap.value_sum[i];
      }
    }
  }
  function visibleChildren(n) {  // children present in this round
    var out = [];
    for (var i = childStart[n]; i < childStart[n + 1]; i++) if (exists(childList[i])) out.push(childList[i]);
    return out;
  }

  // -- layout ---------------------------------------------------------------------------
  // Pre-order walk over unfolded nodes: display leaves take consecutive rows; then, in
  // reverse order, each parent sits midway between its first and last child.
  function layout() {
    var stack = [ROOT], slot = 0;
    shownCount = 0;
    while (stack.length) {
      var n = stack.pop();
      shown[shownCount++] = n;
      layoutX[n] = depth[n] * COL;
      var open = !state.collapsed[n] && childCount[n] > 0;
      if (!open) layoutY[n] = (slot++) * ROW;
      else for (var i = childStart[n + 1] - 1; i >= childStart[n]; i--) stack.push(childList[i]);
    }
    for (var k = shownCount - 1; k >= 0; k--) {
      var m = shown[k];
      if (!state.collapsed[m] && childCount[m] > 0) {
        layoutY[m] = (layoutY[childList[childStart[m]]] + layoutY[childList[childStart[m + 1] - 1]]) / 2;
      }
    }
  }

  // -- colours --------------------------------------------------------------------------
  var STOPS = [[215, 48, 39], [254, 224, 139], [26, 152, 80]];  // red, yellow, green
  var PALETTE = [];
  for (var q = 0; q <= 40; q++) PALETTE.push(mix(q / 40));
  function mix(t) {
    var a = t < 0.5 ? STOPS[0] : STOPS[1], z = t < 0.5 ? STOPS[1] : STOPS[2], u = t < 0.5 ? 2 * t : 2 * t - 1;
    return "rgb(" + a.map(function (v, i) { return Math.round(v + (z[i] - v) * u); }).join(",") + ")";
  }
  var scoreLow = 0, scoreHigh = 1;
  function scoreBounds() {
    if (!state.colourRange || N < 2) { scoreLow = 0; scoreHigh = 1; return; }
    scoreLow = Infinity; scoreHigh = -Infinity;
    for (var n = 1; n < N; n++) {
      var v = data.score[n];
      if (v !== null) { scoreLow = Math.min(scoreLow, v); scoreHigh = Math.max(scoreHigh, v); }
    }
    if (!(scoreHigh > scoreLow)) { scoreLow = 0; scoreHigh = 1; }
  }
  function colourIndex(n) {
    var v = data.score[n];
    if (n === ROOT || v === null) return -1;
    var t = Math.min(1, Math.max(0, (v - scoreLow) / (scoreHigh - scoreLow)));
    return Math.round(t * 40);
  }

  // -- drawing --------------------------------------------------------------------------
  var canvas = document.getElementById("canvas"), ctx = canvas.getContext("2d");
  var width = 0, height = 0, dpr = 1, drawQueued = false;
  var FONT = getComputedStyle(document.body).fontFamily;

  function resize() {
    var box = canvas.parentNode.getBoundingClientRect();
    dpr = window.devicePixelRatio || 1;
    width = Math.max(1, box.width); height = Math.max(1, box.height);
    canvas.width = Math.round(width * dpr); canvas.height = Math.round(height * dpr);
  }
  function requestDraw() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(function () { drawQueued = false; draw(); });
  }
  function toScreenX(x) { return x * state.scale + state.tx; }
  function toScreenY(y) { return y * state.scale + state.ty; }

  function draw() {
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    var view = visibleWorld();
    var drawn = drawnNodes(view);
    drawEdges(drawn);
    drawNodes(drawn);
    if (ROW * state.scale >= 11) drawLabels(drawn);  // rows too tight for text: shapes only
    var present = 0;  // unfolded nodes that exist in this round (drawn when in view)
    for (var k = 0; k < shownCount; k++) if (exists(shown[k])) present++;
    document.body.setAttribute("data-rendered-nodes", String(present));
  }
  function visibleWorld() {
    var pad = 40 / state.scale;
    return {
      x0: (0 - state.tx) / state.scale - COL, x1: (width - state.tx) / state.scale + pad,
      y0: (0 - state.ty) / state.scale - pad, y1: (height - state.ty) / state.scale + pad,
    };
  }
  function drawnNodes(view) {  // unfolded, existing nodes whose box or edge can show
    var out = [];
    for (var k = 0; k < shownCount; k++) {
      var n = shown[k];
      if (!exists(n)) continue;
      var x = layoutX[n], y = layoutY[n], py = n === ROOT ? y : layoutY[parent[n]];
      if (x < view.x0 || x - COL > view.x1) continue;
      if (Math.max(y, py) < view.y0 || Math.min(y, py) > view.y1) continue;
      out.push(n);
    }
    return out;
  }
  function edgeWidth(n, rootVisits) {  // screen px; thinner when zoomed far out
    var zoom = Math.max(0.3, Math.min(1, state.scale));
    return (1 + 7 * Math.sqrt(Math.min(1, visitsAt(n) / Math.max(rootVisits, 1)))) * zoom;
  }
  function edgePath(path, n) {
    var x0 = toScreenX(layoutX[parent[n]]), y0 = toScreenY(layoutY[parent[n]]);
    var x1 = toScreenX(layoutX[n]), y1 = toScreenY(layoutY[n]), mx = (x0 + x1) / 2;
    path.moveTo(x0, y0);
    path.bezierCurveTo(mx, y0, mx, y1, x1, y1);
  }
  function drawEdges(drawn) {
    var rootVisits = visitsAt(ROOT), buckets = {};
    drawn.forEach(function (n) {
      if (n === ROOT) return;
      var w = Math.round(edgeWidth(n, rootVisits) * 2) / 2;
      (buckets[w] = buckets[w] || []).push(n);
    });
    ctx.lineCap = "round";
    Object.keys(buckets).forEach(function (w) {
      ctx.beginPath();
      buckets[w].forEach(function (n) { edgePath(ctx, n); });
      ctx.strokeStyle = "rgba(150, 161, 176, 0.55)"; ctx.lineWidth = Number(w); ctx.stroke();
    });
    ctx.strokeStyle = "#1f4e9c";
    drawn.forEach(function (n) {
      if (n === ROOT || !onChosen[n]) return;
      ctx.beginPath(); edgePath(ctx, n);
      ctx.lineWidth = Math.max(3, edgeWidth(n, rootVisits)); ctx.stroke();
    });
  }
  function nodeRadius() { return Math.max(1.5, Math.min(RADIUS * state.scale, 10)); }
  function shapePath(n, r) {
    var x = toScreenX(layoutX[n]), y = toScreenY(layoutY[n]);
    if (data.terminal[n] || n === ROOT) { ctx.rect(x - r, y - r, 2 * r, 2 * r); return; }
    ctx.moveTo(x + r, y); ctx.arc(x, y, r, 0, 2 * Math.PI);
  }
  function drawNodes(drawn) {
    var r = nodeRadius(), groups = {};
    drawn.forEach(function (n) { var c = colourIndex(n); (groups[c] = groups[c] || []).push(n); });
    Object.keys(groups).forEach(function (c) {
      ctx.beginPath();
      groups[c].forEach(function (n) { shapePath(n, r); });
      ctx.fillStyle = c === "-1" ? "#4a5563" : PALETTE[Number(c)];
      ctx.fill();
      if (r >= 4) { ctx.strokeStyle = "rgba(60, 70, 85, 0.55)"; ctx.lineWidth = 1; ctx.stroke(); }
    });
    ring(drawn.filter(function (n) { return onChosen[n]; }), r + 2, "#1f4e9c", 2.5);
    ring(drawn.filter(function (n) { return state.matchFlag[n]; }), r + 4, "#c2185b", 2.5);
    ring(drawn.filter(function (n) { return n === state.selected; }), r + 6, "#1d232b", 2);
    drawFoldBadges(drawn, r);
  }
  function ring(nodes, r, colour, lineWidth) {
    if (!nodes.length) return;
    ctx.beginPath();
    nodes.forEach(function (n) { shapePath(n, r); });
    ctx.strokeStyle = colour; ctx.lineWidth = lineWidth; ctx.stroke();
  }
  function drawFoldBadges(drawn, r) {
    ctx.font = "600 11px " + FONT;
    ctx.textBaseline = "middle";
    drawn.forEach(function (n) {
      if (!state.collapsed[n] || childCount[n] === 0) return;
      var x = toScreenX(layoutX[n]) + r + 5, y = toScreenY(layoutY[n]);
      var label = "+" + (subtreeSize[n] - 1);
      var w = ctx.measureText(label).width + 8;
      ctx.fillStyle = "#1d232b"; ctx.beginPath(); ctx.rect(x, y - 8, w, 16); ctx.fill();
      ctx.fillStyle = "#fff"; ctx.fillText(label, x + 4, y + 0.5);
    });
  }
  function drawLabels(drawn) {
    var r = nodeRadius(), size = Math.max(9, Math.min(13, ROW * state.scale * 0.62));
    ctx.font = size + "px " + FONT;
    ctx.textBaseline = "middle";
    ctx.lineJoin = "round";
    drawn.forEach(function (n) {
      if (state.collapsed[n] && childCount[n] > 0) return;  // the badge sits there
      // Leaves: text to the right. Inner nodes: above, clear of their outgoing edges.
      var inner = childCount[n] > 0 && visibleChildren(n).length > 0;
      var x = toScreenX(layoutX[n]) + (inner ? -r : r + 5), y = toScreenY(layoutY[n]) - (inner ? r + size * 0.75 : 0);
      if (y < -20 || y > height + 20) return;
      var label = nodeLabel(n);
      ctx.strokeStyle = "rgba(252, 252, 253, 0.92)"; ctx.lineWidth = 4; ctx.strokeText(label, x, y);
      ctx.fillStyle = onChosen[n] ? "#1f4e9c" : "#3b4553";
      ctx.fillText(label, x, y);
    });
  }
  function nodeLabel(n) {  // the step's text; a terminal's answer when the step does not state it
    var text = oneLine(data.text[n].replace(/\s+$/, ""), LABEL_CHARS);
    var answer = n !== ROOT && data.terminal[n] && data.answer[n] !== null ? data.answer[n] : null;
    return answer === null || text.indexOf(answer) >= 0 ? text : text + "  \u2192 " + oneLine(answer, 16);
  }

  // -- view: fit, centre, pan, zoom ------------------------------------------------------
  function fit() {
    var minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
    for (var k = 0; k < shownCount; k++) {
      var n = shown[k];
      if (!exists(n)) continue;
      minX = Math.min(minX, layoutX[n]); maxX = Math.max(maxX, layoutX[n]);
      minY = Math.min(minY, layoutY[n]); maxY = Math.max(maxY, layoutY[n]);
    }
    var labelRoom = 210, margin = 28, legendRoom = 40;  // the legend sits low-left, where trees are sparse
    var sx = (width - 2 * margin - labelRoom) / Math.max(maxX - minX, 1);
    var sy = (height - 2 * margin - legendRoom) / Math.max(maxY - minY, 1);
    state.scale = Math.max(0.002, Math.min(1.4, sx, sy));
    state.tx = margin + 20 - minX * state.scale;
    state.ty = margin + (height - 2 * margin - legendRoom - (maxY - minY) * state.scale) / 2 - minY * state.scale;
    requestDraw();
  }
  function centreOn(n) {
    if (state.scale < 0.6) state.scale = 0.9;
    state.tx = width * 0.4 - layoutX[n] * state.scale;
    state.ty = height * 0.45 - layoutY[n] * state.scale;
    requestDraw();
  }
  function zoomAt(factor, sx, sy) {
    var next = Math.max(0.002, Math.min(6, state.scale * factor));
    state.tx = sx - (sx - state.tx) * (next / state.scale);
    state.ty = sy - (sy - state.ty) * (next / state.scale);
    state.scale = next;
    requestDraw();
  }
  function nodeAt(sx, sy) {  // nearest drawn node within reach of the pointer
    var best = NONE, bestDist = Math.pow(Math.max(nodeRadius() + 4, 8), 2);
    for (var k = 0; k < shownCount; k++) {
      var n = shown[k];
      if (!exists(n)) continue;
      var dx = toScreenX(layoutX[n]) - sx, dy = toScreenY(layoutY[n]) - sy, d = dx * dx + dy * dy;
      if (d < bestDist) { best = n; bestDist = d; }
    }
    return best;
  }

  // -- folding ----------------------------------------------------------------------------
  function setCollapsed(n, folded) {
    if (childCount[n] === 0) return;
    state.collapsed[n] = folded ? 1 : 0;
    relayout(n);
  }
  function relayout(anchor) {  // keep ``anchor`` where it was on screen
    var sx = toScreenX(layoutX[anchor]), sy = toScreenY(layoutY[anchor]);
    layout();
    state.tx = sx - layoutX[anchor] * state.scale;
    state.ty = sy - layoutY[anchor] * state.scale;
    requestDraw();
    showNode(state.selected);
  }
  function unfoldTo(n) {  // open every folded ancestor so ``n`` is shown
    var changed = false;
    for (var p = parent[n]; p !== NONE; p = parent[p]) if (state.collapsed[p]) { state.collapsed[p] = 0; changed = true; }
    if (changed) layout();
  }
  function focusChosen() {
    for (var n = 0; n < N; n++) state.collapsed[n] = childCount[n] > 0 && !onChosen[n] ? 1 : 0;
    layout(); fit();
  }
  function expandAll() { state.collapsed.fill(0); layout(); fit(); }

  // -- selection and the side panel ------------------------------------------------------
  function select(n, centre) {
    if (n === NONE || n === undefined) return;
    if (!exists(n)) setRound(FINAL);
    unfoldTo(n);
    state.selected = n;
    document.body.setAttribute("data-selected", String(n));
    showNode(n);
    if (centre) centreOn(n); else requestDraw();
  }
  function pathTo(n) { var out = []; for (var p = n; p !== NONE; p = parent[p]) out.push(p); return out.reverse(); }

  function showNode(n) {
    document.getElementById("node-heading").textContent =
      n === ROOT ? "Root (the prompt)" : "Node " + n + (onChosen[n] ? "  \u00b7 on the chosen path" : "");
    var toggle = document.getElementById("toggle-node");
    toggle.hidden = childCount[n] === 0;
    toggle.textContent = state.collapsed[n] ? "Unfold subtree (" + (subtreeSize[n] - 1) + ")" : "Fold subtree";
    document.getElementById("goto-parent").disabled = n === ROOT;
    fillNumbers(n);
    document.getElementById("step-text").textContent = controlPictures(data.text[n]);
    fillPath(n);
  }
  function fillNumbers(n) {
    var asOf = state.round === FINAL ? "" : " (round " + (state.round + 1) + ")";
    var rows = [
      ["SPRM score", n === ROOT ? "\u2013" : fmt(data.score[n], 4)],
      ["visits" + asOf, String(visitsAt(n))],
      ["mean value" + asOf, fmt(meanValueAt(n), 4)],
      ["best value", fmt(data.value_max[n], 4)],
      ["prior", n === ROOT ? "\u2013" : fmt(data.prior[n], 4)],
      ["depth", String(depth[n])],
      ["log p (step)", n === ROOT ? "\u2013" : fmt(data.logprob[n], 3)],
      ["tokens", String(data.num_tokens[n])],
      ["terminal", data.terminal[n] ? "yes (" + data.end_names[data.end[n]] + ")" : "no"],
      ["answer", data.answer[n] === null ? "\u2013" : data.answer[n]],
      ["children", String(childCount[n]) + (childCount[n] ? ", subtree " + (subtreeSize[n] - 1) : "")],
    ];
    if (data.history.length) rows.push(["added in round", n === ROOT ? "start" : String(bornRound[n] + 1)]);
    var body = document.querySelector("#numbers tbody");
    body.replaceChildren();
    rows.forEach(function (row) {
      var tr = el("tr");
      tr.appendChild(el("td", row[0]));
      tr.appendChild(el("td", row[1]));
      body.appendChild(tr);
    });
  }
  function fillPath(n) {
    var box = document.getElementById("path-text");
    box.replaceChildren();
    pathTo(n).forEach(function (m) {
      var span = el("span", controlPictures(data.text[m]), "segment" + (m === ROOT ? " prompt" : "") + (m === n ? " current" : ""));
      span.title = m === ROOT ? "prompt" : "node " + m + ", score " + fmt(data.score[m], 3);
      span.addEventListener("click", function () { select(m, true); });
      box.appendChild(span);
    });
  }

  // -- search -------------------------------------------------------------------------------
  function runSearch(query) {
    var needle = query.trim().toLowerCase();
    state.matchFlag.fill(0);
    state.matches = [];
    state.matchIndex = -1;
    if (needle) {
      for (var n = 0; n < N; n++) {
        if (data.text[n].toLowerCase().indexOf(needle) >= 0) { state.matchFlag[n] = 1; state.matches.push(n); }
      }
    }
    document.getElementById("search-count").textContent = needle ? state.matches.length + " match" + (state.matches.length === 1 ? "" : "es") : "";
    document.body.setAttribute("data-search-matches", String(state.matches.length));
    requestDraw();
  }
  function stepMatch(direction) {
    if (!state.matches.length) return;
    state.matchIndex = (state.matchIndex + direction + state.matches.length) % state.matches.length;
    select(state.matches[state.matchIndex], true);
  }

  // -- replay ---------------------------------------------------------------------------------
  function setRound(position) {
    state.round = Math.max(0, Math.min(FINAL, position));
    replayTo(state.round);
    document.getElementById("round").value = String(state.round);
    var label = state.round === FINAL ? "final tree" : "round " + (state.round + 1) + " of " + FINAL;
    var size = state.round === FINAL ? N : data.history[state.round].size;
    document.getElementById("round-label").textContent = label + " \u00b7 " + size + " nodes";
    document.body.setAttribute("data-round", state.round === FINAL ? "final" : String(state.round));
    if (!exists(state.selected)) state.selected = ROOT;
    showNode(state.selected);
    requestDraw();
  }
  function togglePlay() {
    var button = document.getElementById("play");
    if (state.playing) { clearInterval(state.playing); state.playing = null; button.textContent = "\u25b6"; return; }
    if (state.round === FINAL) setRound(0);
    button.textContent = "\u275a\u275a";
    state.playing = setInterval(function () {
      if (state.round >= FINAL) { togglePlay(); return; }
      setRound(state.round + 1);
    }, Math.max(120, Math.min(700, 12000 / Math.max(FINAL, 1))));
  }

  // -- header, legend, events ------------------------------------------------------------------
  function fillHeader() {
    document.getElementById("title").textContent = controlPictures(data.title);
    var summary = document.getElementById("summary");
    summary.replaceChildren();
    var parts = [["nodes", String(N)], ["root visits", String(data.visits[ROOT])]];
    if (data.history.length) parts.push(["rounds", String(FINAL)]);
    parts.push(["answer", data.chosen >= 0 && data.answer[data.chosen] !== null ? data.answer[data.chosen] : "none"]);
    if (data.chosen >= 0) parts.push(["leaf", "#" + data.chosen]);
    parts.forEach(function (part, i) {
      if (i) summary.appendChild(document.createTextNode(" \u00b7 "));
      summary.appendChild(document.createTextNode(part[0] + " "));
      summary.appendChild(el("b", part[1]));
    });
  }
  function updateLegend() {
    document.getElementById("colour-mode").textContent = state.colourRange ? "tree range" : "0\u20131";
    document.getElementById("tick-low").textContent = fmt(scoreLow, state.colourRange ? 3 : 1);
    document.getElementById("tick-mid").textContent = fmt((scoreLow + scoreHigh) / 2, state.colourRange ? 3 : 1);
    document.getElementById("tick-high").textContent = fmt(scoreHigh, state.colourRange ? 3 : 1);
  }
  function setColourRange(on) { state.colourRange = on; scoreBounds(); updateLegend(); requestDraw(); }

  function showTooltip(n, sx, sy) {
    var tip = document.getElementById("tooltip");
    if (n === NONE) { tip.hidden = true; return; }
    var head = n === ROOT ? "prompt" : "#" + n + "  score " + fmt(data.score[n], 3) + "  visits " + visitsAt(n);
    tip.textContent = head + "\n" + oneLine(data.text[n], 160);
    tip.hidden = false;
    tip.style.left = Math.min(sx + 14, width - 370) + "px";
    tip.style.top = (sy + 14) + "px";
  }

  function bindPointer() {
    var drag = null;
    canvas.addEventListener("mousedown", function (e) {
      drag = { x: e.clientX, y: e.clientY, tx: state.tx, ty: state.ty, moved: false };
      canvas.classList.add("dragging");
    });
    window.addEventListener("mousemove", function (e) {
      var box = canvas.getBoundingClientRect(), sx = e.clientX - box.left, sy = e.clientY - box.top;
      if (drag) {
        var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
        state.tx = drag.tx + dx; state.ty = drag.ty + dy;
        requestDraw();
        return;
      }
      if (e.target !== canvas) { showTooltip(NONE); return; }
      var n = nodeAt(sx, sy);
      canvas.style.cursor = n === NONE ? "" : "pointer";
      showTooltip(n, sx, sy);
    });
    window.addEventListener("mouseup", function (e) {
      if (!drag) return;
      var moved = drag.moved;
      drag = null;
      canvas.classList.remove("dragging");
      if (moved || e.target !== canvas) return;
      var box = canvas.getBoundingClientRect(), n = nodeAt(e.clientX - box.left, e.clientY - box.top);
      if (n !== NONE) select(n, false);
    });
    canvas.addEventListener("dblclick", function (e) {
      var box = canvas.getBoundingClientRect(), n = nodeAt(e.clientX - box.left, e.clientY - box.top);
      if (n !== NONE) setCollapsed(n, !state.collapsed[n]);
    });
    canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      var box = canvas.getBoundingClientRect();
      zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - box.left, e.clientY - box.top);
    }, { passive: false });
  }
  function bindKeys() {
    window.addEventListener("keydown", function (e) {
      if (e.target && (e.target.tagName === "INPUT" || e.target.tagName === "BUTTON")) return;
      var n = state.selected, siblings = n === ROOT ? [ROOT] : visibleChildren(parent[n]), at = siblings.indexOf(n);
      var moves = {
        ArrowLeft: function () { return n === ROOT ? n : parent[n]; },
        ArrowRight: function () { var c = visibleChildren(n); return c.length && !state.collapsed[n] ? c[0] : n; },
        ArrowUp: function () { return siblings[Math.max(0, at - 1)]; },
        ArrowDown: function () { return siblings[Math.min(siblings.length - 1, at + 1)]; },
      };
      if (moves[e.key]) { e.preventDefault(); select(moves[e.key](), true); }
      else if (e.key === "f" || e.key === "F") fit();
      else if (e.key === " " || e.key === "Enter") { e.preventDefault(); setCollapsed(n, !state.collapsed[n]); }
    });
  }
  function bindControls() {
    var search = document.getElementById("search");
    search.addEventListener("input", function () { runSearch(search.value); });
    search.addEventListener("keydown", function (e) { if (e.key === "Enter") stepMatch(e.shiftKey ? -1 : 1); });
    document.getElementById("search-next").addEventListener("click", function () { stepMatch(1); });
    document.getElementById("search-prev").addEventListener("click", function () { stepMatch(-1); });
    document.getElementById("fit").addEventListener("click", fit);
    document.getElementById("focus").addEventListener("click", focusChosen);
    document.getElementById("expand-all").addEventListener("click", expandAll);
    document.getElementById("colour-mode").addEventListener("click", function () { setColourRange(!state.colourRange); });
    document.getElementById("toggle-node").addEventListener("click", function () { setCollapsed(state.selected, !state.collapsed[state.selected]); });
    document.getElementById("goto-parent").addEventListener("click", function () { if (state.selected !== ROOT) select(parent[state.selected], true); });
    document.getElementById("goto-chosen").addEventListener("click", function () { if (data.chosen >= 0) select(data.chosen, true); });
    var slider = document.getElementById("round");
    slider.max = String(FINAL);
    slider.addEventListener("input", function () { setRound(Number(slider.value)); });
    document.getElementById("play").addEventListener("click", togglePlay);
    document.getElementById("replay").hidden = FINAL === 0;
    document.getElementById("goto-chosen").hidden = data.chosen < 0;
    window.addEventListener("resize", function () { resize(); requestDraw(); });
  }

  // -- the URL fragment: a shareable view (#node=5&round=2&search=21&fold=1,4&colour=range) ----
  function applyFragment() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    var ids = function (key) { return (params.get(key) || "").split(",").filter(Boolean).map(Number).filter(function (n) { return n >= 0 && n < N; }); };
    if (params.get("colour") === "range") setColourRange(true);
    if (params.has("round")) setRound(params.get("round") === "final" ? FINAL : Number(params.get("round")));
    ids("fold").forEach(function (n) { state.collapsed[n] = childCount[n] > 0 ? 1 : 0; });
    if (params.has("fold")) layout();
    if (params.has("search")) { document.getElementById("search").value = params.get("search"); runSearch(params.get("search")); }
    var picked = ids("node");
    if (picked.length) select(picked[0], true);
  }

  // -- a small handle for scripting the page (and for its tests) ----------------------------
  window.treeViewer = Object.freeze({
    screenPosition: function (n) {  // where node n is drawn, in page coordinates
      var box = canvas.getBoundingClientRect();
      return [box.left + toScreenX(layoutX[n]), box.top + toScreenY(layoutY[n])];
    },
    timedDraw: function () { var t = performance.now(); draw(); return performance.now() - t; },
  });

  // -- start -----------------------------------------------------------------------------------
  resize();
  layout();
  scoreBounds(); updateLegend();
  fillHeader();
  bindPointer(); bindKeys(); bindControls();
  setRound(FINAL);
  select(state.selected, false);
  fit();
  applyFragment();
  draw();
  document.body.setAttribute("data-total-nodes", String(N));
  document.body.setAttribute("data-fetched-resources", String(performance.getEntriesByType("resource").length));
  document.body.setAttribute("data-render-ms", (performance.now() - startedAt).toFixed(1));
})();
