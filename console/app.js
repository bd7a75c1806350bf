// The relaymesh operator console: plain JavaScript over the node's own API, no libraries, no
// network beyond the node. Everything shown that came from the mesh is set as text, never as
// markup. Live views follow two server-sent event streams: /v1/status/stream (status and the
// sent list) and /v1/inbox/stream.
'use strict';

const S = {
  csrf: '',
  status: null,
  sent: [],
  inbox: new Map(), // cursor -> message
  readCursor: 0,
  selected: null,
  streams: [],
  ownSeen: new Map(), // this node's links seen up, "a|b|medium" -> {a, b, medium}
  ownDown: [], // this node's links known to be down: {peer, medium}
  overdue: [], // GET /v1/overdue's list
  replaces: null, // the id Compose replaces
};

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// ---- talking to the node ----------------------------------------------------------------

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (S.csrf) headers['X-CSRF-Token'] = S.csrf;
  const r = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let doc = null;
  try { doc = await r.json(); } catch (_) { /* no body */ }
  if (r.status === 401 && path !== '/v1/login') { showLogin('Your session ended: log in again.'); }
  if (!r.ok) throw new Error(doc && doc.error ? doc.error : `${r.status} ${r.statusText}`);
  return doc;
}

async function boot() {
  const r = await fetch('/v1/session', { credentials: 'same-origin' });
  if (r.ok) {
    const s = await r.json();
    start(s);
  } else {
    showLogin('');
  }
}

function showLogin(why) {
  for (const es of S.streams) es.close();
  S.streams = [];
  S.csrf = '';
  $('#app').hidden = true;
  $('#login').hidden = false;
  $('#logout').hidden = true;
  $('#user').textContent = '';
  setConn(false);
  $('#login-error').textContent = why || '';
  $('#login-token').focus();
}

async function login(ev) {
  ev.preventDefault();
  $('#login-error').textContent = '';
  try {
    const s = await api('POST', '/v1/login', { token: $('#login-token').value });
    $('#login-token').value = '';
    start(s);
  } catch (e) {
    $('#login-error').textContent = `Login refused: ${e.message}`;
  }
}

async function logout() {
  try { await api('POST', '/v1/logout'); } catch (_) { /* ends anyway */ }
  showLogin('Logged out.');
}

function start(session) {
  S.csrf = session.csrf || '';
  $('#login').hidden = true;
  $('#app').hidden = false;
  $('#user').textContent = session.user === 'local' ? '' : session.user;
  $('#logout').hidden = session.user === 'local';
  follow();
}

function setConn(up) {
  const c = $('#conn');
  c.textContent = up ? 'live' : 'offline';
  c.className = `conn ${up ? 'up' : 'down'}`;
}

// Live updates, in one connection (a browser allows six per host over HTTP/1.1): status,
// the sent list, overdue alarms and the inbox. An EventSource reconnects by itself; one that
// is refused (the session ended: the server ends the stream with it) sends the operator back
// to the login.
function follow() {
  for (const es of S.streams) es.close();
  S.inbox.clear();
  const live = new EventSource('/v1/status/stream?sent=100&inbox=200');
  live.addEventListener('status', (e) => { setConn(true); onStatus(JSON.parse(e.data)); });
  live.addEventListener('sent', (e) => { S.sent = JSON.parse(e.data).messages; renderSent(); });
  live.addEventListener('overdue', (e) => { S.overdue = JSON.parse(e.data).overdue; if (S.status) renderAlarms(); });
  live.addEventListener('message', (e) => { const m = JSON.parse(e.data); S.inbox.set(m.cursor, m); renderInbox(); });
  live.addEventListener('withdrawn', (e) => {
    const w = JSON.parse(e.data);
    const m = S.inbox.get(w.cursor);
    if (m) { m.withdrawn = w; renderInbox(); }
  });
  live.onerror = () => { setConn(false); recheck(); };
  S.streams = [live];
}

