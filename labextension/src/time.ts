// Time helpers: the browser's clock is corrected by the card's `now` (the hub's clock).

/** Milliseconds to add to Date.now() to get the hub's time. */
export class Clock {
  private offset = 0;

  /** Re-estimate the offset from a card's `now`, fetched between `sent` and `received` (ms). */
  correct(serverNow: string, sent: number, received: number): void {
    const server = Date.parse(serverNow);
    if (!Number.isNaN(server)) {
      this.offset = server - (sent + received) / 2;
    }
  }

  now(): number {
    return Date.now() + this.offset;
  }

  /** Seconds from now until an ISO time (negative once past), or null when unknown. */
  secondsUntil(iso: string | null): number | null {
    if (!iso) {
      return null;
    }
    const t = Date.parse(iso);
    return Number.isNaN(t) ? null : (t - this.now()) / 1000;
  }
}

/** 1:02:03 / 4:05 (rounded down to whole seconds; 0:00 once past). */
export function formatRemaining(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** How close ``remaining`` seconds are to the end, by the walltime warnings: within the smallest
 * threshold 'critical', within the largest 'warn', else null (no thresholds: null). */
export function warningLevel(remaining: number, thresholds: readonly number[]): 'critical' | 'warn' | null {
  if (!thresholds.length) {
    return null;
  }
  if (remaining <= Math.min(...thresholds)) {
    return 'critical';
  }
  return remaining <= Math.max(...thresholds) ? 'warn' : null;
}

/** HH:MM in the browser's time zone. */
export function formatClock(iso: string | null): string {
  if (!iso) {
    return 'unknown';
  }
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) {
    return 'unknown';
  }
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', hour12: false });
}

/** Date and time in the browser's time zone, e.g. for the card and maintenance windows. */
export function formatDateTime(iso: string | null): string {
  if (!iso) {
    return 'unknown';
  }
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) {
    return 'unknown';
  }
  return d.toLocaleString([], {
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hour12: false
  });
}

export function formatBytes(bytes: number | null): string {
  if (bytes === null || bytes === undefined) {
    return 'unknown';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[i]}`;
}
