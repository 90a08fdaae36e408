import { parentPort } from 'node:worker_threads';
import { preloadVerifyKeys } from '@flotilla/protocol';
import { checkPassword, type VerifierReply, type VerifierRequest } from './password-verifier.js';

/**
 * Runs in a worker thread (compiled JS from dist/): checks device passwords (ed25519 through
 * OpenSSL, ≈110–150 µs each here) off the thread that runs the broker, a batch per message.
 * Its key cache is its own: the server sends it the accepted fleet's keys to parse ahead.
 */
parentPort!.on('message', (m: VerifierRequest) => {
  const reply: VerifierReply =
    m.kind === 'preload'
      ? { id: m.id, preloaded: preloadVerifyKeys(m.keys) }
      : { id: m.id, verdicts: m.checks.map(checkPassword) };
  parentPort!.postMessage(reply);
});
