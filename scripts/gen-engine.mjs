// The engine-routine half of the generator (run by scripts/gen-layout.mjs):
// from src/layout/engine.def.mjs, the TypeScript routines interface with the
// WebAssembly adapter, and the C++ table the N-API binding expands.

const TS_TYPES = { u32: 'number', i32: 'number', u64: 'bigint', i64: 'bigint', void: 'void' };
const CPP_TYPES = { u32: 'uint32_t', i32: 'int32_t', u64: 'uint64_t', i64: 'int64_t', void: 'void' };
const SIGNATURE = /^([a-z][A-Za-z0-9]*)\(([^)]*)\): ([a-z0-9]+)$/;

/** Parses every `name(arg: type, ...): result` of the declaration; refuses unknown types and duplicates. */
export function parseRoutines(def) {
  const seen = new Set();
  return def.routines.map(([sig, doc]) => {
    const m = SIGNATURE.exec(sig);
    if (!m) throw new Error(`engine.def: cannot read the signature '${sig}'`);
    const [, name, argText, result] = m;
    if (seen.has(name)) throw new Error(`engine.def: routine ${name} is declared twice`);
    seen.add(name);
    if (!(result in TS_TYPES)) throw new Error(`engine.def: ${name}: unknown result type ${result}`);
    const args = argText.trim() === '' ? [] : argText.split(',').map((a) => {
      const [argName, type] = a.split(':').map((s) => s.trim());
      if (!argName || !(type in TS_TYPES) || type === 'void') throw new Error(`engine.def: ${name}: cannot read the argument '${a.trim()}'`);
      return { name: argName, type };
    });
    return { name, args, result, doc };
  });
}

const pascal = (s) => s[0].toUpperCase() + s.slice(1);

/** src/generated/engine.ts */
export function engineTs(routines, header) {
  let s = header;
  s += '\n/** The routines every engine provides over the shared linear memory, as declared in src/layout/engine.def.mjs. */\n';
  s += 'export interface EngineRoutines {\n';
  for (const r of routines) {
    s += `  /** ${r.doc} */\n`;
    s += `  ${r.name}(${r.args.map((a) => `${a.name}: ${TS_TYPES[a.type]}`).join(', ')}): ${TS_TYPES[r.result]};\n`;
  }
  s += '}\n\n/** The routine names, in declaration order. */\n';
  s += `export const ENGINE_ROUTINES = [${routines.map((r) => `'${r.name}'`).join(', ')}] as const;\n\n`;
  s += '/** How many arguments each routine takes. */\n';
  s += `export const ENGINE_ARITY: Readonly<Record<keyof EngineRoutines, number>> = { ${routines.map((r) => `${r.name}: ${r.args.length}`).join(', ')} };\n\n`;
  s += '/** The declared routines that `obj` lacks as functions (of the declared arity, when `checkArity`). */\n';
  s += 'export function missingRoutines(obj: object, checkArity: boolean): string[] {\n';
  s += '  const o = obj as Record<string, unknown>;\n';
  s += "  return ENGINE_ROUTINES.filter((n) => typeof o[n] !== 'function' || (checkArity && (o[n] as (...a: unknown[]) => unknown).length !== ENGINE_ARITY[n]));\n";
  s += '}\n\n';
  s += '/**\n * The WebAssembly build\'s exports as engine routines, once every declared\n';
  s += ' * routine is found exported with its arity. WebAssembly returns u32 and u64\n';
  s += ' * results signed: those are made unsigned; every other routine is the export itself.\n */\n';
  s += 'export function wasmRoutines(exports: WebAssembly.Exports): EngineRoutines {\n';
  s += '  const missing = missingRoutines(exports, true);\n';
  s += "  if (missing.length > 0) throw new Error(`spapr-tce: the WebAssembly engine does not export ${missing.join(', ')} as declared in src/layout/engine.def.mjs; rebuild it (npm run build:wasm)`);\n";
  s += '  const x = exports as unknown as EngineRoutines;\n';
  s += '  return {\n';
  for (const r of routines) {
    const params = r.args.map((a) => a.name).join(', ');
    if (r.result === 'u32') s += `    ${r.name}: (${params}) => x.${r.name}(${params}) >>> 0,\n`;
    else if (r.result === 'u64') s += `    ${r.name}: (${params}) => BigInt.asUintN(64, x.${r.name}(${params})),\n`;
    else s += `    ${r.name}: x.${r.name},\n`;
  }
  s += '  };\n}\n';
  return s;
}

/** src/native/generated/engine_routines.h */
export function engineCpp(routines, header) {
  let s = header;
  s += '// One struct per routine: its name, argument names and member function;\n';
  s += '// a static_assert holds each one to the declared signature, so engine.h and\n';
  s += '// the declaration cannot drift apart. SPAPR_ENGINE_ROUTINES(X) expands X once per routine.\n';
  s += '#pragma once\n#include <array>\n#include <cstdint>\n#include <type_traits>\n\n#include "../engine.h"\n\nnamespace spapr::routines {\n';
  for (const r of routines) {
    const sig = `${CPP_TYPES[r.result]} (TceEngine::*)(${r.args.map((a) => CPP_TYPES[a.type]).join(', ')})`;
    s += `\n// ${r.name}(${r.args.map((a) => `${a.name}: ${a.type}`).join(', ')}): ${r.result}\n`;
    s += `struct ${pascal(r.name)} {\n`;
    s += `  static constexpr const char* kName = "${r.name}";\n`;
    s += `  static constexpr std::array<const char*, ${r.args.length}> kArgs{${r.args.map((a) => `"${a.name}"`).join(', ')}};\n`;
    s += `  static constexpr auto kFn = &TceEngine::${r.name};\n`;
    s += '};\n';
    s += `static_assert(std::is_same_v<std::remove_const_t<decltype(${pascal(r.name)}::kFn)>, ${sig}>,\n`;
    s += `              "TceEngine::${r.name} (engine.h) does not match its declaration in src/layout/engine.def.mjs");\n`;
  }
  s += '\n}  // namespace spapr::routines\n\n';
  s += `#define SPAPR_ENGINE_ROUTINES(X) ${routines.map((r) => `X(${pascal(r.name)})`).join(' ')}\n`;
  return s;
}
