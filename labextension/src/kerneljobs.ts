// Kernels as batch jobs (issue 16, docs/kernels.md): while a kernel of a batch kernelspec starts,
// its job's place in the queue as an in-progress notification ("Kernel job 123 is queued: waiting
// for free resources; expected start 14:05", with a "Cancel job" button), then where it runs and
// until when, or why it ended.
// The server extension's GET <base_url>jupyterhub-hpc/kernels is polled every POLL_MS only while
// such a kernel is starting or its job is queued, and for a few seconds after a batch kernel died
// (to say why its job ended), never otherwise.
import { Dialog, ISessionContext, Notification, showDialog } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { Kernel, KernelSpec } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { POLL, request } from './api';
import { formatClock } from './time';

export interface IKernelJob {
  kernel_id: string;
  job_id: string;
  backend: string;
  state: string;
  reason: string | null;
  expected_start: string | null;
  end_time: string | null;
  node: string | null;
  generation: number;
  /** the kernel has bound its ports (the job is RUNNING a moment before) */
  ready?: boolean;
  ended: string;
}

const POLL_MS = 2500;
/** an episode with a starting batch kernel but no job listed ends after this (a refused submit) */
const NO_JOB_MS = 60000;
const SUCCESS_MS = 6000;
/** how long the route is asked why a dead batch kernel's job ended (it may say so a little later) */
const DEAD_MS = 30000;
const MAX_MESSAGE = 140;
const ENDED_KEY = 'jupyterhub-hpc:kernel-jobs-ended';
const QUEUED = new Set(['PENDING', 'UNKNOWN']);
const STARTING = new Set(['starting', 'initializing', 'restarting', 'unknown']);
/** a kernel's statuses after which its job may have ended (asked then, not guessed) */
const GONE = new Set(['dead', 'restarting', 'autorestarting', 'disconnected']);

function clip(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > MAX_MESSAGE ? `${flat.slice(0, MAX_MESSAGE - 1)}…` : flat;
}

export async function fetchKernelJobs(): Promise<IKernelJob[]> {
  const body = await (await request('kernels', {}, POLL)).json();
  return Array.isArray(body.kernels) ? body.kernels : [];
}

/** Give up a kernel's start while its job waits (DELETE <base_url>jupyterhub-hpc/kernels/<id>). */
export async function cancelKernelJob(kernelId: string): Promise<void> {
  await request(`kernels/${encodeURIComponent(kernelId)}`, { method: 'DELETE' });
}

/** Whether the kernelspec ``name`` is a batch kernel's (its metadata says so). */
export function isBatchKernel(specs: KernelSpec.IManager, name: string | undefined): boolean {
  const spec = name ? specs.specs?.kernelspecs[name] : undefined;
  const meta = spec?.metadata?.['jupyterhub_hpc'] as { batch?: boolean } | undefined;
  return meta?.batch === true;
}

export function queuedMessage(job: IKernelJob): string {
  const when = job.expected_start ? formatClock(job.expected_start) : 'not known yet';
  return clip(`Kernel job ${job.job_id} is queued: ${job.reason ?? 'waiting'}; expected start ${when}`);
}

export function runningMessage(job: IKernelJob): string {
  const until = job.end_time ? ` until ${formatClock(job.end_time)}` : '';
  return clip(`Kernel job ${job.job_id} runs on ${job.node ?? 'its node'}${until}`);
}

/** Notifications for the batch kernels this tab starts (see the header). */
export class KernelJobNotices {
  private readonly starting = new Set<ISessionContext>();
  /** job key -> notification id of its in-progress toast */
  private readonly toasts = new Map<string, string>();
  /** jobs whose story is told (running shown, or the toast dismissed) */
  private readonly done = new Set<string>();
  private readonly ended: Set<string>;
  /** batch kernels seen dead: one poll tells why (their job ended: walltime, scancel, a failure) */
  private readonly dead = new Set<string>();
  private timer: number | undefined;
  private deadUntil = 0;
  private polling = false;
  private episodeStart = 0;
  private sawJob = false;
  private settled = new Set<string>();
  private baseline: Set<string> | null = null;
  private jobs: IKernelJob[] = [];
  /** the batch kernels the server listed last */
  private batchKernels = new Set<string>();