let rechecking = false;
async function recheck() {
  if (rechecking) return;
  rechecking = true;
  try {
    const r = await fetch('/v1/session', { credentials: 'same-origin' });
    if (r.status === 401) showLogin('Your session ended: log in again.');
    else if (S.streams[0] && S.streams[0].readyState === EventSource.CLOSED) setTimeout(follow, 2000);
  } catch (_) {
    if (S.streams[0] && S.streams[0].readyState === EventSource.CLOSED) setTimeout(follow, 2000);
  } finally {
    rechecking = false;
  }
}

function onStatus(st) {
  S.status = st;
  S.readCursor = st.inbox.next - st.inbox.unread;
  $('#node-name').textContent = st.node;
  $('#node-role').textContent = st.role;
  document.title = `relaymesh ${st.node}`;
  renderMesh();
  renderLinks();
  renderAlarms();
  renderInbox();
  fillAddresses();
}

// The views are redrawn only when what they show changed: a redraw every second would drop
// an operator's text selection and clicks.
const drawn = {};
function changed(view, data) {
  const key = JSON.stringify(data);
  if (drawn[view] === key) return false;
  drawn[view] = key;
  return true;
}

// ---- mesh -------------------------------------------------------------------------------

const COLOUR = { satellite: '#8e44ad', wireless: '#1e8449', public: '#2471a3' };
const ROLE_COLOUR = { command: '#c0392b', township: '#2e86c1', field: '#17a589', relay: '#7f8c8d' };

