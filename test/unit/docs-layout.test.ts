// docs/layout.md's struct tables are those of the layout declaration: a change to
// src/layout/layout.def.mjs without `npm run docs:layout` fails here, so the drawing's
// tables never describe a layout the code no longer has.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import * as def from '../../src/layout/layout.def.mjs';
import { STRUCTS } from '../../src/generated/layout.js';
import { structTables, withTables } from '../../scripts/gen-layout-doc.mjs';

describe('docs/layout.md', () => {
  it('has the struct tables of the current layout (else: npm run docs:layout)', () => {
    const text = readFileSync(new URL('../../docs/layout.md', import.meta.url), 'utf8');
    const tables = structTables(def, STRUCTS) as string;
    // Every struct and field of the declaration is in the tables, at its generated offset.
    for (const st of STRUCTS) for (const f of st.fields) expect(tables).toContain(`| ${f.offset} | \`${f.name}\` |`);
    expect(withTables(text, tables), 'docs/layout.md is stale: run `npm run docs:layout`').toBe(text);
  });
});