  constructor(
    private readonly specs: KernelSpec.IManager,
    private readonly kernels: Kernel.IManager,
    private readonly notebooks: INotebookTracker | null
  ) {
    let keys: unknown = [];
    try {
      keys = JSON.parse(window.sessionStorage.getItem(ENDED_KEY) ?? '[]');
    } catch {
      keys = [];
    }
    this.ended = new Set(Array.isArray(keys) ? keys.filter(k => typeof k === 'string') : []);
  }

  start(): void {
    this.notebooks?.widgetAdded.connect((_, panel) => this.watch(panel.sessionContext));
    this.notebooks?.forEach(panel => this.watch(panel.sessionContext));
    this.kernels.runningChanged.connect(this.onRunning, this);
    this.onRunning();
  }

  private isBatch(name: string | undefined): boolean {
    return isBatchKernel(this.specs, name);
  }

  private startsBatch(context: ISessionContext): boolean {
    if (context.isDisposed || !STARTING.has(context.kernelDisplayStatus)) {
      return false;
    }
    const kernel = context.session?.kernel;
    if (kernel) {
      return this.isBatch(kernel.name);
    }
    // no kernel yet (the start request waits for the job): the kernel it asked for
    const specs = Object.values(this.specs.specs?.kernelspecs ?? {});
    const asked = specs.find(s => s?.display_name === context.kernelDisplayName);
    return this.isBatch(asked?.name ?? context.kernelPreference.name);
  }

  private watch(context: ISessionContext): void {
    const check = (): void => {
      const kernel = context.session?.kernel;
      if (kernel && GONE.has(context.kernelDisplayStatus) && this.isBatch(kernel.name)) {
        this.died(kernel.id); // perhaps its job ended: the route says so if it did
      }
      if (this.startsBatch(context)) {
        this.starting.add(context);
        this.wake();
      } else {
        this.starting.delete(context);
      }
    };
    context.statusChanged.connect(check);
    context.kernelChanged.connect(check);
    context.disposed.connect(() => this.starting.delete(context));
    check();
  }

  private onRunning(): void {
    const now = new Set<string>();
    for (const k of this.kernels.running()) {
      if (!this.isBatch(k.name)) {
        continue;
      }
      now.add(k.id);
      if (k.execution_state === 'dead') {
        this.died(k.id);
      } else if (k.execution_state === 'starting' || !k.execution_state) {
        this.wake();
      }
    }
    // a batch kernel the server dropped (its job ended and the restarter gave up)
    for (const id of this.batchKernels) {
      if (!now.has(id)) {
        this.died(id);
      }
    }
    this.batchKernels = now;
  }

  /** Ask the route for a while whether the job of this batch kernel ended (it may say so a little
   * later: the server notices at its next status query). */
  private died(kernelId: string): void {
    this.dead.add(kernelId);
    this.deadUntil = Date.now() + DEAD_MS;
    this.wake();
  }

  /** Start polling (an episode) unless it runs already. */
  private wake(): void {
    if (this.polling) {
      return;
    }
    this.polling = true;
    this.episodeStart = Date.now();
    this.sawJob = false;
    this.baseline = null;
    // kernels Lab knows as started before this episode are not announced again
    this.settled = new Set(
      [...this.kernels.running()]
        .filter(k => k.execution_state && k.execution_state !== 'starting')
        .map(k => k.id)
    );
    void this.poll();
  }

  private active(): boolean {
    for (const context of [...this.starting]) {
      if (!this.startsBatch(context)) {
        this.starting.delete(context);
      }
    }
    const open = this.jobs.some(j => !j.ended && !this.done.has(this.key(j)) && !this.settled.has(j.kernel_id));
    if (open) {
      return true;
    }
    const untold = this.jobs.some(j => this.dead.has(j.kernel_id) && !j.ended);
    if (untold && Date.now() < this.deadUntil) {
      return true;
    }
    return this.starting.size > 0 && (this.sawJob || Date.now() - this.episodeStart < NO_JOB_MS);
  }

  private key(job: IKernelJob): string {
    return `${job.kernel_id}/${job.job_id}`;
  }

