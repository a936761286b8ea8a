// One poller per Lab tab: the card and the announcements every `poll_seconds` (the card says how
// often), and a one-second tick for the countdown between polls.
import { ISignal, Signal } from '@lumino/signaling';

import { ApiError, IAnnouncement, ICard, fetchAnnouncements, fetchCard } from './api';
import { Clock } from './time';

const DEFAULT_POLL_SECONDS = 30;
const MIN_POLL_SECONDS = 1;

export class CardModel {
  readonly clock = new Clock();
  card: ICard | null = null;
  announcements: IAnnouncement[] = [];
  /** Why the last card request failed (null after a good one). */
  error: string | null = null;
  /** True once the server said the routes do not exist here (not in a JupyterHub). */
  unavailable = false;

  private pollTimer: number | undefined;
  private tickTimer: number | undefined;
  private readonly changedSignal = new Signal<this, void>(this);
  private readonly tickSignal = new Signal<this, void>(this);

  /** A new card or announcements list arrived (or a request failed). */
  get changed(): ISignal<this, void> {
    return this.changedSignal;
  }

  /** Every second, for countdowns and thresholds. */
  get tick(): ISignal<this, void> {
    return this.tickSignal;
  }

  start(): void {
    void this.poll();
    this.tickTimer = window.setInterval(() => this.tickSignal.emit(), 1000);
  }

  dispose(): void {
    window.clearTimeout(this.pollTimer);
    window.clearInterval(this.tickTimer);
    Signal.clearData(this);
  }

  /** Poll now (after a dismissal, a stop, or when the panel is opened) and restart the interval. */
  async refresh(): Promise<void> {
    window.clearTimeout(this.pollTimer);
    await this.poll();
  }

  /** Seconds until the job's scheduler end time, on the hub's clock. */
  remainingSeconds(): number | null {
    const job = this.card?.job;
    if (!job || job.state !== 'running') {
      return null;
    }
    return this.clock.secondsUntil(job.end_time);
  }

  private async poll(): Promise<void> {
    const sent = Date.now();
    try {
      const card = await fetchCard();
      this.clock.correct(card.now, sent, Date.now());
      this.card = card;
      this.error = null;
      this.unavailable = false;
    } catch (err) {
      this.error = err instanceof Error ? err.message : String(err);
      if (err instanceof ApiError && err.status === 404) {
        this.unavailable = true;
        this.card = null;
      }
    }
    if (!this.unavailable) {
      try {
        this.announcements = await fetchAnnouncements();
      } catch (err) {
        // keep the last list: the service may be restarting
        console.warn('jupyterhub-hpc: announcements', err);
      }
    }
    this.changedSignal.emit();
    const seconds = Math.max(MIN_POLL_SECONDS, this.card?.poll_seconds ?? DEFAULT_POLL_SECONDS);
    // outside a hub: look again rarely (the server may be restarted into one), never hammer
    const delay = this.unavailable ? Math.max(seconds, 300) : seconds;
    this.pollTimer = window.setTimeout(() => void this.poll(), delay * 1000);
  }
}