function renderMesh() {
  const st = S.status;
  const me = st.node;
  const roles = new Map([[me, st.role]]);
  const adj = new Map();
  const edges = new Map(); // "a|b|medium" (a < b) -> edge
  const touch = (a, b) => {
    if (!adj.has(a)) adj.set(a, new Set());
    if (!adj.has(b)) adj.set(b, new Set());
    adj.get(a).add(b); adj.get(b).add(a);
  };
  // A link is up only if every end whose advert is held here says so: an end whose advert
  // leaves the link out, or says it is down, makes it down (a stopped relay's last advert
  // still lists its links as up until it ages out).
  const advertisers = new Set(st.topology.map((l) => l.from));
  const said = new Map(st.topology.map((l) => [`${l.from}>${l.to}|${l.medium}`, l]));
  for (const l of st.topology) {
    if (!roles.has(l.from)) roles.set(l.from, l.from_role);
    const [a, b] = l.from < l.to ? [l.from, l.to] : [l.to, l.from];
    const key = `${a}|${b}|${l.medium}`;
    const own = l.from === me;
    const prev = edges.get(key);
    if (prev && prev.own) continue;
    const ends = [said.get(`${a}>${b}|${l.medium}`), said.get(`${b}>${a}|${l.medium}`)];
    const up = own ? l.up : [a, b].filter((n) => advertisers.has(n))
      .every((n) => said.get(`${n}>${n === a ? b : a}|${l.medium}`)?.up === true);
    // Only the dialling end measures the round trip (the other advertises its estimate):
    // show the smaller of the two.
    const rtts = ends.map((x) => x?.rtt_ms).filter((r) => r != null);
    const rtt = own ? l.rtt_ms : (rtts.length ? Math.min(...rtts) : null);
    edges.set(key, { a, b, medium: l.medium, up, rtt, loss: l.loss, own });
    touch(a, b);
  }
  for (const l of st.links) {
    const e = [...edges.values()].find((x) => x.own && x.medium === l.medium && (x.a === l.peer || x.b === l.peer));
    if (e) { e.inflight = l.inflight_bytes; if (e.rtt == null && l.rtt_ms != null) e.rtt = l.rtt_ms; }
    roles.set(l.peer, l.role);
  }
  // A link of this node's is up only if this node has it: one seen before (in this browser)
  // or still in a neighbour's advert, but gone here, is down.
  for (const [key, l] of S.ownSeen) {
    if (!edges.has(key)) { edges.set(key, { ...l, up: false, own: true }); touch(l.a, l.b); }
  }
  for (const [key, e] of edges) {
    if (e.a !== me && e.b !== me) continue;
    if (!e.own) { e.up = false; e.own = true; }
    if (e.up) S.ownSeen.set(key, { a: e.a, b: e.b, medium: e.medium });
  }
  S.ownDown = [...edges.values()].filter((e) => e.own && !e.up)
    .map((e) => ({ peer: e.a === me ? e.b : e.a, medium: e.medium }));
  for (const n of st.known_nodes) if (!adj.has(n)) adj.set(n, new Set());
  if (!adj.has(me)) adj.set(me, new Set());

  // Rings by hops from this node; nodes it cannot reach at all go on the outer ring.
  const depth = new Map([[me, 0]]);
  const queue = [me];
  while (queue.length) {
    const n = queue.shift();
    for (const m of [...(adj.get(n) || [])].sort()) {
      if (!depth.has(m)) { depth.set(m, depth.get(n) + 1); queue.push(m); }
    }
  }
  const maxDepth = Math.max(1, ...depth.values());
  for (const n of adj.keys()) if (!depth.has(n)) depth.set(n, maxDepth + 1);
  const rings = new Map();
  for (const [n, d] of depth) { if (!rings.has(d)) rings.set(d, []); rings.get(d).push(n); }
  // This node in the middle, its neighbours around it, and each further ring's nodes near the
  // nodes they hang off, kept apart.
  const cx = 450, cy = 300, step = Math.min(250 / Math.max(1, rings.size - 1), 140);
  const pos = new Map([[me, [cx, cy]]]);
  const angle = new Map();
  for (const d of [...rings.keys()].sort((a, b) => a - b)) {
    if (d === 0) continue;
    const nodes = rings.get(d).sort();
    const want = nodes.map((n, i) => {
      const parents = [...(adj.get(n) || [])].filter((m) => angle.has(m) && depth.get(m) === d - 1);
      if (!parents.length) return [n, (2 * Math.PI * i) / nodes.length - Math.PI / 2];
      const sx = parents.reduce((a, m) => a + Math.cos(angle.get(m)), 0);
      const sy = parents.reduce((a, m) => a + Math.sin(angle.get(m)), 0);
      return [n, Math.atan2(sy, sx)];
    }).sort((a, b) => a[1] - b[1]);
    const gap = Math.min((2 * Math.PI) / nodes.length, 0.55);
    let prev = -Infinity;
    for (const [n, a0] of want) {
      const a = Math.max(a0, prev + gap);
      prev = a;
      angle.set(n, a);
      pos.set(n, [cx + Math.cos(a) * step * d * 1.45, cy + Math.sin(a) * step * d]);
    }
  }

  const view = {
    e: [...edges.values()].map((e) => [e.a, e.b, e.medium, e.up, e.rtt == null ? null : Math.round(e.rtt),
      Math.round((e.loss || 0) * 1000), e.inflight || 0]),
    n: [...pos.keys()], r: [...roles], sel: S.selected,
  };
  if (!changed('mesh', view)) { renderDetail(); return; }
  const g = $('#mesh');
  g.replaceChildren();
  const perPair = new Map();
  for (const e of edges.values()) {
    const pair = `${e.a}|${e.b}`;
    const k = perPair.get(pair) || 0;
    perPair.set(pair, k + 1);
    const [x1, y1] = pos.get(e.a), [x2, y2] = pos.get(e.b);
    // Several media between one pair bend apart.
    // An edge drawn straight through another node would look like two links: bend it.
    const through = [...pos].some(([n, [x, y]]) => n !== e.a && n !== e.b
      && distanceToSegment(x, y, x1, y1, x2, y2) < 22);
    const bend = k * 26 + (through ? 120 : 0);
    const mx = (x1 + x2) / 2, my = (y1 + y2) / 2, len = Math.hypot(x2 - x1, y2 - y1) || 1;
    const qx = mx - ((y2 - y1) / len) * bend, qy = my + ((x2 - x1) / len) * bend;
    const path = svg('path', {
      d: `M${x1},${y1} Q${qx},${qy} ${x2},${y2}`, fill: 'none',
      stroke: e.up ? COLOUR[e.medium] || '#555' : '#c0392b',
      'stroke-width': e.own ? 4 : 2.5, 'stroke-dasharray': e.up ? '' : '6 5',
      'data-edge': `${e.a}|${e.b}|${e.medium}`, 'data-up': String(e.up),
    });
    path.append(svg('title', {}, `${e.a} - ${e.b} over ${e.medium}: ${e.up ? 'up' : 'down'}`));
    g.append(path);
    const parts = [];
    if (!e.up) parts.push('down');
    else {
      if (e.rtt != null) parts.push(`${Math.round(e.rtt)} ms`);
      if (e.loss > 0.0005) parts.push(`${(e.loss * 100).toFixed(1)}% loss`);
      if (e.inflight) parts.push(`${fmtBytes(e.inflight)} in flight`);
    }
    if (parts.length) {
      // On the curve's middle (a quadratic's midpoint), so parallel links' labels part too.
      const lx = 0.25 * x1 + 0.5 * qx + 0.25 * x2, ly = 0.25 * y1 + 0.5 * qy + 0.25 * y2;
      g.append(svg('text', { x: lx, y: ly - 4, 'text-anchor': 'middle', class: 'edge-label' }, parts.join(' · ')));
    }
  }
  for (const [n, [x, y]] of pos) {
    const cls = ['node', n === me ? 'self' : '', n === S.selected ? 'selected' : ''].join(' ');
    const node = svg('g', { class: cls, 'data-node': n, onclick: () => { S.selected = n; renderMesh(); } },
      svg('circle', { cx: x, cy: y, r: n === me ? 16 : 12, fill: ROLE_COLOUR[roles.get(n)] || '#95a5a6' }),
      svg('text', { x, y: y + (n === me ? 32 : 27), 'text-anchor': 'middle' }, n));
    g.append(node);
  }
  renderDetail();
}

