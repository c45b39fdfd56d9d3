/* 谱翼 Puyi: the structured blocks under an answer (data.display): table, chart, alert, comparison.
 * Everything is built with DOM calls and textContent, never from HTML strings.
 */
(function (global) {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  var COLORS = ["#1f4e79", "#c0504d", "#2e8b57", "#d98c1f", "#6b4c9a", "#2a9fb0", "#7f7f7f"];
  var LEVELS = { red: "红色预警", orange: "橙色预警", yellow: "黄色预警" };

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (text != null) node.textContent = String(text);
    return node;
  }

  function isNum(v) { return typeof v === "number" && isFinite(v); }

  function formatNumber(v) {
    if (!isNum(v)) return v == null ? "—" : String(v);
    return v.toLocaleString("zh-CN", { maximumFractionDigits: Math.abs(v) < 1 ? 4 : 2 });
  }

  function numericCell(v) {
    return isNum(v) || (typeof v === "string" && global.PuyiMarkdown.isNumeric(v));
  }

  function titled(block, cls) {
    var box = el("section", "block " + cls);
    box.setAttribute("data-block", block.type);
    if (block.title) box.appendChild(el("h4", "block-title", block.title));
    return box;
  }

  function asList(v) { return Array.isArray(v) ? v : []; }

  /* {"type":"table","title","columns":[str],"rows":[[cell]]} */
  function renderTable(block) {
    var box = titled(block, "block-table");
    var wrap = el("div", "table-wrap");
    var table = el("table", "data-table");
    var columns = asList(block.columns);
    var rows = asList(block.rows);
    var numericCols = columns.map(function (_, c) {
      var seen = rows.filter(function (r) { return Array.isArray(r) && r[c] != null && r[c] !== ""; });
      return seen.length > 0 && seen.every(function (r) { return numericCell(r[c]); });
    });
    var tr = el("tr");
    columns.forEach(function (name, c) { tr.appendChild(el("th", numericCols[c] ? "num" : "", name)); });
    table.appendChild(el("thead")).appendChild(tr);
    var body = table.appendChild(el("tbody"));
    rows.forEach(function (row) {
      var r = el("tr");
      for (var c = 0; c < Math.max(columns.length, asList(row).length); c++) {
        var v = asList(row)[c];
        r.appendChild(el("td", numericCols[c] || isNum(v) ? "num" : "", formatNumber(v)));
      }
      body.appendChild(r);
    });
    wrap.appendChild(table);
    box.appendChild(wrap);
    return box;
  }

  /* {"type":"comparison","title","columns":[要素, 方案A, 方案B…],"rows":[[str]]} */
  function renderComparison(block) {
    var box = titled(block, "block-comparison");
    var wrap = el("div", "table-wrap");
    var table = el("table", "comparison-table");
    var columns = asList(block.columns);
    var tr = el("tr");
    columns.forEach(function (name, c) { tr.appendChild(el("th", c === 0 ? "element" : "plan", name)); });
    table.appendChild(el("thead")).appendChild(tr);
    var body = table.appendChild(el("tbody"));
    asList(block.rows).forEach(function (row) {
      var cells = asList(row);
      var r = el("tr");
      var plans = cells.slice(1).map(function (v) { return v == null ? "" : String(v); });
      if (plans.length > 1 && plans.some(function (v) { return v !== plans[0]; })) r.className = "differs";
      for (var c = 0; c < Math.max(columns.length, cells.length); c++) {
        var cell = c === 0 ? el("th", "element", cells[c] == null ? "" : cells[c]) : el("td", "", formatNumber(cells[c]));
        if (c === 0) cell.setAttribute("scope", "row");
        r.appendChild(cell);
      }
      body.appendChild(r);
    });
    wrap.appendChild(table);
    box.appendChild(wrap);
    return box;
  }

  /* {"type":"alert","title","level","product","rule","summary","evidence":[{label,value}],"actions":[str]} */
  function renderAlert(block) {
    var level = LEVELS[block.level] ? block.level : "yellow";
    var box = titled({ type: "alert" }, "block-alert alert-card level-" + level);
    box.setAttribute("data-level", level);
    var head = el("div", "alert-head");
    head.appendChild(el("span", "alert-level", block.level_name ? String(block.level_name) : LEVELS[level]));
    head.appendChild(el("span", "alert-title", block.title || "风险预警"));
    box.appendChild(head);
    var meta = el("div", "alert-meta");
    if (block.product) meta.appendChild(el("span", "", "产品：" + block.product));
    if (block.rule) meta.appendChild(el("span", "", "规则：" + block.rule));
    if (meta.childNodes.length) box.appendChild(meta);
    if (block.summary) box.appendChild(el("p", "alert-summary", block.summary));
    var evidence = asList(block.evidence);
    if (evidence.length) {
      box.appendChild(el("div", "alert-subtitle", "依据"));
      var dl = el("dl", "alert-evidence");
      evidence.forEach(function (e) {
        if (!e) return;
        dl.appendChild(el("dt", "", e.label));
        dl.appendChild(el("dd", "", isNum(e.value) ? formatNumber(e.value) : e.value));
      });
      box.appendChild(dl);
    }
    // Each action is a button that asks it in the chat (e.g. "确认 #12" records a disposition): the
    // page listens for the bubbling "puyi:ask" event.
    var actions = asList(block.actions).filter(function (a) { return a != null && String(a).trim(); });
    if (actions.length) {
      box.appendChild(el("div", "alert-subtitle", "处置"));
      var ul = el("ul", "alert-actions");
      actions.forEach(function (a) {
        var button = el("button", "btn btn-small alert-action", a);
        button.type = "button";
        button.title = "发送「" + String(a) + "」";
        button.setAttribute("data-testid", "alert-action");
        button.addEventListener("click", function () {
          button.dispatchEvent(new CustomEvent("puyi:ask", { bubbles: true, detail: { text: String(a) } }));
        });
        var li = ul.appendChild(el("li"));
        li.style.display = "inline-block";  // a row of buttons, not a bulleted list
        li.style.margin = "4px 8px 0 0";
        li.appendChild(button);
      });
      ul.style.paddingLeft = "0";
      box.appendChild(ul);
    }
    return box;
  }

  /* Round numbers for axis ticks. */
  function niceTicks(min, max, count) {
    if (min === max) { var pad = Math.abs(min) * 0.1 || 1; min -= pad; max += pad; }
    var span = max - min;
    var step = Math.pow(10, Math.floor(Math.log10(span / count)));
    var err = span / count / step;
    if (err >= 7.5) step *= 10; else if (err >= 3.5) step *= 5; else if (err >= 1.5) step *= 2;
    var lo = Math.floor(min / step) * step, hi = Math.ceil(max / step) * step;
    var ticks = [];
    for (var v = lo; v <= hi + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
    return ticks;
  }

  function textWidth(s) {  // a rough estimate: CJK characters are twice as wide as Latin ones
    var w = 0;
    String(s).split("").forEach(function (ch) { w += ch.charCodeAt(0) > 255 ? 12 : 7; });
    return w;
  }

  /* {"type":"chart","title","x":[str],"series":[{"name","values":[number|null]}],"unit"} — a line chart. */
  function renderChart(block) {
    var box = titled(block, "block-chart");
    var xs = asList(block.x).map(String);
    var series = asList(block.series).filter(function (s) { return s && Array.isArray(s.values); });
    var unit = block.unit ? String(block.unit) : "";
    var values = [];
    series.forEach(function (s) { s.values.forEach(function (v) { if (isNum(v)) values.push(v); }); });
    if (!xs.length || !values.length) {
      box.appendChild(el("p", "muted", "暂无可绘制的数据"));
      return box;
    }
    var W = 680, H = 300, left = 64, right = 36, top = 40, bottom = 44;
    var ticks = niceTicks(Math.min.apply(null, values), Math.max.apply(null, values), 5);
    var yMin = ticks[0], yMax = ticks[ticks.length - 1];
    var plotW = W - left - right, plotH = H - top - bottom;
    function X(i) { return left + (xs.length === 1 ? plotW / 2 : (i * plotW) / (xs.length - 1)); }
    function Y(v) { return top + plotH - ((v - yMin) / (yMax - yMin)) * plotH; }

    var chart = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "chart", role: "img",
                             "aria-label": (block.title || "趋势图") + (unit ? "（" + unit + "）" : "") });
    chart.appendChild(svg("title", {}, (block.title || "趋势图") + (unit ? "（单位：" + unit + "）" : "")));

    // Legend, along the top.
    var lx = left;
    series.forEach(function (s, k) {
      var color = COLORS[k % COLORS.length];
      var g = svg("g", { class: "legend-item" });
      g.appendChild(svg("rect", { x: lx, y: 12, width: 14, height: 4, rx: 2, fill: color }));
      g.appendChild(svg("text", { x: lx + 20, y: 18, class: "legend-text" }, s.name || "系列" + (k + 1)));
      chart.appendChild(g);
      lx += 36 + textWidth(s.name || "系列" + (k + 1));
    });
    if (unit) chart.appendChild(svg("text", { x: W - right, y: 18, class: "axis-unit", "text-anchor": "end" }, "单位：" + unit));

    // Grid and y axis.
    ticks.forEach(function (t) {
      var y = Y(t);
      chart.appendChild(svg("line", { x1: left, x2: W - right, y1: y, y2: y, class: "grid" }));
      chart.appendChild(svg("text", { x: left - 8, y: y + 4, class: "axis-label", "text-anchor": "end" }, formatNumber(t)));
    });
    chart.appendChild(svg("line", { x1: left, x2: left, y1: top, y2: top + plotH, class: "axis" }));
    chart.appendChild(svg("line", { x1: left, x2: W - right, y1: top + plotH, y2: top + plotH, class: "axis" }));

    // X labels: at most about eight.
    var every = Math.max(1, Math.ceil(xs.length / 8));
    xs.forEach(function (label, i) {
      if (i % every !== 0 && i !== xs.length - 1) return;
      chart.appendChild(svg("line", { x1: X(i), x2: X(i), y1: top + plotH, y2: top + plotH + 4, class: "axis" }));
      chart.appendChild(svg("text", { x: X(i), y: top + plotH + 18, class: "axis-label", "text-anchor": "middle" }, label));
    });

    // Lines (broken at missing values) and points with a tooltip each.
    series.forEach(function (s, k) {
      var color = COLORS[k % COLORS.length];
      var g = svg("g", { class: "series", "data-series": s.name || "" });
      var d = "", pen = false;
      xs.forEach(function (_, i) {
        var v = s.values[i];
        if (!isNum(v)) { pen = false; return; }
        d += (pen ? " L " : " M ") + X(i).toFixed(1) + " " + Y(v).toFixed(1);
        pen = true;
      });
      if (d) g.appendChild(svg("path", { d: d.trim(), fill: "none", stroke: color, "stroke-width": 2.2,
                                         "stroke-linejoin": "round", "stroke-linecap": "round", class: "line" }));
      xs.forEach(function (label, i) {
        var v = s.values[i];
        if (!isNum(v)) return;
        var dot = svg("circle", { cx: X(i), cy: Y(v), r: 3.5, fill: "#fff", stroke: color, "stroke-width": 2, class: "point" });
        dot.appendChild(svg("title", {}, (s.name ? s.name + " · " : "") + label + "：" + formatNumber(v) + (unit ? " " + unit : "")));
        g.appendChild(dot);
      });
      chart.appendChild(g);
    });

    var wrap = el("div", "chart-wrap");
    wrap.appendChild(chart);
    box.appendChild(wrap);
    return box;
  }

  var RENDERERS = { table: renderTable, chart: renderChart, alert: renderAlert, comparison: renderComparison };

  /* The blocks a renderer knows, in order; unknown or broken ones are skipped. */
  function render(blocks) {
    var frag = document.createDocumentFragment();
    asList(blocks).forEach(function (block) {
      if (!block || typeof block !== "object" || !Object.prototype.hasOwnProperty.call(RENDERERS, block.type)) return;
      try {
        frag.appendChild(RENDERERS[block.type](block));
      } catch (err) {
        if (global.console) global.console.warn("无法显示的数据块", block.type, err);
      }
    });
    return frag;
  }

  global.PuyiBlocks = { render: render, formatNumber: formatNumber, niceTicks: niceTicks };
})(window);
