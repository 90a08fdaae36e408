#!/usr/bin/env node
import { main } from '../cli/main.js';

const ac = new AbortController();
process.once('SIGTERM', () => ac.abort());
process.once('SIGINT', () => ac.abort());
const code = await main(
  process.argv.slice(2),
  { out: (t) => console.log(t), err: (t) => console.error(t) },
  ac.signal,
);
process.exitCode = code;
