/* 谱翼 Puyi web chat: sign-in with a personal token, conversations, streamed answers, citations,
 * structured blocks and feedback. Plain browser JavaScript, no build step, nothing from a CDN.
 */
(function () {
  "use strict";

  var TOKEN_KEY = "puyi.token";
  var ROUTE_NAMES = {
    catalog: "产品目录", metrics: "经营指标", element_plan: "要素方案", alert: "风险预警",
    knowledge: "知识库", help: "使用帮助", refused: "拒绝"
  };
  var DOC_TYPES = {
    manual: "产品手册", faq: "常见问题", compliance: "合规文件", notice: "通知公告",
    regulation: "监管制度", other: "其他文件"
  };
  var CHANNELS = { web: "网页", api: "API", openai: "OpenAI 接口", wecom: "企业微信", cli: "命令行" };

  var md = window.PuyiMarkdown;
  var blocks = window.PuyiBlocks;
  var state = { token: null, me: null, sessionId: null, streaming: null, answers: 0, lastFocus: null,
                pendingAsk: null };

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = String(text);
    return node;
  }

  function routeName(route, given) { return given || ROUTE_NAMES[route] || route || ""; }

  function formatTime(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    var now = new Date();
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    var hm = pad(d.getHours()) + ":" + pad(d.getMinutes());
    if (d.toDateString() === now.toDateString()) return "今天 " + hm;
    if (d.getFullYear() === now.getFullYear()) return (d.getMonth() + 1) + "月" + d.getDate() + "日 " + hm;
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
  }

  /* ---------- HTTP ---------- */

  function ApiError(status, code, message) {
    var err = new Error(message);
    err.name = "ApiError";
    err.status = status;
    err.code = code;
    return err;
  }

  async function errorFrom(resp) {
    var code = "http_" + resp.status;
    var message = "请求失败（HTTP " + resp.status + "），请稍后再试";
    try {
      var body = await resp.json();
      if (body && body.error) {
        code = body.error.code || code;
        message = body.error.message || message;
      }
    } catch (ignored) { /* not JSON */ }
    if (resp.status === 401) signOut(message);
    return ApiError(resp.status, code, message);
  }

  /* fetch with the token; JSON in and out; a 401 anywhere returns to the sign-in screen. */
  async function api(path, options) {
    options = options || {};
    var headers = { Accept: "application/json" };
    Object.keys(options.headers || {}).forEach(function (k) { headers[k] = options.headers[k]; });
    if (state.token) headers.Authorization = "Bearer " + state.token;
    var body = options.body;
    if (body !== undefined) {
      body = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    var resp;
    try {
      resp = await fetch(path, { method: options.method || "GET", headers: headers, body: body,
                                 signal: options.signal, cache: "no-store" });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw ApiError(0, "network", "无法连接服务器，请检查网络后重试");
    }
    if (!resp.ok) throw await errorFrom(resp);
    return options.raw ? resp : resp.json();
  }

  /* Server-sent events over a POST response: split on blank lines, read `event:` and `data:`. */
  async function readSse(resp, onEvent) {
    var reader = resp.body.getReader();
    var decoder = new TextDecoder("utf-8");
    var buffer = "";
    function dispatch(block) {
      var event = "message";
      var data = [];
      block.split(/\r\n|\n|\r/).forEach(function (line) {
        if (!line || line.charAt(0) === ":") return;
        var at = line.indexOf(":");
        var field = at === -1 ? line : line.slice(0, at);
        var value = at === -1 ? "" : line.slice(at + 1);
        if (value.charAt(0) === " ") value = value.slice(1);
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
      });
      if (!data.length) return;
      var payload = data.join("\n");
      try { payload = JSON.parse(payload); } catch (ignored) { /* plain text data */ }
      onEvent(event, payload);
    }
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true });
      var parts = buffer.split(/\r\n\r\n|\n\n|\r\r/);
      buffer = parts.pop();
      parts.forEach(dispatch);
    }
    buffer += decoder.decode();
    if (buffer.trim()) dispatch(buffer);
  }

  /* ---------- sign-in ---------- */

  function showSignin(message) {
    $("app-view").hidden = true;
    $("signin-view").hidden = false;
    var error = $("signin-error");
    error.textContent = message || "";
    error.hidden = !message;
    $("signin").disabled = false;
    $("signin").textContent = "登录";
    $("token").value = "";
    $("token").focus();
  }

  function signOut(message) {
    if (state.streaming) state.streaming.abort();
    state.streaming = null;
    state.token = null;
    state.me = null;
    state.sessionId = null;
    try { localStorage.removeItem(TOKEN_KEY); } catch (ignored) { /* storage blocked */ }
    closePassage();
    clearMessages();
    $("session-list").textContent = "";
    showSignin(message);
  }

  async function signIn(token) {
    state.token = token;
    var me = await api("/api/me");
    try { localStorage.setItem(TOKEN_KEY, token); } catch (ignored) { /* storage blocked */ }
    showApp(me);
  }

  function showApp(me) {
    state.me = me;
    $("user-name").textContent = me.name || me.user_id || "";
    $("user-role").textContent = me.role_name || me.role || "";
    $("user-scope").textContent = me.scope_label ? "数据范围：" + me.scope_label : "";
    $("user-box").title = (me.user_id || "") + (me.branch_name ? " · " + me.branch_name : "");
    $("signin-view").hidden = true;
    $("app-view").hidden = false;
    newChat();
    refreshSessions();
    askPending();
  }

  /* A WeCom alert card links to `/#alert=ID`: once signed in, ask "预警 #ID" in a new chat. */
  function takeAlertLink() {
    var m = /(?:^#|&)alert=(\d{1,18})(?:&|$)/.exec(window.location.hash || "");
    if (!m) return false;
    state.pendingAsk = "预警 #" + m[1];
    history.replaceState(null, "", window.location.pathname + window.location.search);
    return true;
  }

  function askPending() {
    if (!state.pendingAsk || !state.me) return;
    var question = state.pendingAsk;
    state.pendingAsk = null;
    if (state.streaming) stopStreaming();
    send(question);
  }

  /* ---------- conversations ---------- */

  async function refreshSessions() {
    var list = $("session-list");
    var data;
    try {
      data = await api("/api/sessions");
    } catch (err) {
      if (err.status !== 401) {
        list.textContent = "";
        list.appendChild(el("p", "session-empty", "会话列表加载失败：" + err.message));
      }
      return;
    }
    list.textContent = "";
    var sessions = (data && data.sessions) || [];
    if (!sessions.length) {
      list.appendChild(el("p", "session-empty", "暂无历史会话"));
      return;
    }
    sessions.forEach(function (s) {
      var item = el("button", "session-item");
      item.type = "button";
      item.setAttribute("data-session-id", s.session_id);
      item.setAttribute("data-testid", "session-item");
      if (s.session_id === state.sessionId) item.classList.add("active");
      item.appendChild(el("span", "session-title", s.title || "（无标题）"));
      var meta = el("span", "session-meta");
      meta.appendChild(el("span", "session-time", formatTime(s.updated_at || s.created_at)));
      if (s.channel && s.channel !== "web") meta.appendChild(el("span", "session-channel", CHANNELS[s.channel] || s.channel));
      if (s.turns != null) meta.appendChild(el("span", "session-turns", s.turns + " 轮"));
      item.appendChild(meta);
      item.addEventListener("click", function () { openSession(s.session_id); });
      list.appendChild(item);
    });
  }

  function markActiveSession() {
    Array.prototype.forEach.call(document.querySelectorAll(".session-item"), function (item) {
      item.classList.toggle("active", item.getAttribute("data-session-id") === state.sessionId);
    });
  }

  function stopStreaming() {
    if (state.streaming) state.streaming.abort();
    state.streaming = null;
    setBusy(false);
  }

  function clearMessages() {
    var box = $("messages");
    Array.prototype.slice.call(box.children).forEach(function (child) {
      if (child.id !== "empty-state") box.removeChild(child);
    });
    $("empty-state").hidden = false;
  }

  function newChat() {
    stopStreaming();
    state.sessionId = null;
    clearMessages();
    markActiveSession();
    document.body.classList.remove("sidebar-open");
    $("message").value = "";
    autosize();
    $("message").focus();
  }

  async function openSession(sessionId) {
    stopStreaming();
    document.body.classList.remove("sidebar-open");
    clearMessages();
    $("empty-state").hidden = true;
    var loading = el("p", "loading", "正在加载会话…");
    $("messages").appendChild(loading);
    state.sessionId = sessionId;
    markActiveSession();
    var data;
    try {
      data = await api("/api/sessions/" + encodeURIComponent(sessionId));
    } catch (err) {
      loading.remove();
      if (err.status !== 401) $("messages").appendChild(el("p", "form-error", "无法打开该会话：" + err.message));
      return;
    }
    if (state.sessionId !== sessionId) return;  // another conversation was chosen meanwhile
    loading.remove();
    (data.turns || []).forEach(function (turn) {
      addQuestion(turn.question, turn.created_at);
      var view = addAnswer();
      view.finish({ turn_id: turn.turn_id, route: turn.route, answer: turn.answer, citations: turn.citations,
                    data: turn.data, session_id: data.session_id }, turn.feedback);
    });
    if (!(data.turns || []).length) $("empty-state").hidden = false;
    scrollToBottom(true);
  }

  function scrollToBottom(force) {
    var box = $("messages");
    if (force || box.scrollHeight - box.scrollTop - box.clientHeight < 160) box.scrollTop = box.scrollHeight;
  }

  function addQuestion(text, when) {
    $("empty-state").hidden = true;
    var row = el("div", "turn-question");
    var bubble = el("div", "question", text);
    bubble.setAttribute("data-testid", "question");
    row.appendChild(bubble);
    if (when) row.appendChild(el("div", "question-time", formatTime(when)));
    $("messages").appendChild(row);
    scrollToBottom(true);
  }

  /* ---------- asking ---------- */

  function setBusy(busy) {
    $("send").disabled = busy;
    $("send").textContent = busy ? "回答中…" : "发送";
    $("composer").classList.toggle("busy", busy);
  }

  async function send(text) {
    text = (text || "").trim();
    if (!text || state.streaming) return;
    addQuestion(text);
    var view = addAnswer();
    view.setPending(true);
    $("message").value = "";
    autosize();
    var ctrl = new AbortController();
    state.streaming = ctrl;
    setBusy(true);
    var buffer = "";
    var final = null;
    var failed = false;
    try {
      var resp = await api("/api/chat/stream", {
        method: "POST", raw: true, signal: ctrl.signal, headers: { Accept: "text/event-stream" },
        body: { message: text, session_id: state.sessionId }
      });
      await readSse(resp, function (event, data) {
        if (state.streaming !== ctrl) return;
        if (event === "route" && data) {
          view.setRoute(data.route, data.route_name);
          if (data.session_id && !state.sessionId) state.sessionId = data.session_id;
        } else if (event === "tools") {
          view.setStatus(Array.isArray(data) && data.length ? "正在查询…" : "正在整理回答…");
        } else if (event === "delta" && data) {
          buffer += data.text || "";
          view.setText(buffer);
        } else if (event === "answer" && data) {
          final = data;
          if (data.session_id) state.sessionId = data.session_id;
          view.finish(data, null);
        } else if (event === "error") {
          failed = true;
          view.fail((data && data.error && data.error.message) || "回答失败，请稍后再试");
        }
      });
      if (!final && !failed && state.streaming === ctrl) {
        view.fail("连接已中断，没有收到完整的回答，请重试");
      }
    } catch (err) {
      if (err && err.name === "AbortError") {
        view.fail("已停止");
      } else if (err && err.status === 401) {
        /* signOut() has already returned to the sign-in screen */
      } else {
        view.fail((err && err.message) || "回答失败，请稍后再试");
      }
    } finally {
      if (state.streaming === ctrl) {
        state.streaming = null;
        setBusy(false);
      }
    }
    if (final) {
      markActiveSession();
      refreshSessions();
    }
  }

  /* ---------- one answer ---------- */

  function addAnswer() {
    var uid = "a" + (++state.answers);
    var article = el("article", "answer");
    article.id = uid;
    article.setAttribute("data-testid", "answer");
    var head = el("div", "answer-head");
    var badge = el("span", "route-badge");
    badge.setAttribute("data-testid", "route-badge");
    badge.hidden = true;
    var status = el("span", "answer-status");
    head.appendChild(badge);
    head.appendChild(status);
    var body = el("div", "answer-body markdown");
    body.setAttribute("data-testid", "answer-body");
    var extra = el("div", "answer-blocks");
    var cites = el("div", "answer-citations");
    cites.hidden = true;
    var error = el("div", "answer-error");
    error.setAttribute("role", "alert");
    error.hidden = true;
    [head, body, extra, cites, error].forEach(function (n) { article.appendChild(n); });
    $("messages").appendChild(article);
    scrollToBottom(true);

    var frame = 0;
    var pendingText = null;
    var finished = false;

    function setRoute(route, name) {
      badge.textContent = routeName(route, name);
      badge.setAttribute("data-route", route || "");
      badge.hidden = !badge.textContent;
    }

    function setStatus(text) {
      status.textContent = text || "";
    }

    function setPending(on) {
      article.classList.toggle("pending", on);
      if (on) {
        body.textContent = "";
        var dots = el("span", "typing");
        dots.setAttribute("aria-label", "正在思考");
        for (var i = 0; i < 3; i++) dots.appendChild(el("i"));
        body.appendChild(dots);
        setStatus("正在思考…");
      }
    }

    function setText(text) {  // progressive rendering, at most once a frame
      pendingText = text;
      if (frame) return;
      frame = requestAnimationFrame(function () {
        frame = 0;
        if (finished || pendingText == null) return;
        body.innerHTML = md.render(pendingText);
        body.appendChild(el("span", "caret"));
        scrollToBottom(false);
      });
    }

    function finish(answer, feedback) {
      finished = true;
      if (frame) cancelAnimationFrame(frame);
      article.classList.remove("pending");
      setStatus("");
      setRoute(answer.route, ROUTE_NAMES[answer.route]);
      if (answer.turn_id != null) article.setAttribute("data-turn-id", String(answer.turn_id));
      body.innerHTML = md.render(answer.answer || "");
      var citations = Array.isArray(answer.citations) ? answer.citations : [];
      linkCitationMarkers(body, citations, uid);
      extra.textContent = "";
      var display = answer.data && typeof answer.data === "object" ? answer.data.display : null;
      if (Array.isArray(display)) extra.appendChild(blocks.render(display));
      renderCitations(cites, citations, uid);
      if (answer.turn_id != null) article.appendChild(feedbackBar(answer.turn_id, feedback));
      scrollToBottom(false);
    }

    function fail(message) {
      finished = true;
      if (frame) cancelAnimationFrame(frame);
      article.classList.remove("pending");
      setStatus("");
      if (pendingText) body.innerHTML = md.render(pendingText);
      else body.textContent = "";
      if (message) {
        error.textContent = message;
        error.hidden = false;
      }
      article.classList.add("failed");
      scrollToBottom(false);
    }

    return { setRoute: setRoute, setStatus: setStatus, setPending: setPending, setText: setText,
             finish: finish, fail: fail, element: article };
  }

  /* [n] in the text links to citation n of this answer; numbers without a citation stay text. */
  function linkCitationMarkers(body, citations, uid) {
    Array.prototype.forEach.call(body.querySelectorAll("a.cite-ref"), function (a) {
      var n = Number(a.getAttribute("data-cite"));
      if (!(n >= 1 && n <= citations.length)) {
        a.replaceWith(document.createTextNode(String(a.textContent)));
        return;
      }
      a.href = "#" + uid + "-cite-" + n;
      a.title = citations[n - 1].title || "引用 " + n;
      a.addEventListener("click", function (e) {
        e.preventDefault();
        var item = document.getElementById(uid + "-cite-" + n);
        if (!item) return;
        item.scrollIntoView({ block: "nearest", behavior: "smooth" });
        item.classList.remove("flash");
        void item.offsetWidth;  // restart the animation
        item.classList.add("flash");
      });
    });
  }

  function renderCitations(box, citations, uid) {
    box.textContent = "";
    if (!citations.length) {
      box.hidden = true;
      return;
    }
    box.appendChild(el("div", "citations-title", "引用来源"));
    var list = el("ol", "citation-list");
    citations.forEach(function (c, i) {
      c = c || {};
      var li = el("li", "citation-item");
      li.id = uid + "-cite-" + (i + 1);
      var button = el("button", "citation");
      button.type = "button";
      button.setAttribute("data-testid", "citation");
      if (c.chunk_id != null) button.setAttribute("data-chunk-id", String(c.chunk_id));
      button.appendChild(el("span", "cite-num", "[" + (i + 1) + "]"));
      var text = el("span", "cite-text");
      text.appendChild(el("span", "cite-title", c.title || c.path || "未命名文件"));
      if (c.heading) text.appendChild(el("span", "cite-heading", c.heading));
      var meta = [];
      if (c.doc_type) meta.push(DOC_TYPES[c.doc_type] || c.doc_type);
      if (c.page != null && c.page !== "") meta.push("第 " + c.page + " 页");
      if (meta.length) text.appendChild(el("span", "cite-meta", meta.join(" · ")));
      button.appendChild(text);
      button.addEventListener("click", function () { openPassage(c); });
      li.appendChild(button);
      list.appendChild(li);
    });
    box.appendChild(list);
    box.hidden = false;
  }

  /* ---------- the passage modal ---------- */

  function passageMeta(p) {
    var parts = [];
    if (p.doc_type) parts.push(DOC_TYPES[p.doc_type] || p.doc_type);
    if (p.heading) parts.push(p.heading);
    if (p.page != null && p.page !== "") parts.push("第 " + p.page + " 页");
    if (p.path) parts.push(p.path);
    return parts.join(" · ");
  }

  async function openPassage(citation) {
    var modal = $("passage-modal");
    var body = $("passage-body");
    state.lastFocus = document.activeElement;
    $("passage-title").textContent = citation.title || citation.path || "引用原文";
    $("passage-meta").textContent = passageMeta(citation);
    body.textContent = "";
    modal.hidden = false;
    document.body.classList.add("modal-open");
    $("passage-close").focus();
    if (citation.chunk_id == null) {
      body.appendChild(el("p", "passage-note", "该引用没有可展开的原文段落，以下为摘录："));
      body.appendChild(el("div", "passage-text", citation.snippet || "（无摘录）"));
      return;
    }
    var loading = el("p", "loading", "正在加载原文…");
    body.appendChild(loading);
    var chunkId = citation.chunk_id;
    modal.setAttribute("data-chunk-id", String(chunkId));
    var p;
    try {
      p = await api("/api/passages/" + encodeURIComponent(chunkId));
    } catch (err) {
      if (modal.getAttribute("data-chunk-id") !== String(chunkId)) return;
      body.textContent = "";
      if (err.status === 401) return;
      body.appendChild(el("p", "form-error", err.message));
      if (citation.snippet) {
        body.appendChild(el("p", "passage-note", "摘录："));
        body.appendChild(el("div", "passage-text", citation.snippet));
      }
      return;
    }
    if (modal.hidden || modal.getAttribute("data-chunk-id") !== String(chunkId)) return;
    $("passage-title").textContent = p.title || citation.title || "引用原文";
    $("passage-meta").textContent = passageMeta(p);
    body.textContent = "";
    if (p.before) body.appendChild(el("div", "passage-context passage-before", p.before));
    var main = el("div", "passage-text", p.text || "");
    main.setAttribute("data-testid", "passage-text");
    body.appendChild(main);
    if (p.after) body.appendChild(el("div", "passage-context passage-after", p.after));
  }

  function closePassage() {
    var modal = $("passage-modal");
    if (modal.hidden) return;
    modal.hidden = true;
    modal.removeAttribute("data-chunk-id");
    document.body.classList.remove("modal-open");
    if (state.lastFocus && state.lastFocus.focus) state.lastFocus.focus();
    state.lastFocus = null;
  }

  /* ---------- feedback ---------- */

  function feedbackBar(turnId, stored) {
    var bar = el("div", "feedback");
    bar.setAttribute("data-turn-id", String(turnId));
    var row = el("div", "feedback-row");
    row.appendChild(el("span", "feedback-label", "这个回答有帮助吗？"));
    var up = el("button", "feedback-btn feedback-up", "👍");
    up.type = "button";
    up.title = "有用";
    up.setAttribute("aria-label", "有用");
    up.setAttribute("data-testid", "feedback-up");
    var down = el("button", "feedback-btn feedback-down", "👎");
    down.type = "button";
    down.title = "没用";
    down.setAttribute("aria-label", "没用");
    down.setAttribute("data-testid", "feedback-down");
    var status = el("span", "feedback-status");
    status.setAttribute("data-testid", "feedback-status");
    [up, down, status].forEach(function (n) { row.appendChild(n); });
    bar.appendChild(row);

    var form = el("form", "feedback-form");
    form.hidden = true;
    var comment = el("textarea", "feedback-comment");
    comment.rows = 2;
    comment.maxLength = 2000;
    comment.placeholder = "哪里不对或缺了什么？您的意见会帮助我们改进（可选）";
    comment.setAttribute("data-testid", "feedback-comment");
    var actions = el("div", "feedback-actions");
    var submit = el("button", "btn btn-primary btn-small feedback-submit", "提交反馈");
    submit.type = "submit";
    submit.setAttribute("data-testid", "feedback-submit");
    var cancel = el("button", "btn btn-ghost btn-small feedback-cancel", "取消");
    cancel.type = "button";
    actions.appendChild(submit);
    actions.appendChild(cancel);
    form.appendChild(comment);
    form.appendChild(actions);
    bar.appendChild(form);
    var note = el("div", "feedback-note");
    note.hidden = true;
    bar.appendChild(note);

    function mark(rating, text) {
      up.classList.toggle("selected", rating === 1);
      down.classList.toggle("selected", rating === -1);
      up.setAttribute("aria-pressed", String(rating === 1));
      down.setAttribute("aria-pressed", String(rating === -1));
      status.textContent = "已收到反馈";
      status.classList.remove("error");
      note.textContent = text ? "您的意见：" + text : "";
      note.hidden = !text;
    }

    async function rate(rating, text) {
      up.disabled = down.disabled = submit.disabled = true;
      status.classList.remove("error");
      status.textContent = "正在提交…";
      try {
        await api("/api/feedback", { method: "POST", body: { turn_id: turnId, rating: rating, comment: text || "" } });
        form.hidden = true;
        mark(rating, text);
      } catch (err) {
        status.textContent = err.status === 401 ? "" : "提交失败：" + err.message;
        status.classList.add("error");
      } finally {
        up.disabled = down.disabled = submit.disabled = false;
      }
    }

    up.addEventListener("click", function () { rate(1, ""); });
    down.addEventListener("click", function () {
      form.hidden = false;
      comment.focus();
    });
    cancel.addEventListener("click", function () { form.hidden = true; });
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      rate(-1, comment.value.trim());
    });
    if (stored && (stored.rating === 1 || stored.rating === -1)) mark(stored.rating, stored.comment);
    return bar;
  }

  /* ---------- wiring ---------- */

  function autosize() {
    var box = $("message");
    box.style.height = "auto";
    box.style.height = Math.min(box.scrollHeight, 200) + "px";
  }

  function init() {
    $("signin-form").addEventListener("submit", async function (e) {
      e.preventDefault();
      var token = $("token").value.trim();
      if (!token) {
        $("signin-error").textContent = "请输入个人令牌";
        $("signin-error").hidden = false;
        return;
      }
      $("signin").disabled = true;
      $("signin").textContent = "正在验证…";
      try {
        await signIn(token);
      } catch (err) {
        if (err.status !== 401) {
          state.token = null;
          showSignin(err.message);
        }
      }
    });
    $("logout").addEventListener("click", function () { signOut(""); });
    $("new-chat").addEventListener("click", newChat);
    $("toggle-sidebar").addEventListener("click", function () { document.body.classList.toggle("sidebar-open"); });
    $("composer").addEventListener("submit", function (e) {
      e.preventDefault();
      send($("message").value);
    });
    $("message").addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        send($("message").value);
      }
    });
    $("message").addEventListener("input", autosize);
    // An alert block's action buttons ("确认 #12" …) send their text as a message.
    $("messages").addEventListener("puyi:ask", function (e) {
      if (e.detail && e.detail.text) send(e.detail.text);
    });
    window.addEventListener("hashchange", function () {
      if (takeAlertLink() && state.me) {
        newChat();
        askPending();
      }
    });
    Array.prototype.forEach.call(document.querySelectorAll("#examples .example"), function (b) {
      b.addEventListener("click", function () { send(b.textContent); });
    });
    $("passage-modal").addEventListener("click", function (e) {
      if (e.target && e.target.getAttribute && e.target.getAttribute("data-close")) closePassage();
    });
    document.addEventListener("keydown", function (e) {
      if (e.key === "Escape") closePassage();
    });

    var saved = null;
    try { saved = localStorage.getItem(TOKEN_KEY); } catch (ignored) { /* storage blocked */ }
    // A sign-in link (`puyi serve --sign-in`) carries the token in the fragment, which never
    // reaches the server's logs; take it and clear it from the address bar.
    var linked = /(?:^#|&)token=([^&]+)/.exec(window.location.hash || "");
    if (linked) {
      saved = decodeURIComponent(linked[1]);
    }
    takeAlertLink();  // asked after sign-in, whichever way it happens
    if (linked) history.replaceState(null, "", window.location.pathname + window.location.search);
    if (!saved) {
      showSignin("");
      return;
    }
    signIn(saved).catch(function (err) {
      if (err.status !== 401) {
        // The server could not be reached: keep the token and let the user try again.
        state.token = null;
        showSignin(err.message);
      }
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
