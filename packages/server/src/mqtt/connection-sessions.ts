/**
 * Which connection of each device is the current one, from the devices' status messages (the
 * online message of a connection and its last will, both naming the connection's session). A
 * will can arrive after the device already reconnected (the broker noticed the old connection
 * dead only then): it names an older session and must not mark the device offline.
 */
export class ConnectionSessions {
  private readonly current = new Map<string, { session: string; online: boolean }>();

  /** Records the message; false when it is the late will of a connection already replaced. */
  apply(deviceId: string, session: string, online: boolean): boolean {
    const now = this.current.get(deviceId);
    if (!online && now && now.session !== session) return false;
    this.current.set(deviceId, { session, online });
    return true;
  }

  isOnline(deviceId: string): boolean {
    return this.current.get(deviceId)?.online ?? false;
  }
}
