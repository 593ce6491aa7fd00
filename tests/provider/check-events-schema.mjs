#!/usr/bin/env node
// Checks that the test provider's Authentik events (events.mjs: every seeded kind, a page of
// them, an empty last page) validate against Authentik's OpenAPI schema: components Event,
// PaginatedEventList, Pagination of Authentik's OpenAPI schema, from the committed excerpt
// authentik-events-schema.yml (or the whole schema named by $AUTHENTIK_OPENAPI). No YAML
// dependency: the few component blocks needed are read with a reader for the subset they use (nested maps, scalar lists, `{}`).
//
// Usage: node tests/provider/check-events-schema.mjs   (exit 1 on a mismatch, with the path)
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { makeEvent, paginate, seedEvents, SEEDED_ACTIONS } from './events.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const NAMES = ['Event', 'EventActions', 'PaginatedEventList', 'Pagination'];
// The committed excerpt (always here), or the whole schema named by $AUTHENTIK_OPENAPI.
const schemaFile = process.env.AUTHENTIK_OPENAPI ?? path.join(here, 'authentik-events-schema.yml');
const lines = fs.readFileSync(schemaFile, 'utf8').split('\n');

// The text of `components.schemas.<name>` in `ls` (its header line and indented body).
function blockText(ls, name) {
  const start = ls.findIndex((l) => l === `    ${name}:`);
  if (start < 0) return null;
  let end = start + 1;
  while (end < ls.length && (ls[end].trim() === '' || ls[end].startsWith('      '))) end += 1;
  return ls.slice(start, end).join('\n').trimEnd();
}

// The excerpt must stay verbatim: compared with the whole schema when it is beside the checkout.
const full = path.resolve(here, '../../../shared/authentik/openapi-2026.5.yml');
if (!process.env.AUTHENTIK_OPENAPI && fs.existsSync(full)) {
  const fullLines = fs.readFileSync(full, 'utf8').split('\n');
  for (const n of NAMES) {
    if (blockText(lines, n) !== blockText(fullLines, n)) {
      console.error(`check-events-schema: ${n} in authentik-events-schema.yml differs from ${full}`);
      process.exit(1);
    }
  }
}

// The block of `components.schemas.<name>` as an object.
function component(name) {
  const text = blockText(lines, name);
  if (text === null) throw new Error(`schema ${name} not in ${schemaFile}`);
  return parseBlock(text.split('\n').slice(1), 6);
}

const scalar = (s) => {
  const v = s.trim().replace(/^'(.*)'$/, '$1');
  if (v === '{}') return {};
  if (v === 'true' || v === 'false') return v === 'true';
  return v;
};

function parseBlock(block, indent) {
  const out = {};
  let i = 0;
  while (i < block.length) {
    const line = block[i];
    if (!line.trim()) { i += 1; continue; }
    const m = line.slice(indent).match(/^([^:\s][^:]*):(.*)$/);
    if (!m) throw new Error(`cannot read schema line: ${line}`);
    const [, key, rest] = m;
    i += 1;
    if (rest.trim()) { out[key] = scalar(rest); continue; }
    const child = [];
    while (i < block.length && (!block[i].trim() || block[i].startsWith(' '.repeat(indent + 1)) || block[i].startsWith(`${' '.repeat(indent)}- `))) {
      child.push(block[i]);
      i += 1;
    }
    const first = child.find((l) => l.trim());
    out[key] = first?.trim().startsWith('- ') ? child.filter((l) => l.trim()).map((l) => scalar(l.trim().slice(2))) : parseBlock(child, indent + 2);
  }
  return out;
}

const schemas = Object.fromEntries(NAMES.map((n) => [n, component(n)]));
const errors = [];

function check(value, schema, at) {
  if (schema.$ref) {
    const name = schema.$ref.split('/').at(-1);
    if (name === 'Autocomplete') { // free-form object
      if (typeof value !== 'object' || value === null || Array.isArray(value)) errors.push(`${at}: not an object`);
      return;
    }
    return check(value, schemas[name] ?? (() => { throw new Error(`unresolved ${schema.$ref}`); })(), at);
  }
  if (value === null) { if (!schema.nullable) errors.push(`${at}: null but not nullable`); return; }
  if (schema.enum) {
    // action: EventActions, extended by custom_<name> (ak_create_event) — the schema lists `custom_`.
    if (!schema.enum.includes(value) && !(typeof value === 'string' && value.startsWith('custom_'))) errors.push(`${at}: ${value} not in enum`);
    return;
  }
  const t = schema.type;
  if (t === 'object') {
    if (typeof value !== 'object' || Array.isArray(value)) return errors.push(`${at}: not an object`);
    for (const k of schema.required ?? []) if (!(k in value)) errors.push(`${at}.${k}: required but absent`);
    for (const [k, sub] of Object.entries(schema.properties ?? {})) if (k in value) check(value[k], sub, `${at}.${k}`);
  } else if (t === 'array') {
    if (!Array.isArray(value)) return errors.push(`${at}: not an array`);
    value.forEach((v, i) => check(v, schema.items, `${at}[${i}]`));
  } else if (t === 'string') {
    if (typeof value !== 'string') return errors.push(`${at}: not a string`);
    if (schema.format === 'uuid' && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(value)) errors.push(`${at}: not a uuid`);
    if (schema.format === 'date-time' && !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(value)) errors.push(`${at}: not a date-time`);
  } else if (t === 'number') {
    if (typeof value !== 'number') errors.push(`${at}: not a number`);
  } else if (t === 'boolean') {
    if (typeof value !== 'boolean') errors.push(`${at}: not a boolean`);
  }
}

const emailOf = (u) => `${u}@example.com`;
const seeded = seedEvents(emailOf);
const kinds = seeded.map((e) => e.action);
if (JSON.stringify(kinds) !== JSON.stringify(SEEDED_ACTIONS)) errors.push(`seeded kinds ${kinds} != ${SEEDED_ACTIONS}`);
seeded.forEach((e, i) => check(e, schemas.Event, `seed[${i}](${e.action})`));
const many = [...seeded, ...Array.from({ length: 30 }, () => makeEvent({ action: 'login', user: 'alice' }, emailOf))].reverse();
check(paginate(many, 1, 10), schemas.PaginatedEventList, 'page1');
check(paginate(many, 4, 10), schemas.PaginatedEventList, 'page4');
check(paginate([], 1, 10), schemas.PaginatedEventList, 'empty');
const last = paginate(many, 4, 10).pagination;
if (last.next !== 0 || last.previous !== 3) errors.push(`last page next/previous ${last.next}/${last.previous}, want 0/3`);
// The checker itself must catch a bad event.
const before = errors.length;
check({ ...seeded[0], pk: 'not-a-uuid', created: undefined }, schemas.Event, 'self-test');
if (errors.length - before !== 2) errors.push('self-test: the checker missed a broken event');
else errors.splice(before);

if (errors.length) {
  console.error(`check-events-schema: ${errors.length} mismatch(es) against ${schemaFile}:\n${errors.join('\n')}`);
  process.exit(1);
}
console.log(`check-events-schema: ${seeded.length} event kinds and 3 pages validate against Event/PaginatedEventList (${path.basename(schemaFile)})`);