function distanceToSegment(px, py, x1, y1, x2, y2) {
  const dx = x2 - x1, dy = y2 - y1;
  const t = Math.max(0, Math.min(1, ((px - x1) * dx + (py - y1) * dy) / (dx * dx + dy * dy || 1)));
  return Math.hypot(px - (x1 + t * dx), py - (y1 + t * dy));
}

function renderDetail() {
  const d = $('#node-detail');
  const n = S.selected;
  if (!n || !S.status) return;
  const st = S.status;
  const routes = st.routes.filter((r) => r.destination === n);
  const links = st.topology.filter((l) => l.from === n);
  if (!changed('detail', [n, routes, links.map((l) => [l.to, l.medium, l.up, Math.round(l.rtt_ms || 0)])])) return;
  d.replaceChildren(...[
    el('h3', {}, n),
    n === st.node ? el('p', { class: 'muted' }, 'This node.') : null,
    el('h4', {}, 'Routes from here'),
    routes.length
      ? el('table', { id: 'routes' }, el('tr', {}, el('th', {}, 'precedence'), el('th', {}, 'next hop'), el('th', {}, 'cost')),
        routes.map((r) => el('tr', {}, el('td', { class: `prec ${r.precedence}` }, r.precedence.toUpperCase()), el('td', {}, r.next_hop), el('td', {}, r.cost))))
      : el('p', { class: 'muted' }, n === st.node ? 'Messages to this node are delivered here.' : 'No route: messages for it are held until one appears.'),
    el('h4', {}, 'Its links (as it advertises them)'),
    links.length
      ? el('ul', {}, links.map((l) => el('li', {}, `${l.to} over ${l.medium}: ${l.up ? 'up' : 'down'}${l.rtt_ms != null ? `, ${Math.round(l.rtt_ms)} ms` : ''}`)))
      : el('p', { class: 'muted' }, 'None known.'),
  ].filter(Boolean));
}

