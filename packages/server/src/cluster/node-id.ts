import { ServerError } from '../errors.js';

const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/**
 * A node's name is shown to operators, recorded as the engine lease's holder and names the
 * node's own temporary directory under the shared artifact store: a short name, no path.
 */
export function checkNodeId(id: string): string {
  if (!NODE_ID.test(id))
    throw new ServerError(
      'FLOTILLA_ERR_SERVER_CONFIG',
      `node id ${JSON.stringify(id)} is not a name: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  return id;
}
