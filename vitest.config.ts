import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The default forks pool: with threads, the addon's static state would be shared across files.
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
