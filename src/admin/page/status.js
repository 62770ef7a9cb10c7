'use strict';
// The status page: polls /status and draws it. Every figure shown comes
// from that JSON; an element showing one carries its path in data-f (a
// chart's total in data-sum), so a test can hold the page to the JSON.
(function () {
  const REFRESH_MS = 3000;
  const DECISIONS = [
    ['proxy', 'proxied'], ['redirect', 'redirected'],
    ['local', 'answered locally'], ['reject', 'refused'],
  ];
  let seq = 0;

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // A number from /status, as is.
  function num(v, path) {
    const e = el('span', 'n', v);
    e.dataset.f = path;
    return e;
  }

  // The words of a flag from /status, by its field's name.
  const WORDS = { up: ['up', 'down'], ok: ['ok', 'refused'],
                  fallback_in_use: ['in use', 'standby'] };

  function flag(v, path, good) {
    const w = WORDS[path.split('.').pop()] || ['yes', 'no'];
    const text = v ? w[0] : w[1];
    const ok = good === undefined ? v : good;
    const e = el('span', 'badge ' + (ok ? 'up' : 'down'), text);
    e.dataset.f = path;
    return e;
  }

  function when(t) {
    if (!t) return 'never';
    return new Date(t * 1000).toISOString().replace('T', ' ').slice(0, 19) + 'Z';
  }

  function ago(now, t) {
    const s = Math.max(0, now - t);
    return s < 120 ? s + ' s ago' : Math.round(s / 60) + ' min ago';
  }

  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }

  // A table row; each cell carries its column's name, which a phone's
  // width shows beside it instead of the header row.
  function row(tbody, cells) {
    const heads = tbody.parentNode.tHead.rows[0].cells;
    const tr = el('tr');
    cells.forEach(function (c, i) {
      const td = el('td', c.cls);
      if (heads[i]) td.dataset.label = heads[i].textContent;
      if (c.node) td.appendChild(c.node);
      else td.textContent = c.text === undefined ? '' : String(c.text);
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
  }

  function figure(dl, label, node) {
    dl.appendChild(el('dt', null, label));
    const dd = el('dd');
    dd.appendChild(typeof node === 'object' ? node : el('span', null, node));
    dl.appendChild(dd);
  }

  function sites(s) {
    const tb = $('sites').tBodies[0];
    clear(tb);
    s.sites.forEach(function (x, i) {
      const p = 'sites.' + i + '.';
      const kind = x.cloud ? 'cloud' : (x.own ? 'own' : 'remote');
      let fb = el('span', null, x.fallback || '—');
      if (x.fallback) {
        fb.appendChild(document.createTextNode(' '));
        fb.appendChild(flag(x.fallback_in_use, p + 'fallback_in_use',
                            !x.fallback_in_use));
      }
      row(tb, [
        { text: x.name }, { text: kind },
        { node: flag(x.up, p + 'up') },
        { node: fb },
        { text: x.served_by || 'nobody' },
        { node: num(x.requests, p + 'requests'), cls: 'num' },
      ]);
    });
  }

  function checkText(s, m) {
    if (!m.check) return 'not yet';
    return (m.check.ok ? 'ok' : m.check.error || 'failed') + ', ' +
      ago(s.now, m.check.at);
  }

  function cas(s) {
    const tb = $('cas').tBodies[0];
    clear(tb);
    s.sites.forEach(function (x, i) {
      x.servers.forEach(function (v, j) {
        const p = 'sites.' + i + '.servers.' + j + '.';
        if (v.members.length === 0) {
          row(tb, [{ text: x.name }, { text: v.url },
                   { text: 'no address' }, { node: flag(false, p + 'up') }]);
        }
        v.members.forEach(function (m, k) {
          const q = p + 'members.' + k + '.';
          const tr = [
            { text: x.name }, { text: v.url }, { text: m.address },
            { node: flag(m.up, q + 'up') },
            { text: checkText(s, m), cls: 'why' },
            { node: m.check ? num(m.check.latency_ms, q + 'check.latency_ms')
                            : el('span', null, '—'), cls: 'num' },
            // Connections are counted per CAS URL: shown on its first
            // member's line.
            { node: k === 0 ? num(v.active, p + 'active') : null, cls: 'num' },
            { node: k === 0 ? num(v.idle, p + 'idle') : null, cls: 'num' },
          ];
          row(tb, tr);
        });
      });
    });
  }

  function chart(host, key, label, values) {
    const box = el('div', 'chart');
    const total = values.reduce(function (a, b) { return a + b; }, 0);
    const peak = Math.max.apply(null, values.concat([0]));
    const cap = el('p');
    cap.appendChild(el('span', null, label + ': '));
    const t = el('span', 'total', total);
    t.dataset.sum = 'decisions.' + key;
    cap.appendChild(t);
    cap.appendChild(el('span', null, ' (peak ' + peak + '/s)'));
    box.appendChild(cap);
    const c = el('canvas');
    box.appendChild(c);
    host.appendChild(box);
    const ratio = window.devicePixelRatio || 1;
    const w = Math.max(60, c.clientWidth) * ratio;
    const h = 60 * ratio;
    c.width = w;
    c.height = h;
    const g = c.getContext('2d');
    g.fillStyle = '#eef1f4';
    g.fillRect(0, 0, w, h);
    g.fillStyle = key === 'reject' ? '#cf222e' : '#0969da';
    const bw = w / values.length;
    values.forEach(function (v, i) {
      const bh = peak ? (v / peak) * (h - 2) : 0;
      g.fillRect(i * bw, h - bh, Math.max(1, bw - 1), bh);
    });
  }

  function decisions(s) {
    const host = $('charts');
    clear(host);
    if (!s.decisions) return;
    for (const d of DECISIONS)
      chart(host, d[0], d[1], s.decisions[d[0]] || []);
  }

  function conns(s) {
    const dl = $('conns');
    clear(dl);
    figure(dl, 'held long-polls', num(s.held_requests, 'held_requests'));
    figure(dl, 'client connections',
           num(s.client_connections, 'client_connections'));
    figure(dl, 'CAS connections',
           num(s.upstream_connections, 'upstream_connections'));
    figure(dl, 'users in the site map', num(s.site_map_users, 'site_map_users'));
  }

  function directory(s) {
    const dl = $('directory');
    clear(dl);
    const d = s.directory;
    if (!d) {
      figure(dl, 'directory', 'not configured');
      return;
    }
    figure(dl, 'state', flag(d.up, 'directory.up'));
    figure(dl, 'cache hit rate', (d.hit_rate * 100).toFixed(1) + ' %');
    figure(dl, 'hits', num(d.hits, 'directory.hits'));
    figure(dl, 'misses', num(d.misses, 'directory.misses'));
    figure(dl, 'stale answers', num(d.stale, 'directory.stale'));
    figure(dl, 'cached users', num(d.entries, 'directory.entries'));
  }

  function guard(s) {
    const g = s.guard;
    const dl = $('guard');
    clear(dl);
    figure(dl, 'password shield', g.passwords ? 'on' : 'off');
    figure(dl, 'passwords held', num(g.held_passwords, 'guard.held_passwords'));
    figure(dl, 'users held (guessing)', num(g.held_users, 'guard.held_users'));
    figure(dl, 'throttle', g.throttle ? 'on' : 'off');
    figure(dl, 'throttled keys', num(g.throttled_keys, 'guard.throttled_keys'));
    figure(dl, 'device rules', num(g.rules, 'guard.rules'));
    figure(dl, 'shared store', g.store ? flag(g.store.up, 'guard.store.up')
                                       : 'none (this front end alone)');
    const da = $('guard-answers');
    clear(da);
    for (const r of Object.keys(g.answers))
      figure(da, r, num(g.answers[r], 'guard.answers.' + r));
    g.top_rules.forEach((r, i) =>
      figure(da, 'rule at line ' + r.line + ' blocked',
             num(r.blocked, 'guard.top_rules.' + i + '.blocked')));
  }

  function certs(s) {
    const ul = $('certs');
    clear(ul);
    s.certificates.forEach(function (c, i) {
      const li = el('li');
      const cls = c.days_left < 7 ? 'down' : c.days_left < 14 ? 'warn' : 'up';
      const b = el('span', 'badge ' + cls);
      const n = num(c.days_left, 'certificates.' + i + '.days_left');
      b.appendChild(n);
      b.appendChild(document.createTextNode(' days'));
      li.appendChild(b);
      li.appendChild(document.createTextNode(
        ' ' + c.names.join(', ') + ' (' + c.key_type + ', until ' +
        when(c.not_after) + ')'));
      li.appendChild(el('div', 'mono', c.file));
      ul.appendChild(li);
    });
  }

  function generation(s) {
    const dl = $('generation');
    clear(dl);
    const r = s.last_reload;
    figure(dl, 'generation', num(s.generation, 'generation'));
    figure(dl, 'loaded', when(s.loaded.at));
    figure(dl, 'last reload', r.at ? when(r.at) : 'none since start');
    figure(dl, 'last reload result', flag(r.ok, 'last_reload.ok'));
    figure(dl, 'reloads ok', num(r.ok_total, 'last_reload.ok_total'));
    figure(dl, 'reloads refused', num(r.failed_total, 'last_reload.failed_total'));
    if (!r.ok && r.error) {
      dl.appendChild(el('dt', null, 'refused because'));
      dl.appendChild(el('dd', 'error', r.error));
    }
    const ul = $('files');
    clear(ul);
    for (const f of s.loaded.files) ul.appendChild(el('li', null, f));
  }

  function render(s) {
    $('site').textContent = s.site;
    $('summary').textContent = 'generation ' + s.generation + ' · up ' +
      Math.floor(s.uptime_seconds / 60) + ' min · ' + when(s.now);
    sites(s); cas(s); decisions(s); conns(s); directory(s); guard(s);
    certs(s); generation(s);
    const st = $('state');
    st.textContent = 'refreshed every ' + REFRESH_MS / 1000 + ' s';
    st.className = 'state';
  }

  // One fetch at a time: the n-th drawing is the n-th answer, which is
  // what data-seq says.
  function poll() {
    fetch('status', { cache: 'no-store' })
      .then(function (r) {
        if (!r.ok) throw new Error('HTTP ' + r.status);
        return r.json();
      })
      .then(function (s) {
        seq++;
        render(s);
        document.body.dataset.seq = String(seq);
      })
      .catch(function (e) {
        seq++;
        document.body.dataset.seq = String(seq);
        const st = $('state');
        st.textContent = 'stale: /status failed (' + e.message + ')';
        st.className = 'state stale';
      })
      .finally(function () { setTimeout(poll, REFRESH_MS); });
  }

  poll();
})();