function renderLinks() {
  const st = S.status;
  const shown = st.links.map((l) => [l.peer, l.medium, l.up, l.rtt_ms && l.rtt_ms.toFixed(1), l.loss.toFixed(3), l.inflight, l.offered, l.accepted]);
  if (!changed('links', [shown, st.queues, st.held_bytes, st.capacity_bytes])) return;
  const body = $('#links tbody');
  body.replaceChildren(...st.links.map((l) => el('tr', { 'data-peer': l.peer, 'data-medium': l.medium },
    el('td', {}, l.peer), el('td', {}, l.medium),
    el('td', { class: l.up ? 'ok' : 'error' }, l.up ? 'up' : 'down'),
    el('td', {}, l.rtt_ms != null ? `${l.rtt_ms.toFixed(1)} ms` : '–'),
    el('td', {}, `${(l.loss * 100).toFixed(1)}%`), el('td', {}, l.inflight),
    el('td', {}, l.offered), el('td', {}, l.accepted))));
  const q = st.queues;
  $('#held').textContent = `FLASH ${q.flash}, IMMEDIATE ${q.immediate}, PRIORITY ${q.priority}, ROUTINE ${q.routine} `
    + `(${fmtBytes(st.held_bytes)} of ${fmtBytes(st.capacity_bytes)}).`;
}

