/** The package ships no types: only what the server uses. */
declare module 'aedes-persistence-redis' {
  import type { Redis } from 'ioredis';
  /** An aedes persistence on an existing ioredis connection (which it closes on destroy). */
  export default function redisPersistence(opts: { conn: Redis; packetTTL?: () => number }): unknown;
}
