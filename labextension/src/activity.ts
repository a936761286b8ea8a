// User input as the idle policy counts it (docs/lab.md, "Idle policy"): keys, pointer presses,
// the wheel and the tab brought back into view are reported to the server extension
// (POST {base}jupyterhub-hpc/activity), at most once per report interval (60 s until the server
// tells its own; input during an interval is sent at its end). JupyterLab's own polling is not
// input, so a Lab left open on a desk lets its server go idle. The idle warning's "I'm still
// here" action (notices.ts) calls report() at once.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

const INPUT_EVENTS = ['keydown', 'pointerdown', 'wheel'] as const;
const DEFAULT_INTERVAL_MS = 60000;

export class ActivityReporter {
  private readonly settings = ServerConnection.makeSettings();
  private intervalMs: number;
  private lastSent = -Infinity;
  private pending = false;
  private timer: number | null = null;
  private inflight = false;
  private disabled = false;
  private readonly onInput = (): void => this.input();
  private readonly onVisible = (): void => {
    if (document.visibilityState === 'visible') {
      this.input();
    }
  };

  constructor(intervalMs: number = DEFAULT_INTERVAL_MS) {
    this.intervalMs = intervalMs;
  }

  start(): void {
    for (const name of INPUT_EVENTS) {
      document.addEventListener(name, this.onInput, { capture: true, passive: true });
    }
    document.addEventListener('visibilitychange', this.onVisible);
    window.addEventListener('focus', this.onVisible);
  }

  /** Input now: report it at once after a quiet interval, else at the interval's end. */
  input(): void {
    if (this.disabled) {
      return;
    }
    const wait = this.lastSent + this.intervalMs - Date.now();
    if (wait <= 0 && !this.inflight) {
      void this.report();
      return;
    }
    this.pending = true;
    if (this.timer === null) {
      this.timer = window.setTimeout(
        () => {
          this.timer = null;
          if (this.pending) {
            this.input();
          }
        },
        Math.max(wait, 1000)
      );
    }
  }

  /** POST the input to the server (XSRF and auth through ServerConnection). */
  async report(): Promise<boolean> {
    this.pending = false;
    this.inflight = true;
    this.lastSent = Date.now();
    try {
      const url = URLExt.join(this.settings.baseUrl, 'jupyterhub-hpc', 'activity');
      const response = await ServerConnection.makeRequest(url, { method: 'POST', body: '{}' }, this.settings);
      if (response.status === 404) {
        this.disabled = true; // not in a JupyterHub (or an older server extension): stop trying
        return false;
      }
      if (!response.ok) {
        return false;
      }
      const body = await response.json();
      const seconds = Number(body.report_seconds);
      if (Number.isFinite(seconds) && seconds > 0) {
        this.intervalMs = seconds * 1000;
      }
      return true;
    } catch {
      return false; // the server is gone or unreachable: the next input tries again
    } finally {
      this.inflight = false;
    }
  }
}