function fmtBytes(n) {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

// ---- sent -------------------------------------------------------------------------------

function fmtTime(us) {
  const d = new Date(us / 1000);
  return Number.isNaN(d.getTime()) ? String(us) : d.toLocaleString();
}

function renderSent() {
  if (!changed('sent', S.sent)) return;
  const body = $('#sent tbody');
  $('#sent-empty').hidden = S.sent.length > 0;
  body.replaceChildren(...S.sent.map((m) => el('tr', { 'data-id': m.id, 'data-state': m.state },
    el('td', {}, fmtTime(m.accepted_at_us)), el('td', {}, m.to),
    el('td', { class: `prec ${m.precedence}` }, m.precedence.toUpperCase()),
    el('td', {}, el('span', { class: `state ${m.state}` }, m.state.replace('_', ' '))),
    el('td', {}, m.destinations.map((d) => el('span', { class: d.overdue && !d.outcome ? 'dest overdue' : 'dest' },
      `${d.node}: ${d.outcome || (d.overdue ? 'OVERDUE' : 'pending')}${d.reason ? ` (${d.reason})` : ''}`))),
    el('td', {}, m.custody_at || '–'),
    el('td', { class: 'muted', title: m.id }, m.id.slice(0, 12),
      m.key ? el('div', { class: 'note' }, `key ${m.key}`) : null,
      m.replaces ? el('div', { class: 'note' }, `replaces ${m.replaces.slice(0, 12)}`) : null,
      m.cancels ? el('div', { class: 'note' }, `cancel of ${m.cancels.slice(0, 12)}`) : null,
      m.replaced_by ? el('div', { class: 'note' }, `replaced by ${m.replaced_by.slice(0, 12)}`) : null,
      m.cancelled_by ? el('div', { class: 'note' }, `cancelled by ${m.cancelled_by.slice(0, 12)}`) : null),
    el('td', { class: 'actions' }, ...steerButtons(m)))));
}

// A message still on its way may be recalled or corrected; a settled one only corrected.
function steerButtons(m) {
  if (m.cancels || m.replaced_by || ['cancelled', 'superseded', 'expired'].includes(m.state)) return [];
  const out = [el('button', { class: 'replace', onclick: () => replaceMessage(m) }, 'Replace')];
  if (!m.settled || m.state === 'delivered' || m.state === 'partially_delivered') {
    out.unshift(el('button', { class: 'cancel', onclick: () => cancelMessage(m) }, 'Cancel'));
  }
  return out;
}

async function cancelMessage(m) {
  const reason = prompt(`Recall the ${m.precedence.toUpperCase()} message to ${m.to} wherever it still travels?\n`
    + 'Recipients that have it see it marked cancelled. Reason (shown to them):', '');
  if (reason === null) return;
  try {
    const r = await api('POST', `/v1/messages/${m.id}/cancel`, { reason });
    alert(r.state === 'pending' ? 'Not known here yet: it will be recalled if it arrives.' : `Cancel sent: ${r.id}.`);
  } catch (e) { alert(`Not cancelled: ${e.message}`); }
}

function replaceMessage(m) {
  S.replaces = m.id;
  $('#c-to').value = m.to;
  $('#c-precedence').value = m.precedence;
  $('#c-replaces-id').textContent = m.id.slice(0, 12);
  $('#c-replaces').hidden = false;
  show('compose');
  $('#c-body').focus();
}

// ---- inbox ------------------------------------------------------------------------------

const RANK = { flash: 0, immediate: 1, priority: 2, routine: 3 };

function renderInbox() {
  const all = [...S.inbox.values()];
  const unread = (m) => m.cursor >= S.readCursor;
  all.sort((a, b) => (unread(b) - unread(a))
    || (unread(a) ? RANK[a.precedence] - RANK[b.precedence] : 0)
    || b.cursor - a.cursor);
  const n = all.filter(unread).length;
  if (!changed('inbox', [all.map((m) => [m.cursor, m.withdrawn && m.withdrawn.outcome]), S.readCursor])) return;
  const badge = $('#unread-badge');
  badge.hidden = n === 0;
  badge.textContent = n;
  $('#inbox-count').textContent = `${n} unread of ${all.length} shown`;
  $('#inbox').replaceChildren(...all.map((m) => {
    const isNew = unread(m);
    const w = m.withdrawn;
    const note = w ? el('p', { class: 'note withdrawn' }, w.outcome === 'cancelled'
      ? `CANCELLED by its sender${w.reason ? `: ${w.reason}` : ''}`
      : `SUPERSEDED by a newer message (${w.by.slice(0, 12)})`)
      : m.replaces ? el('p', { class: 'note' }, `Replaces ${m.replaces.slice(0, 12)}`) : null;
    return el('li', { class: `${m.precedence} ${isNew ? 'unread' : 'read'}${w ? ` withdrawn ${w.outcome}` : ''}`, 'data-id': m.id, 'data-cursor': m.cursor },
      el('div', { class: 'meta' },
        m.precedence === 'flash' || m.precedence === 'immediate' ? el('span', { class: `tag ${m.precedence}` }, m.precedence.toUpperCase()) : el('span', { class: 'prec' }, m.precedence.toUpperCase()),
        m.status !== 'actual' ? el('span', { class: `tag ${m.status}` }, m.status.toUpperCase()) : null,
        isNew ? el('span', { class: 'tag new' }, 'UNREAD') : null,
        w ? el('span', { class: `tag ${w.outcome}` }, w.outcome.toUpperCase()) : null,
        m.key ? el('span', {}, `key ${m.key}`) : null,
        el('span', {}, `from ${m.origin}`), el('span', {}, `to ${m.to}`),
        el('span', {}, `${(m.age_ms / 1000).toFixed(1)} s in transit`),
        isNew ? el('button', { class: 'mark', onclick: () => markRead(m.cursor) }, 'Mark read') : null),
      m.body != null
        ? el('p', { class: 'body' }, m.body)
        : el('p', { class: 'body' }, el('a', { href: `data:application/octet-stream;base64,${m.body_b64}`, download: `${m.id}.bin` },
          `${m.content_type}, ${Math.round(m.body_b64.length * 0.75)} bytes: download`)),
      note);
  }));
  // FLASH and IMMEDIATE unread: a banner on every view.
  const urgent = all.filter((m) => unread(m) && (m.precedence === 'flash' || m.precedence === 'immediate'));
  const banner = $('#flash-banner');
  banner.hidden = urgent.length === 0;
  if (urgent.length) {
    const f = urgent.filter((m) => m.precedence === 'flash').length;
    banner.textContent = `${f ? `${f} unread FLASH` : ''}${f && urgent.length > f ? ', ' : ''}${urgent.length > f ? `${urgent.length - f} unread IMMEDIATE` : ''}: open the inbox`;
  }
}

async function markRead(cursor) {
  // The inbox's read mark is a cursor: everything up to this message is marked read with it.
  // Say so when that includes earlier unread messages, and insist for FLASH and IMMEDIATE.
  const earlier = [...S.inbox.values()].filter((m) => m.cursor < cursor && m.cursor >= S.readCursor);
  const urgent = earlier.filter((m) => m.precedence === 'flash' || m.precedence === 'immediate');
  const n = earlier.length;
  if (n && !confirm(`This also marks ${n === 1 ? 'an earlier unread message' : `${n} earlier unread messages`} read`
    + `${urgent.length ? ` (${urgent.length} FLASH or IMMEDIATE)` : ''}. Mark ${n === 1 ? 'it' : 'them'} read too?`)) return;
  try {
    await api('POST', '/v1/inbox/read', { cursor });
    S.readCursor = Math.max(S.readCursor, cursor + 1);
    renderInbox();
  } catch (e) { alert(`Not marked read: ${e.message}`); }
}

// ---- compose ----------------------------------------------------------------------------

function fillAddresses() {
  const st = S.status;
  const opts = new Set(['group:all', 'group:role:command', 'group:role:township', 'group:role:field', 'group:role:relay']);
  for (const n of st.known_nodes) opts.add(`node:${n}`);
  for (const n of st.members) opts.add(`node:${n}`);
  opts.add(`node:${st.node}`);
  for (const g of [...st.groups, ...st.known_groups]) opts.add(`group:${g}`);
  for (const t of [...st.subscriptions, ...st.known_topics]) opts.add(`topic:${t.replace(/\/?[#+].*$/, '')}`);
  opts.delete('topic:');
  const list = $('#addresses');
  if (list.childElementCount === opts.size) return;
  list.replaceChildren(...[...opts].sort().map((o) => el('option', { value: o })));
}

async function compose(ev) {
  ev.preventDefault();
  const out = $('#compose-result');
  out.className = '';
  out.textContent = 'Sending…';
  const req = {
    to: $('#c-to').value.trim(),
    precedence: $('#c-precedence').value,
    lifetime: $('#c-lifetime').value.trim(),
    status: $('#c-status').value,
    receipt: $('#c-receipt').checked,
  };
  const key = $('#c-key').value.trim();
  if (key) req.key = key;
  if (S.replaces) req.replaces = S.replaces;
  const file = $('#c-file').files[0];
  const text = $('#c-body').value;
  if (file && text.trim()) {
    out.className = 'error';
    out.textContent = 'Not sent: a message carries text or a file, not both (clear one).';
    return;
  }
  if (!file && !text.trim()) {
    out.className = 'error';
    out.textContent = 'Not sent: the message is empty.';
    return;
  }
  if (file) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    let bin = '';
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    req.body_b64 = btoa(bin);
    req.content_type = file.type || 'application/octet-stream';
  } else {
    req.body = text;
  }
  try {
    const r = await api('POST', '/v1/messages', req);
    out.className = 'ok';
    out.textContent = `Accepted: ${r.id}${S.replaces ? `, replacing ${S.replaces.slice(0, 12)}` : ''}. Follow it under Sent.`;
    $('#c-body').value = '';
    $('#c-file').value = '';
    clearReplaces();
  } catch (e) {
    out.className = 'error';
    out.textContent = `Not sent: ${e.message}`;
  }
}

