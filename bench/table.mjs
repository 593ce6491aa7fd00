// bench/run's table: reads the results (one JSON line a measurement: case, server, conc, rep,
// r = {rps, p50_ms, p99_ms, errors}) and prints one Markdown table — the median of the repeats
// with min–max, and tokend's ratios to every other server of the same case and concurrency.
// node bench/table.mjs results.jsonl "server=why\n…" (servers that could not be measured)
import { readFileSync } from 'node:fs';

const [file, naText = ''] = process.argv.slice(2);
const rows = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const na = Object.fromEntries(naText.split('\n').filter(Boolean).map((l) => {
  const i = l.indexOf('=');
  return [l.slice(0, i), l.slice(i + 1)];
}));

const CASES = [
  ['repeated', 'verify, repeated token, TCP (wrk)', 'tokend', ['bare', 'tokend', 'reference', 'go', 'apache']],
  ['socket', 'verify, repeated token, Unix socket (oha)', 'tokend', ['bare', 'tokend', 'tokend-redis']],
  ['distinct', 'verify, distinct tokens, tokend cache off, TCP (wrk)', 'tokend-nocache', ['bare', 'tokend-nocache', 'reference', 'go', 'apache']],
  ['forward', 'forward auth GET with the cookie, TCP (wrk)', 'tokend', ['bare', 'tokend', 'reference', 'go', 'apache']],
  ['codes', 'exchange code issue+redeem pairs, Unix socket (bench-driver; req/s = pairs/s)', 'tokend', ['tokend', 'tokend-redis']],
];
const NAMES = {
  bare: 'bare axum', tokend: 'tokend', 'tokend-nocache': 'tokend (cache off)', reference: 'reference (express+passport-jwt)',
  go: 'go-oidc', apache: 'Apache mod_oauth2', 'tokend-redis': 'tokend (Redis store)',
};
NAMES.tokend_codes = 'tokend (memory store)';

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (x, d) => (x >= 100 ? Math.round(x).toString() : x.toFixed(d));
const spread = (xs, d) => `${fmt(median(xs), d)} (${fmt(Math.min(...xs), d)}–${fmt(Math.max(...xs), d)})`;

const concs = [...new Set(rows.map((r) => r.conc))].sort((a, b) => a - b);
const out = [];
out.push('| case | conc | server | req/s median (min–max) | p50 ms | p99 ms | tokend ÷ this: req/s | tokend ÷ this: p99 | errors |');
out.push('|---|---|---|---|---|---|---|---|---|');
for (const [key, title, self, servers] of CASES) {
  const inCase = rows.filter((r) => r.case === key);
  if (!inCase.length) continue;
  for (const c of concs) {
    const at = (s) => inCase.filter((r) => r.server === s && r.conc === c).map((r) => r.r);
    const mine = at(self);
    if (!mine.length) continue;
    for (const s of servers) {
      const name = key === 'codes' && s === 'tokend' ? NAMES.tokend_codes : NAMES[s];
      if (na[s]) {
        out.push(`| ${title} | ${c} | ${name} | not available: ${na[s]} | | | | | |`);
        continue;
      }
      const rs = at(s);
      if (!rs.length) continue;
      const rps = rs.map((r) => r.rps);
      const ratio = s === self ? '—' : (median(mine.map((r) => r.rps)) / median(rps)).toFixed(2);
      const p99r = s === self ? '—' : (median(mine.map((r) => r.p99_ms)) / median(rs.map((r) => r.p99_ms))).toFixed(2);
      const errors = rs.reduce((a, r) => a + (r.errors < 0 ? NaN : r.errors), 0);
      out.push(`| ${title} | ${c} | ${s === self ? `**${name}**` : name} | ${spread(rps, 0)} | ${spread(rs.map((r) => r.p50_ms), 3)} | ${spread(rs.map((r) => r.p99_ms), 3)} | ${ratio} | ${p99r} | ${Number.isNaN(errors) ? 'no result' : errors} |`);
    }
  }
}
console.log(out.join('\n'));
