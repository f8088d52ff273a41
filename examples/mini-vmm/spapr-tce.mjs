// The library. In your VMM this file is just `export * from 'spapr-tce';`.
// SPAPR_TCE_DIST may point at another build's index.js (a path or a file: URL);
// the test uses it to run this example against a fresh build of src/.
import { pathToFileURL } from 'node:url';

const dist = process.env.SPAPR_TCE_DIST;
const spec = dist
  ? (dist.startsWith('file:') ? dist : pathToFileURL(dist).href)
  : new URL('../../dist/index.js', import.meta.url).href;

export const { Host, H, DmaFault, TceError } = await import(spec);