function clearReplaces() {
  S.replaces = null;
  $('#c-replaces').hidden = true;
}

// ---- alarms -----------------------------------------------------------------------------

function alarms(st) {
  const out = [];
  for (const o of S.overdue) {
    const late = Math.max(0, Date.now() - o.due_at_us / 1000) / 60000;
    const level = o.precedence === 'flash' || o.precedence === 'immediate' ? 'critical' : 'warn';
    out.push([level, `OVERDUE ${o.precedence.toUpperCase()} to ${o.destination} (${o.to}), past its delivery objective${late >= 1 ? ` by ${Math.round(late)} min` : ''}: ${o.id.slice(0, 12)}`]);
  }
  for (const l of S.ownDown) out.push(['critical', `Link to ${l.peer} over ${l.medium} is down.`]);
  const refused = new Map();
  for (const r of st.refused_links) {
    const k = `${r.peer || r.addr} (${r.medium}): ${r.reason}`;
    refused.set(k, (refused.get(k) || 0) + 1);
  }
  for (const [k, n] of refused) out.push(['critical', `Refused a link from ${k}${n > 1 ? ` (${n} times)` : ''}`]);
  const c = st.certificate;
  if (c && c.reload_error) out.push(['critical', `New credentials were refused: ${c.reload_error}`]);
  if (c && c.expires_in_s <= 0) out.push(['critical', 'This node\'s certificate has expired.']);
  else if (c && c.renew_soon) out.push(['warn', `This node's certificate expires in ${Math.round(c.expires_in_s / 86400)} days: renew it.`]);
  for (const l of st.links) {
    if (l.certificate && l.certificate.renew_soon) out.push(['warn', `${l.peer}'s certificate expires in ${Math.round(l.certificate.expires_in_s / 86400)} days.`]);
  }
  if (st.security.revoked > 0) out.push(['critical', `${st.security.revoked} messages or links from revoked nodes were refused.`]);
  if (st.security.forged > 0) out.push(['critical', `${st.security.forged} forged or altered messages or adverts were refused.`]);
  if (st.invariant_violation) out.push(['critical', `The node found an internal inconsistency: ${st.invariant_violation}`]);
  if (st.store_failures > 0) out.push(['critical', `${st.store_failures} store commits failed (disk).`]);
  if (st.capacity_bytes > 0 && st.held_bytes > 0.9 * st.capacity_bytes) out.push(['warn', `The store is ${Math.round(100 * st.held_bytes / st.capacity_bytes)}% full.`]);
  return out;
}