  private async poll(): Promise<void> {
    window.clearTimeout(this.timer);
    try {
      this.jobs = await fetchKernelJobs();
      if (this.baseline === null) {
        const mine = new Set([...this.starting].map(c => c.session?.kernel?.id));
        const told = (j: IKernelJob): boolean => !mine.has(j.kernel_id) && !this.dead.has(j.kernel_id);
        this.baseline = new Set(this.jobs.filter(j => j.ended && told(j)).map(j => this.key(j)));
      }
      for (const job of this.jobs) {
        this.show(job);
      }
    } catch {
      this.jobs = []; // no such route here (another server) or a failed poll: try again while starting
    }
    if (this.active()) {
      this.timer = window.setTimeout(() => void this.poll(), POLL_MS);
    } else {
      this.polling = false;
    }
  }

  private show(job: IKernelJob): void {
    const key = this.key(job);
    if (job.ended) {
      if (!this.ended.has(key) && !this.baseline?.has(key)) {
        this.markEnded(key);
        this.failed(job);
      }
      return;
    }
    if (this.settled.has(job.kernel_id) || this.done.has(key)) {
      return;
    }
    this.sawJob = true;
    const id = this.toasts.get(key);
    if (QUEUED.has(job.state)) {
      const message = queuedMessage(job);
      const actions = [{ label: 'Cancel job', caption: 'Cancel this kernel job and give up its start', callback: () => void this.cancel(job) }];
      if (id === undefined) {
        const options = { autoClose: false as const, actions, data: { source: 'jupyterhub-hpc', kind: 'kernel-job', job: job.job_id } };
        this.toasts.set(key, Notification.emit(message, 'in-progress', options));
      } else if (!Notification.manager.notifications.some(n => n.id === id)) {
        this.done.add(key); // the user closed it: no more news of this job but its end
      } else {
        Notification.update({ id, message, type: 'in-progress', autoClose: false, actions });
      }
    } else if (job.state === 'RUNNING' && job.ready !== false) {
      this.done.add(key);
      const message = runningMessage(job);
      if (id === undefined || !Notification.update({ id, message, type: 'success', autoClose: SUCCESS_MS })) {
        Notification.success(message, { autoClose: SUCCESS_MS });
      }
    }
  }

  /** The job's end is told (or needs no telling), also after a reload of this tab. */
  private markEnded(key: string): void {
    this.ended.add(key);
    window.sessionStorage.setItem(ENDED_KEY, JSON.stringify([...this.ended].slice(-200)));
  }

  /** The queued notification's "Cancel job": the start is given up, the job cancelled. */
  private async cancel(job: IKernelJob): Promise<void> {
    const key = this.key(job);
    this.done.add(key);
    this.markEnded(key); // its end is the user's own doing: no error notification for it
    try {
      await cancelKernelJob(job.kernel_id);
      Notification.info(`Kernel job ${job.job_id} cancelled`, {
        autoClose: SUCCESS_MS,
        data: { source: 'jupyterhub-hpc', kind: 'kernel-job-cancelled', job: job.job_id }
      });
    } catch (error) {
      this.ended.delete(key);
      const why = error instanceof Error ? error.message : String(error);
      Notification.warning(clip(`Kernel job ${job.job_id} was not cancelled: ${why}`), { autoClose: false });
    }
  }

  private failed(job: IKernelJob): void {
    const key = this.key(job);
    const text = `Kernel job ${job.job_id} ended: ${job.ended}`;
    const actions = [
      {
        label: 'Details',
        callback: () =>
          void showDialog({
            title: `Kernel job ${job.job_id}`,
            body: new Widget({ node: Object.assign(document.createElement('pre'), { className: 'jp-hpc-kernel-job-ended', textContent: job.ended }) }),
            buttons: [Dialog.okButton()]
          })
      }
    ];
    const id = this.toasts.get(key);
    this.done.add(key);
    if (id === undefined || !Notification.update({ id, message: clip(text), type: 'error', autoClose: false, actions })) {
      Notification.error(clip(text), { autoClose: false, actions, data: { source: 'jupyterhub-hpc', kind: 'kernel-job-ended', job: job.job_id } });
    }
  }
}
