#!/usr/bin/env node
// The `scaledkite` command (`npx scaledkite render …`, `npm run --silent scaledkite -- …`). It loads
// cli.ts through tsx's require hook (esbuild), which starts in about a third of ts-node's time; the
// command itself is in cli.ts.
require("tsx/cjs");
require("./cli.ts").main();
