#!/usr/bin/env node
import { main } from '../sim-cli.js';

const stop = new AbortController();
process.once('SIGINT', () => stop.abort());
process.once('SIGTERM', () => stop.abort());
const code = await main(process.argv.slice(2), stop.signal);
process.exitCode = code;
// Everything was closed; a straggling socket must not keep the simulator from exiting.
setTimeout(() => process.exit(code), 5000).unref();