function renderAlarms() {
  const list = alarms(S.status);
  if (!changed('alarms', list)) return;
  const badge = $('#alarm-badge');
  badge.hidden = list.length === 0;
  badge.textContent = list.length;
  $('#alarms').replaceChildren(...(list.length ? list.map(([level, text]) => el('li', { class: level }, text))
    : [el('li', { class: 'none' }, 'No alarms.')]));
}

// ---- wiring -----------------------------------------------------------------------------

function show(view) {
  for (const b of document.querySelectorAll('#tabs button')) b.classList.toggle('active', b.dataset.view === view);
  for (const s of document.querySelectorAll('.view')) s.hidden = s.id !== `view-${view}`;
  history.replaceState(null, '', `#${view}`);
}

document.addEventListener('DOMContentLoaded', () => {
  for (const b of document.querySelectorAll('#tabs button')) b.addEventListener('click', () => show(b.dataset.view));
  $('#login-form').addEventListener('submit', login);
  $('#logout').addEventListener('click', logout);
  $('#compose').addEventListener('submit', compose);
  $('#c-replaces-clear').addEventListener('click', clearReplaces);
  $('#read-all').addEventListener('click', () => { const c = Math.max(-1, ...S.inbox.keys()); if (c >= 0) markRead(c); });
  $('#flash-banner').addEventListener('click', () => show('inbox'));
  const v = location.hash.slice(1);
  if (['mesh', 'sent', 'inbox', 'compose', 'alarms'].includes(v)) show(v);
  boot();
});
