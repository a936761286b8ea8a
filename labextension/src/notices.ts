// Notifications from the card and the announcements: walltime warnings with "Save all" and
// "Stop server now", the automatic save before the end, announcements (once per browser per id),
// the idle warning and maintenance windows. Started after app.restored (a toast emitted earlier
// lands only in the notification centre).
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { CommandRegistry } from '@lumino/commands';

import { IAnnouncement, stopServer } from './api';
import { CardModel } from './model';
import { formatDateTime, formatRemaining } from './time';

export const SAVE_ALL = 'docmanager:save-all';
const STILL_HERE = "I'm still here";
const SEEN_KEY = 'jupyterhub-hpc:announcements-seen';
const WARNED_KEY = 'jupyterhub-hpc:warned';
const MAX_SEEN = 500;
/** JupyterLab cuts notification messages at 140 characters. */
const MAX_MESSAGE = 140;
const ANNOUNCEMENT_TOAST_MS = 15000;

function clip(text: string): string {
  return text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE - 1)}…` : text;
}

/** Keys already notified, in a Storage (local: per browser; session: per tab, kept on reload). */
class SeenSet {
  private readonly keys: string[];

  constructor(
    private readonly storage: Storage,
    private readonly name: string
  ) {
    let keys: string[] = [];
    try {
      const parsed = JSON.parse(storage.getItem(name) ?? '[]');
      keys = Array.isArray(parsed) ? parsed.filter(k => typeof k === 'string') : [];
    } catch {
      keys = [];
    }
    this.keys = keys;
  }

  has(key: string): boolean {
    return this.keys.includes(key);
  }

  add(key: string): void {
    if (this.has(key)) {
      return;
    }
    this.keys.push(key);
    // bounded: the oldest keys go first
    this.keys.splice(0, Math.max(0, this.keys.length - MAX_SEEN));
    try {
      this.storage.setItem(this.name, JSON.stringify(this.keys));
    } catch {
      // storage full or disabled: remembered for this page only
    }
  }
}

export class Notices {
  private readonly seenAnnouncements = new SeenSet(window.localStorage, SEEN_KEY);
  private readonly warned = new SeenSet(window.sessionStorage, WARNED_KEY);
  private readonly autosaved = new Set<string>();

  constructor(
    private readonly model: CardModel,
    private readonly commands: CommandRegistry,
    private readonly openPanel: () => void,
    /** counts this server as used now (activity.ts); the idle warning's "I'm still here" */
    private readonly stillHere: (() => void) | null = null
  ) {}

  start(): void {
    this.model.changed.connect(this.onChanged, this);
    this.model.tick.connect(this.onTick, this);
    this.onChanged();
  }

  /** Ask, then ask the hub (through this server) to stop this server and release the job. */
  async confirmStop(): Promise<void> {
    const result = await showDialog({
      title: 'Stop the server now?',
      body:
        'This ends the batch job and releases its allocation. ' +
        'Unsaved changes are lost: save them first.',
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Stop server' })]
    });
    if (!result.button.accept) {
      return;
    }
    try {
      await stopServer();
      Notification.info('The server is stopping: the batch job is released.', { autoClose: false });
    } catch (err) {
      Notification.error(clip(`Could not stop the server: ${err instanceof Error ? err.message : err}`));
    }
  }

  private onChanged(): void {
    this.showAnnouncements(this.model.announcements);
    this.showMaintenance();
    this.onTick();
  }

  private onTick(): void {
    this.checkWalltime();
    this.checkIdle();
  }

  private checkWalltime(): void {
    const card = this.model.card;
    const job = card?.job;
    const remaining = this.model.remainingSeconds();
    if (!card || !job || remaining === null || remaining <= 0) {
      return;
    }
    // a changed end time (an admin's scontrol update) arms the thresholds again
    const jobKey = `${card.user}/${card.server_name}/${job.id}@${job.end_time}`;
    const crossed = card.walltime.warn_seconds.filter(t => remaining <= t);
    const fresh = crossed.filter(t => !this.warned.has(`${jobKey}:${t}`));
    if (fresh.length) {
      crossed.forEach(t => this.warned.add(`${jobKey}:${t}`));
      Notification.warning(
        clip(`Your job ${job.id} ends in ${formatRemaining(remaining)} (${formatDateTime(job.end_time)}): save your work.`),
        {
          autoClose: false,
          data: { source: 'jupyterhub-hpc', kind: 'walltime', job: job.id, threshold: Math.min(...fresh) },
          actions: [
            {
              label: 'Save all',
              caption: 'Save every open document',
              displayType: 'accent',
              callback: event => {
                event.preventDefault(); // keep the toast: "Stop server now" may follow
                void this.commands.execute(SAVE_ALL);
              }
            },
            {
              label: 'Stop server now',
              caption: 'End the batch job and release the allocation',
              displayType: 'warn',
              callback: () => void this.confirmStop()
            }
          ]
        }
      );
    }
    const autosave = card.walltime.autosave_seconds;
    if (autosave && remaining <= autosave && !this.autosaved.has(jobKey)) {
      this.autosaved.add(jobKey);
      void this.commands.execute(SAVE_ALL).then(
        () =>
          Notification.info(
            clip(`Saved all open documents: job ${job.id} ends in ${formatRemaining(remaining)}.`),
            { autoClose: 10000, data: { source: 'jupyterhub-hpc', kind: 'autosave', job: job.id } }
          ),
        err => Notification.error(clip(`Automatic save failed: ${err instanceof Error ? err.message : err}`))
      );
    }
  }

  private checkIdle(): void {
    const idle = this.model.card?.idle;
    if (!idle || !idle.stops_at) {
      return;
    }
    const left = this.model.clock.secondsUntil(idle.stops_at);
    if (left === null || left <= 0 || left > idle.warn_seconds) {
      return;
    }
    const key = `idle:${idle.stops_at}`;
    if (this.warned.has(key)) {
      return;
    }
    this.warned.add(key);
    const since = this.model.clock.secondsUntil(idle.last_activity);
    const idleMinutes = since === null ? Math.round(idle.timeout_seconds / 60) : Math.round(-since / 60);
    Notification.warning(
      clip(`idle for ${idleMinutes} min: stops in ${Math.ceil(left / 60)} min unless you use it`),
      {
        autoClose: false,
        data: { source: 'jupyterhub-hpc', kind: 'idle' },
        actions: this.stillHere
          ? [
              {
                label: STILL_HERE,
                caption: 'Count this server as used now',
                displayType: 'accent',
                callback: () => this.stillHere?.()
              }
            ]
          : []
      }
    );
  }

  private showMaintenance(): void {
    const card = this.model.card;
    if (!card) {
      return;
    }
    for (const m of card.maintenance) {
      const key = `maintenance:${m.name}@${m.start}`;
      if (this.warned.has(key)) {
        continue;
      }
      this.warned.add(key);
      const tail = card.job ? (m.crosses_job ? ': your job ends at it' : ': your job ends before it') : '';
      Notification.warning(clip(`Maintenance ${formatDateTime(m.start)} to ${formatDateTime(m.end)}${tail}`), {
        autoClose: false,
        data: { source: 'jupyterhub-hpc', kind: 'maintenance', name: m.name },
        actions: [{ label: 'Details', callback: () => this.openPanel() }]
      });
    }
  }

  private showAnnouncements(list: IAnnouncement[]): void {
    for (const a of list) {
      if (this.seenAnnouncements.has(a.id)) {
        continue;
      }
      this.seenAnnouncements.add(a.id);
      const type = a.severity === 'error' || a.severity === 'warning' ? a.severity : 'info';
      const options = {
        data: { source: 'jupyterhub-hpc', kind: 'announcement', id: a.id },
        actions: [{ label: 'Details', callback: () => this.openPanel() }],
        // required ones stay until closed; the others longer than JupyterLab's 5 s default
        autoClose: a.required ? (false as const) : ANNOUNCEMENT_TOAST_MS
      };
      Notification.emit(clip(a.title), type, options);
    }
  }
}
