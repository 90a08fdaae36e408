import { type ErrorEntry, errorClass } from '@flotilla/protocol';

/**
 * The CLI's one error registry (protocol, package and server errors pass through with their
 * codes). The status is the HTTP status that fits the failure, so a wrapper or a log can treat
 * every Flotilla error alike; the CLI itself exits 1 on all of them.
 */
export const CLI_ERRORS = {
  FLOTILLA_ERR_CLI_KEY_FILE: {
    status: 400,
    message: 'cannot read the key file',
    hint: 'pass --key with a file written by `flotilla keys init`',
  },
  FLOTILLA_ERR_CLI_ROOT_FILE: {
    status: 400,
    message: 'cannot read the root metadata',
    hint: 'pass --root with the root.json made by `flotilla keys init`',
  },
  FLOTILLA_ERR_CLI_KEYS_EXIST: {
    status: 409,
    message: 'the keys directory already holds keys',
    hint: 'choose another --dir, or pass --force to add to it (existing keys are never overwritten)',
  },
  FLOTILLA_ERR_CLI_KEYS_DIR: {
    status: 400,
    message: 'cannot use the keys directory',
    hint: 'pass --dir with a directory you can create and write (not a file); for `keys rotate`, the one `keys init` made',
  },
  FLOTILLA_ERR_CLI_INPUT: { status: 400, message: 'cannot read the input file', hint: 'check the path' },
  FLOTILLA_ERR_CLI_USAGE: { status: 400, message: 'invalid arguments', hint: 'see --help' },
  FLOTILLA_ERR_CLI_CONFIG: {
    status: 400,
    message: 'invalid config file',
    hint: 'fix the named field; docs/install.md lists every field of the server config file',
  },
  FLOTILLA_ERR_CLI_CONFIG_NOT_FOUND: {
    status: 404,
    message: 'config file not found',
    hint: 'check the --config path (packages/server/systemd/server.json is an example to copy)',
  },
  FLOTILLA_ERR_CLI_NOT_FOUND: {
    status: 404,
    message: 'not found on the server',
    hint: 'check the id; the matching list command shows what exists',
  },
  FLOTILLA_ERR_CLI_TIME: {
    status: 400,
    message: 'not a time',
    hint: 'use an ISO 8601 time (2026-01-31, 2026-01-31T12:00:00Z) or a duration ago (30m, 12h, 7d)',
  },
  FLOTILLA_ERR_CLI_ROLE: {
    status: 400,
    message: 'not a token role',
    hint: 'use --role viewer (reads), operator (also releases, rollouts, devices) or admin (also tokens, audit, policy)',
  },
  // talking to the server's operator API
  FLOTILLA_ERR_CLI_SERVER_UNREACHABLE: {
    status: 503,
    message: 'cannot reach the Flotilla server',
    hint: 'start it with `flotilla server`, or point --server / FLOTILLA_SERVER at it',
  },
  FLOTILLA_ERR_CLI_SERVER_TIMEOUT: {
    status: 504,
    message: 'the Flotilla server did not answer in time',
    hint: 'check the server log; retry later',
  },
  FLOTILLA_ERR_CLI_SERVER_URL: {
    status: 400,
    message: 'invalid server URL',
    hint: 'use http(s)://host:port, e.g. http://127.0.0.1:8080',
  },
  FLOTILLA_ERR_CLI_SERVER_RESPONSE: {
    status: 502,
    message: 'the server sent a response the CLI does not understand',
    hint: 'check that --server points at a Flotilla server of the same version',
  },
  FLOTILLA_ERR_CLI_UNAUTHORIZED: {
    status: 401,
    message: 'the server refused the API token',
    hint: 'pass --token or set FLOTILLA_TOKEN to an operator token',
  },
  FLOTILLA_ERR_CLI_HTTP: {
    status: 502,
    message: 'the server answered with an error',
    hint: 'check the server log',
  },
  FLOTILLA_ERR_CLI_BUNDLE: {
    status: 400,
    message: 'cannot read the release bundle',
    hint: 'pass the path of a .flot bundle',
  },
} as const satisfies Record<string, ErrorEntry>;

export type CliErrorCode = keyof typeof CLI_ERRORS;

export class CliError extends errorClass(CLI_ERRORS, 'cli', 'CliError') {}
