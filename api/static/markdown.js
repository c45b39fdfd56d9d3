/* 谱翼 Puyi: a small, safe Markdown renderer for answers.
 *
 * Answers quote bank documents, which may contain anything, so ALL text is HTML-escaped first and
 * only the markup below is produced by this code: headings, **bold**, *italic*, ~~strike~~,
 * lists (nested), tables, > quotes, `code`, fenced code, rules, paragraphs, links (http(s) and
 * relative URLs only) and citation markers ([1], **[1]**, [1,2]) that link to the citation list.
 */
(function (global) {
  "use strict";

  var ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

  function escapeHtml(value) {
    return String(value == null ? "" : value).replace(/[&<>"']/g, function (c) { return ESC[c]; });
  }

  function unescapeHtml(value) {
    return value.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, "<")
      .replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  }

  /* The URL (still escaped) if it is http(s) or relative, else null. Control characters and
   * spaces are removed before looking at the scheme, as browsers do ("java\tscript:"). */
  function safeUrl(escaped) {
    var raw = unescapeHtml(escaped).replace(/[\u0000-\u0020\u007f-\u009f]/g, "");
    if (!raw) return null;
    if (/^https?:\/\//i.test(raw)) return escaped;
    if (/^[\\/]{2}/.test(raw)) return null;            // protocol-relative: another host
    var colon = raw.indexOf(":");
    if (colon === -1) return escaped;                  // no scheme at all: relative
    var cut = raw.search(/[/?#]/);
    if (cut !== -1 && cut < colon) return escaped;     // the colon is in the path or query
    return null;                                       // javascript:, data:, vbscript:, mailto: …
  }

  var HOLD = "\u0000";

  /* Inline markup on one escaped line. */
  function inline(text) {
    var held = [];
    function hold(html) { held.push(html); return HOLD + (held.length - 1) + HOLD; }

    var s = text;
    // `code` first: nothing inside it is markup.
    s = s.replace(/`([^`]+)`/g, function (_, code) { return hold("<code>" + code + "</code>"); });
    // [text](url "title")
    s = s.replace(/\[([^\]]+)\]\(\s*([^()\s]+)(?:\s+&quot;[^]*?&quot;)?\s*\)/g, function (_, label, url) {
      var safe = safeUrl(url);
      var inner = emphasis(label);
      if (safe === null) return hold('<span class="md-link-blocked">' + inner + "</span>");
      var external = /^https?:/i.test(unescapeHtml(safe));
      return hold('<a href="' + safe + '"' + (external ? ' target="_blank" rel="noopener noreferrer"' : "") +
        ">" + inner + "</a>");
    });
    // Citation markers: **[1]**, [1], [1,2], [1][2]. Years and other long numbers are left alone.
    s = s.replace(/(\*\*)?\[(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\](\*\*)?(?!\()/g, function (all, b1, nums, b2) {
      var refs = nums.split(/\s*[,，、]\s*/).map(function (n) {
        return '<a class="cite-ref" href="#" data-cite="' + n + '">' + n + "</a>";
      });
      var html = '<sup class="cite">[' + refs.join(",") + "]</sup>";
      if (b1 && !b2) html = b1 + html;   // keep unmatched asterisks as they were
      if (b2 && !b1) html = html + b2;
      return hold(html);
    });
    s = emphasis(s);
    return s.replace(/\u0000(\d+)\u0000/g, function (_, n) { return held[Number(n)]; });
  }

  function emphasis(s) {
    return s
      .replace(/\*\*(?=\S)([^]*?\S)\*\*/g, "<strong>$1</strong>")
      .replace(/~~(?=\S)([^]*?\S)~~/g, "<del>$1</del>")
      .replace(/(^|[^*\w])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?![*\w])/g, "$1<em>$2</em>");
  }

  var LIST_RE = /^(\s*)([-*+•]|\d{1,3}[.)])\s+(.*)$/;
  var FENCE_RE = /^\s{0,3}(```|~~~)/;
  var HEADING_RE = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
  var HR_RE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
  var QUOTE_RE = /^\s{0,3}&gt;/;
  var SEP_RE = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

  function blank(line) { return /^\s*$/.test(line); }

  function isTableStart(lines, i) {
    return lines[i].indexOf("|") !== -1 && i + 1 < lines.length &&
      lines[i + 1].indexOf("|") !== -1 && lines[i + 1].indexOf("-") !== -1 && SEP_RE.test(lines[i + 1]);
  }

  function startsBlock(lines, i) {
    var l = lines[i];
    return FENCE_RE.test(l) || HEADING_RE.test(l) || HR_RE.test(l) || QUOTE_RE.test(l) ||
      LIST_RE.test(l) || isTableStart(lines, i);
  }

  function splitCells(line) {
    var s = line.trim();
    if (s.charAt(0) === "|") s = s.slice(1);
    if (s.charAt(s.length - 1) === "|" && s.charAt(s.length - 2) !== "\\") s = s.slice(0, -1);
    return s.split(/(?<!\\)\|/).map(function (c) { return c.trim().replace(/\\\|/g, "|"); });
  }

  var NUMERIC_RE = /^[-+−]?[¥￥$]?\s?\d[\d,]*(\.\d+)?\s*(%|‰|bp|BP|万元|亿元|元|万|亿|个|笔|户|人|家|天|月|年|期|倍)?$/;

  function isNumeric(text) { return NUMERIC_RE.test(String(text).trim()); }

  function renderTable(lines, i, out) {
    var head = splitCells(lines[i]);
    var aligns = splitCells(lines[i + 1]).map(function (c) {
      var left = c.charAt(0) === ":", right = c.charAt(c.length - 1) === ":";
      return left && right ? "center" : right ? "right" : left ? "left" : "";
    });
    i += 2;
    var rows = [];
    while (i < lines.length && !blank(lines[i]) && lines[i].indexOf("|") !== -1) rows.push(splitCells(lines[i++]));
    function cell(tag, text, col) {
      var cls = aligns[col] ? "align-" + aligns[col] : (tag === "td" && isNumeric(unescapeHtml(text)) ? "num" : "");
      return "<" + tag + (cls ? ' class="' + cls + '"' : "") + ">" + inline(text) + "</" + tag + ">";
    }
    var html = '<div class="md-table-wrap"><table class="md-table"><thead><tr>';
    head.forEach(function (h, c) { html += cell("th", h, c); });
    html += "</tr></thead><tbody>";
    rows.forEach(function (r) {
      html += "<tr>";
      for (var c = 0; c < head.length; c++) html += cell("td", r[c] == null ? "" : r[c], c);
      html += "</tr>";
    });
    out.push(html + "</tbody></table></div>");
    return i;
  }

  function renderList(lines, i, out) {
    var items = [];
    while (i < lines.length) {
      var line = lines[i];
      var m = line.match(LIST_RE);
      if (m && !HR_RE.test(line)) {
        items.push({ indent: m[1].replace(/\t/g, "    ").length, ordered: /\d/.test(m[2]),
                     start: parseInt(m[2], 10), text: [m[3]] });
        i++;
        continue;
      }
      if (blank(line)) {  // a blank line inside a list: go on if another item follows
        var j = i + 1;
        while (j < lines.length && blank(lines[j])) j++;
        if (j < lines.length && LIST_RE.test(lines[j]) && !HR_RE.test(lines[j])) { i = j; continue; }
        break;
      }
      if (/^\s+\S/.test(line) && items.length && !startsBlock(lines, i)) {  // an indented continuation
        items[items.length - 1].text.push(line.trim());
        i++;
        continue;
      }
      break;
    }
    var html = "", stack = [];
    items.forEach(function (it) {
      var tag = it.ordered ? "ol" : "ul";
      var open = "<" + tag + (it.ordered && it.start !== 1 ? ' start="' + it.start + '"' : "") + ">";
      while (stack.length && it.indent < stack[stack.length - 1].indent) html += "</li></" + stack.pop().tag + ">";
      var top = stack[stack.length - 1];
      if (!top || it.indent > top.indent) {
        html += open;
        stack.push({ indent: it.indent, tag: tag });
      } else if (top.tag !== tag) {
        html += "</li></" + stack.pop().tag + ">" + open;
        stack.push({ indent: it.indent, tag: tag });
      } else {
        html += "</li>";
      }
      html += "<li>" + it.text.map(inline).join("<br>");
    });
    while (stack.length) html += "</li></" + stack.pop().tag + ">";
    out.push(html);
    return i;
  }

  function renderBlocks(lines) {
    var out = [], i = 0, m;
    while (i < lines.length) {
      var line = lines[i];
      if (blank(line)) { i++; continue; }
      if ((m = line.match(FENCE_RE))) {
        var fence = m[1], code = [];
        i++;
        while (i < lines.length && lines[i].trim().indexOf(fence) !== 0) code.push(lines[i++]);
        i++;
        out.push('<pre class="md-code"><code>' + code.join("\n") + "</code></pre>");
        continue;
      }
      if ((m = line.match(HEADING_RE))) {
        var level = m[1].length, tag = "h" + Math.min(level + 2, 6);
        out.push("<" + tag + ' class="md-h' + level + '">' + inline(m[2]) + "</" + tag + ">");
        i++;
        continue;
      }
      if (HR_RE.test(line)) { out.push("<hr>"); i++; continue; }
      if (isTableStart(lines, i)) { i = renderTable(lines, i, out); continue; }
      if (QUOTE_RE.test(line)) {
        var quoted = [];
        while (i < lines.length && QUOTE_RE.test(lines[i])) quoted.push(lines[i++].replace(/^\s{0,3}&gt;\s?/, ""));
        out.push("<blockquote>" + renderBlocks(quoted) + "</blockquote>");
        continue;
      }
      if (LIST_RE.test(line)) { i = renderList(lines, i, out); continue; }
      var para = [line.trim()];
      i++;
      while (i < lines.length && !blank(lines[i]) && !startsBlock(lines, i)) para.push(lines[i++].trim());
      out.push("<p>" + para.map(inline).join("<br>") + "</p>");
    }
    return out.join("\n");
  }

  /* Markdown source to safe HTML. */
  function render(source) {
    var text = String(source == null ? "" : source).replace(/\u0000/g, "").replace(/\r\n?/g, "\n");
    return renderBlocks(escapeHtml(text).split("\n"));
  }

  global.PuyiMarkdown = { render: render, escapeHtml: escapeHtml, inline: inline, safeUrl: safeUrl,
                          isNumeric: isNumeric };
})(window);
