// The taskbus dashboard: reads the REST API as the identity of the session cookie, and follows
// /events (server-sent events) to update without a reload. No build step, no library. Every
// value from the server is put in the page as text (textContent), never as HTML.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const FEED_MAX = 60; // live events kept in the feed
  const HISTORY_LIMIT = 25; // runs shown in a task's history
  const REFRESH_MS = 300; // events close together cause one reload, not one each
  const TICK_MS = 15000; // relative times ("in 3m") are redrawn this often

  const state = {
    identity: null, // who the page is signed in as
    tasks: new Map(), // task_id -> task (with next_fire and status)
    selected: null, // the task_id whose history is shown
    history: [],
    run: null, // the execution_id whose steps and logs are shown
    source: null, // the EventSource
    pending: new Set(), // what the next refresh reloads: 'tasks', 'history', 'run', 'health'
    timer: null,
  };

  // ------------------------------------------------------------ the page's nodes

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'text') node.textContent = String(value);
      else if (key === 'class') node.className = value;
      else if (key === 'dataset') Object.assign(node.dataset, value);
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child !== undefined && child !== null) node.append(child);
    }
    return node;
  }

  function show(id, visible) {
    $(id).hidden = !visible;
  }

  function say(text, kind) {
    const message = $('message');
    message.textContent = text;
    message.dataset.kind = kind || 'info';
  }

  // ------------------------------------------------------------ times, in the task's zone

  const formats = new Map();

  function format(zone) {
    const key = zone || 'UTC';
    if (!formats.has(key)) {
      const options = {
        year: 'numeric', month: 'short', day: '2-digit',
        hour: '2-digit', minute: '2-digit', second: '2-digit',
        hourCycle: 'h23', timeZoneName: 'short',
      };
      let made;
      try {
        made = new Intl.DateTimeFormat('en-GB', { ...options, timeZone: key });
      } catch (error) { // a zone this browser does not know: say so, in UTC
        made = new Intl.DateTimeFormat('en-GB', { ...options, timeZone: 'UTC' });
      }
      formats.set(key, made);
    }
    return formats.get(key);
  }

  function instant(text) {
    if (!text) return null;
    const moment = new Date(text);
    return Number.isNaN(moment.getTime()) ? null : moment;
  }

  function when(text, zone) {
    const moment = instant(text);
    return moment ? format(zone).format(moment) : '—';
  }

  function relative(text) {
    const moment = instant(text);
    if (!moment) return '';
    const seconds = Math.round((moment.getTime() - Date.now()) / 1000);
    const size = Math.abs(seconds);
    if (size === 0) return 'now';
    let span;
    if (size < 60) span = `${size}s`;
    else if (size < 3600) span = `${Math.round(size / 60)}m`;
    else if (size < 86400) span = `${Math.round(size / 3600)}h`;
    else span = `${Math.round(size / 86400)}d`;
    return seconds > 0 ? `in ${span}` : `${span} ago`;
  }

  function timeCell(text, zone) {
    const moment = instant(text);
    if (!moment) return el('td', { class: 'quiet', text: '—' });
    return el('td', {},
      el('time', { datetime: moment.toISOString(), text: format(zone).format(moment) }),
      el('small', { text: relative(text) }));
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return '—';
    if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const minutes = Math.floor(seconds / 60);
    return `${minutes}m ${Math.round(seconds - minutes * 60)}s`;
  }

  // ------------------------------------------------------------ the REST API

  class ApiError extends Error {
    constructor(status, body) {
      const reason = body && (body.reason || body.detail);
      super(reason ? String(reason) : `HTTP ${status}`);
      this.status = status;
      this.code = body && body.code;
    }
  }

  async function api(method, path, body) {
    const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    if (response.status !== 204) {
      data = await response.json().catch(() => null);
    }
    if (response.status === 401) {
      signedOut('');
      throw new ApiError(401, data);
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  // Relative to the page's own address: the page assumes no path of its own.
  const path = (...parts) => parts.map(encodeURIComponent).join('/');

  // ------------------------------------------------------------ signing in and out

  async function start() {
    $('login-form').addEventListener('submit', signIn);
    $('logout').addEventListener('click', signOut);
    $('task-rows').addEventListener('click', onTaskClick);
    $('history-rows').addEventListener('click', onHistoryClick);
    setInterval(drawTasks, TICK_MS);
    let session = null;
    try {
      session = await api('GET', 'dashboard/session');
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) {
        signedOut(`cannot reach taskbus: ${error.message}`);
      }
      return;
    }
    if (session && session.identity) signedIn(session.identity);
    else signedOut('');
  }

  async function signIn(event) {
    event.preventDefault();
    const input = $('token');
    $('login-error').textContent = '';
    try {
      const session = await api('POST', 'session', { token: input.value.trim() });
      input.value = '';
      signedIn(session && session.identity);
    } catch (error) {
      $('login-error').textContent = error.status === 401
        ? 'That token is not valid: it is unknown or was revoked.'
        : `Cannot sign in: ${error.message}`;
    }
  }

  async function signOut() {
    try {
      await api('DELETE', 'session');
    } finally {
      signedOut('');
    }
  }

  function signedIn(identity) {
    state.identity = identity || '?';
    $('who').textContent = identity ? `signed in as ${identity}` : '';
    show('login', false);
    show('logout', true);
    show('board', true);
    follow();
    refresh('tasks', 'health');
  }

  function signedOut(why) {
    state.identity = null;
    if (state.source) {
      state.source.close();
      state.source = null;
    }
    setLive('off', 'not live');
    $('who').textContent = '';
    show('board', false);
    show('logout', false);
    show('login', true);
    $('login-error').textContent = why;
    $('token').focus();
  }

  // ------------------------------------------------------------ live updates

  function setLive(which, text) {
    const badge = $('live');
    badge.dataset.state = which;
    badge.textContent = text;
  }

  function follow() {
    if (state.source || !state.identity) return;
    setLive('connecting', 'connecting…');
    const source = new EventSource('events');
    state.source = source;
    source.addEventListener('ready', () => {
      setLive('live', 'live');
      // What happened between the page's reads and the subscription: read it all again.
      refresh('tasks', 'health', 'history', 'run');
    });
    source.addEventListener('status', (event) => onStatus(JSON.parse(event.data)));
    source.addEventListener('dead', (event) => onDead(JSON.parse(event.data)));
    source.addEventListener('health', (event) => onHealth(JSON.parse(event.data)));
    source.addEventListener('fault', (event) => onFault(JSON.parse(event.data)));
    source.addEventListener('unavailable', (event) => {
      setLive('connecting', 'bus unavailable, retrying…');
      say(JSON.parse(event.data).reason, 'error');
    });
    source.addEventListener('error', () => {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (the session ended, or too many streams): ask who we are, then try again.
        state.source = null;
        setLive('off', 'not live');
        api('GET', 'dashboard/session').then((session) => {
          if (session && session.identity) setTimeout(follow, 2000);
          else signedOut('Your session ended: sign in again.');
        }, () => setTimeout(follow, 2000));
      } else {
        setLive('connecting', 'reconnecting…');
      }
    });
  }

  function onStatus(event) {
    const payload = event.payload || {};
    addFeed(event.at, payload.task_id, payload.state, describe(payload));
    refresh('tasks');
    if (payload.task_id === state.selected) refresh('history');
    if (state.run && payload.execution_id === state.run) refresh('run');
  }

  function onDead(event) {
    const payload = event.payload || {};
    addFeed(event.at, payload.task_id, 'dead', payload.last_error || payload.reason || '');
    refresh('tasks');
  }

  function onHealth(event) {
    const payload = event.payload || {};
    if (payload.status && payload.actors) drawHealth(payload);
    else refresh('health');
  }

  function onFault(event) {
    const payload = event.payload || {};
    addFeed(event.at, payload.sender || event.sender, 'error', payload.reason || '');
  }

  function describe(payload) {
    const parts = [];
    if (payload.attempt > 1) parts.push(`attempt ${payload.attempt}`);
    if (payload.reason) parts.push(payload.reason);
    if (payload.error) parts.push(payload.error);
    if (payload.state === 'progress' && typeof payload.fraction === 'number') {
      parts.push(`${Math.round(payload.fraction * 100)}% ${payload.note || ''}`.trim());
    }
    return parts.join(' · ');
  }

  function addFeed(at, who, what, detail) {
    const list = $('feed-items');
    const task = state.tasks.get(who);
    const moment = instant(at) || new Date();
    const item = el('li', { dataset: { task: who || '', state: what || '' } },
      el('time', { datetime: moment.toISOString(),
        text: format(task ? task.timezone : 'UTC').format(moment) }),
      el('span', { class: 'mono', text: who || '?' }), ' ',
      el('span', { class: `pill state-${what}`, text: what || '?' }),
      detail ? ` ${detail}` : '');
    list.prepend(item);
    while (list.children.length > FEED_MAX) list.lastElementChild.remove();
  }

  // ------------------------------------------------------------ reading and drawing

  function refresh(...what) {
    for (const part of what) state.pending.add(part);
    if (state.timer === null) state.timer = setTimeout(reload, REFRESH_MS);
  }

  async function reload() {
    const what = new Set(state.pending);
    state.pending.clear();
    state.timer = null;
    const reads = [];
    if (what.has('tasks')) reads.push(loadTasks());
    if (what.has('health')) reads.push(loadHealth());
    if (what.has('history') && state.selected) reads.push(loadHistory(state.selected));
    if (what.has('run') && state.run) reads.push(loadRun(state.run));
    const results = await Promise.allSettled(reads);
    const failed = results.find((result) => result.status === 'rejected');
    if (failed && failed.reason.status !== 401) say(failed.reason.message, 'error');
  }

  async function loadTasks() {
    const reply = await api('GET', 'tasks?with_status=true');
    const tasks = Array.isArray(reply) ? reply : reply.tasks;
    state.tasks = new Map(tasks.map((task) => [task.task_id, task]));
    drawTasks();
    if (state.selected && state.tasks.has(state.selected)) drawFacts();
  }

  function taskState(task) {
    if (task.paused) return 'paused';
    return task.enabled ? 'enabled' : 'disabled';
  }

  function drawTasks() {
    const rows = $('task-rows');
    const tasks = [...state.tasks.values()].sort((a, b) => a.task_id.localeCompare(b.task_id));
    rows.replaceChildren(...tasks.map((task) => keep(rows, taskRow(task))));
    $('task-count').textContent = `(${tasks.length})`;
    show('no-tasks', tasks.length === 0);
  }

  // The row on the page if it shows the same as ``fresh``, else ``fresh``: a row being clicked
  // or focused is not swapped for an identical one.
  function keep(rows, fresh) {
    const id = fresh.dataset.taskId;
    const shown = [...rows.children].find((row) => row.dataset.taskId === id);
    return shown && shown.isEqualNode(fresh) ? shown : fresh;
  }

  function taskRow(task) {
    const status = task.status || {};
    const zone = task.timezone;
    const which = taskState(task);
    const last = status.last_run || task.last_run;
    const lastCell = timeCell(last, zone);
    if (status.running > 0) lastCell.append(el('small', { class: 'state-running', text: 'running now' }));
    else if (status.last_error) lastCell.append(el('small', { class: 'error', text: status.last_error }));
    const runs = status.runs === undefined ? '' : String(status.runs);
    const failed = status.failed ? ` (${status.failed} failed)` : '';
    const buttons = el('td', { class: 'actions' },
      el('button', { type: 'button', dataset: { action: 'trigger' }, title: 'run it now', text: 'Trigger' }),
      task.enabled
        ? el('button', { type: 'button', dataset: { action: 'disable' }, text: 'Disable' })
        : el('button', { type: 'button', dataset: { action: 'enable' }, text: 'Enable' }),
      task.paused
        ? el('button', { type: 'button', dataset: { action: 'unpause' }, text: 'Unpause' })
        : el('button', { type: 'button', dataset: { action: 'pause' }, text: 'Pause' }));
    return el('tr', { dataset: { taskId: task.task_id }, class: task.task_id === state.selected ? 'selected' : null },
      el('td', {},
        el('button', { type: 'button', class: 'link mono', dataset: { action: 'open' }, text: task.task_id }),
        el('small', { class: 'mono', text: task.task_class })),
      el('td', {}, el('span', { class: 'mono', text: task.schedule }), el('small', { text: zone })),
      el('td', {}, el('span', { class: `pill state-${which}`, text: which }),
        task.note ? el('small', { text: task.note }) : null),
      lastCell,
      timeCell(which === 'enabled' ? (task.next_fire || task.next_run) : null, zone),
      el('td', { class: 'num', text: runs + failed }),
      buttons);
  }

  async function onTaskClick(event) {
    const button = event.target.closest('button[data-action]');
    if (!button) return;
    const taskId = button.closest('tr').dataset.taskId;
    const action = button.dataset.action;
    if (action === 'open') {
      select(taskId);
      return;
    }
    button.disabled = true;
    try {
      const reply = await api('POST', `${path('tasks', taskId, action)}`, action === 'pause' ? {} : undefined);
      say(action === 'trigger' ? `triggered ${taskId}: run ${reply.execution_id}` : `${action}d ${taskId}`);
      if (action === 'trigger') select(taskId);
      refresh('tasks', 'history');
    } catch (error) {
      if (error.status !== 401) say(`${action} ${taskId}: ${error.message}`, 'error');
    } finally {
      button.disabled = false;
    }
  }

  function select(taskId) {
    if (state.selected !== taskId) {
      state.selected = taskId;
      state.history = [];
      $('history-rows').replaceChildren();
      closeRun();
    }
    $('detail-id').textContent = taskId;
    show('task-detail', true);
    drawFacts();
    drawTasks();
    refresh('history');
  }

  function drawFacts() {
    const task = state.tasks.get(state.selected);
    if (!task) return;
    const status = task.status || {};
    const facts = [`${task.task_class}`, `schedule ${task.schedule} in ${task.timezone}`, `owner ${task.owner}`];
    if (status.runs !== undefined) facts.push(`${status.runs} runs, ${status.succeeded || 0} succeeded, ${status.failed || 0} failed`);
    $('detail-facts').textContent = facts.join(' · ');
  }

  async function loadHistory(taskId) {
    const reply = await api('GET', `${path('tasks', taskId, 'history')}?limit=${HISTORY_LIMIT}`);
    if (taskId !== state.selected) return;
    state.history = Array.isArray(reply) ? reply : reply.executions;
    const zone = (state.tasks.get(taskId) || {}).timezone;
    $('history-rows').replaceChildren(...state.history.map((run) => historyRow(run, zone)));
    show('no-history', state.history.length === 0);
  }

  function outcome(run) {
    if (run.success === true) return 'succeeded';
    if (run.success === false) return 'failed';
    return run.completed_at ? 'ended' : 'running';
  }

  function historyRow(run, zone) {
    const result = outcome(run);
    return el('tr', { dataset: { executionId: run.execution_id, outcome: result }, class: run.execution_id === state.run ? 'selected' : null },
      el('td', {}, el('button', { type: 'button', class: 'link', dataset: { action: 'run' }, text: when(run.scheduled_at, zone) })),
      timeCell(run.run_started_at || run.started_at, zone),
      el('td', {}, el('span', { class: `pill state-${result}`, text: result }),
        run.retry_count ? el('small', { text: `retry ${run.retry_count}` }) : null),
      el('td', { class: 'num', text: duration(run.duration_seconds) }),
      el('td', { text: run.trigger || '—' }),
      el('td', { class: 'error-text', text: run.error_message || '' }));
  }

  function onHistoryClick(event) {
    const button = event.target.closest('button[data-action="run"]');
    if (!button) return;
    state.run = button.closest('tr').dataset.executionId;
    $('run-id').textContent = state.run;
    show('run-detail', true);
    for (const row of $('history-rows').children) {
      row.classList.toggle('selected', row.dataset.executionId === state.run);
    }
    refresh('run');
  }

  function closeRun() {
    state.run = null;
    show('run-detail', false);
  }

  async function loadRun(executionId) {
    const reply = await api('GET', path('runs', executionId));
    if (executionId !== state.run) return;
    const run = reply.run || {};
    const zone = (state.tasks.get(run.task_id) || {}).timezone;
    const facts = [
      ['task', run.task_id], ['outcome', outcome(run)], ['due', when(run.scheduled_at, zone)],
      ['started', when(run.run_started_at || run.started_at, zone)],
      ['finished', when(run.completed_at, zone)], ['duration', duration(run.duration_seconds)],
      ['trigger', run.trigger || '—'], ['attempt', String((run.retry_count || 0) + 1)],
    ];
    if (run.error_message) facts.push(['error', run.error_message]);
    if (run.result !== null && run.result !== undefined) facts.push(['result', JSON.stringify(run.result)]);
    $('run-facts').replaceChildren(...facts.flatMap(([name, value]) => [el('dt', { text: name }), el('dd', { text: value })]));
    const steps = reply.steps || [];
    $('step-rows').replaceChildren(...steps.map((step) => el('tr', { dataset: { step: step.name } },
      el('td', { class: 'mono', text: step.name }),
      el('td', {}, el('span', { class: `pill state-${step.status}`, text: step.status })),
      el('td', { class: 'num', text: String(step.attempts ?? '') }),
      el('td', { text: when(step.started_at, zone) }),
      el('td', { text: when(step.finished_at, zone) }),
      el('td', { class: 'error-text', text: step.error || '' }))));
    show('no-steps', steps.length === 0);
    const logs = run.logs || [];
    $('run-logs').replaceChildren(...logs.map((line) => el('li', {},
      el('time', { text: when(line.at, zone) }),
      el('span', { class: 'level', text: line.level || '' }),
      el('span', { text: line.message || '' }))));
    show('no-logs', logs.length === 0);
  }

  async function loadHealth() {
    drawHealth(await api('GET', 'health'));
  }

  function drawHealth(health) {
    const badge = $('health');
    badge.dataset.status = health.status || 'unknown';
    badge.textContent = `health: ${health.status || 'unknown'}`;
    const troubled = Object.entries(health.actors || {}).filter(
      ([, actor]) => actor && actor.status && actor.status !== 'healthy');
    $('health-detail').replaceChildren(...troubled.map(([name, actor]) =>
      el('li', { text: `${name}: ${actor.status}${actor.reasons && actor.reasons.length ? ' — ' + actor.reasons.join('; ') : ''}` })));
  }

  document.addEventListener('DOMContentLoaded', start);
})();
