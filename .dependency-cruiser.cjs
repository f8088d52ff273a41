// The layers of src/ and the rules between them, checked by
// test/unit/layers.test.ts (so by `npm test`), or by hand with
//   npx depcruise src --config .dependency-cruiser.cjs
// A module may import its own layer and the layers below it, never one above
// (type-only imports included), and no chain of runtime imports may come
// back to where it started (a cycle through type-only imports is allowed: a
// container and its groups name each other's types).

/** Lowest first. Each entry: a name and the paths (relative to the repository root) that make the layer. */
const LAYERS = [
  ['generated', '^src/(generated|layout)/'], // generated from src/layout/: constants, views, engine routines
  ['engine', '^src/engine/'], // loading the WebAssembly and native engines, the hypercall chain
  ['core', '^src/core/'], // the host context: memory, allocation, errors, validation
  ['kernel', '^src/kernel/'], // the host kernel's objects: tasks, mm, pre-registration, IOMMU tables
  ['vfio', '^src/vfio/'], // groups and containers, one file per concern
  ['kvm', '^src/kvm/'], // VMs, memslots, guest tables, vCPUs, the worker side
  ['vmm', '^src/vmm/'], // what a VMM adds: the Vm with DMA, events, PHBs and RTAS
  ['snapshot', '^src/snapshot/'], // every save and restore
  ['host', '^src/host/'], // Host, the composition root, with Process and the invariants
  ['top', '^src/([^/]+\\.ts$|replay/)'], // entry points (index, worker, cli) and the trace replayer (replay.ts, replay/)
];

/** Every module of src/ is in one of the layers: a folder outside the map would escape the rules above. */
const LAYERED = LAYERS.map(([, path]) => path);

const upward = LAYERS.slice(0, -1).map(([name, path], i) => ({
  name: `not-up-from-${name}`,
  comment: `src/ layer '${name}' may not import a layer above it (${LAYERS.slice(i + 1).map(([n]) => n).join(', ')})`,
  severity: 'error',
  from: { path },
  to: { path: LAYERS.slice(i + 1).map(([, p]) => p) },
}));

module.exports = {

  forbidden: [
    ...upward,
    {
      name: 'worker-stays-light',
      comment: 'spapr-tce/worker loads in every vCPU thread: the engines, the memory accessor and the views, nothing of the model',
      severity: 'error',
      from: { path: '^src/(worker|kvm/worker)\\.ts$' },
      to: { path: '^src/', pathNot: '^src/(kvm/worker\\.ts|engine/|core/memory\\.ts|generated/)' },
    },
    {
      name: 'in-a-layer',
      comment: 'every module of src/ that imports or is imported is in a layer of LAYERS (add a new folder to the map)',
      severity: 'error',
      from: { path: '^src/', pathNot: LAYERED },
      to: {},
    },
    {
      name: 'into-a-layer',
      comment: 'every module of src/ that is imported is in a layer of LAYERS (add a new folder to the map)',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^src/', pathNot: LAYERED },
    },
    {
      name: 'no-runtime-cycle',
      comment: 'no cycle of runtime imports (type-only imports may close a cycle)',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
    {
      name: 'not-unresolvable',
      comment: 'every import of src/ resolves (else the rules above would not see it)',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
    {
      name: 'not-outside-src',
      comment: 'src/ imports only src/, node: built-ins and its dependencies',
      severity: 'error',
      from: { path: '^src/' },
      to: { pathNot: ['^src/', '^node_modules/'], dependencyTypesNot: ['core'], couldNotResolve: false },
    },
  ],
  options: {
    // Type-only imports are dependencies too: a lower layer may not even name an upper layer's type.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '\\.(d\\.ts|map)$' },
  },
};
