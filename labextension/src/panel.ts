// The full job card and the user's announcements, in a main-area tab.
import { Widget } from '@lumino/widgets';

import { IAnnouncement, ICard, dismissAnnouncement } from './api';
import { CardModel } from './model';
import { formatBytes, formatDateTime, formatRemaining } from './time';

/** What JupyterLab's sanitizer (ISanitizer) offers. */
export interface ISanitizerLike {
  sanitize(dirty: string): string;
}

function row(table: HTMLElement, label: string, value: string, key: string): void {
  const tr = document.createElement('tr');
  tr.dataset.field = key;
  const th = document.createElement('th');
  th.scope = 'row';
  th.textContent = label;
  const td = document.createElement('td');
  td.textContent = value;
  tr.append(th, td);
  table.appendChild(tr);
}

export class CardPanel extends Widget {
  private readonly cardNode = document.createElement('section');
  private readonly remainingCell = document.createElement('td');
  private readonly listNode = document.createElement('section');
  private renderedKey = '';

  constructor(
    private readonly model: CardModel,
    private readonly sanitizer: ISanitizerLike
  ) {
    super();
    this.id = 'jupyterhub-hpc-card';
    this.addClass('jp-hpc-panel');
    this.title.label = 'Batch job';
    this.title.closable = true;
    this.cardNode.className = 'jp-hpc-card';
    this.listNode.className = 'jp-hpc-announcements';
    this.node.append(this.cardNode, this.listNode);
    model.changed.connect(this.render, this);
    model.tick.connect(this.updateRemaining, this);
    this.render();
  }

  render(): void {
    // only when something changed (a poll brings a new `now` every time): keeps focus and selection
    const card = this.model.card ? { ...this.model.card, now: null } : null;
    const key = JSON.stringify([card, this.model.error, this.model.announcements]);
    if (key === this.renderedKey) {
      return;
    }
    this.renderedKey = key;
    this.renderCard(this.model.card);
    this.renderAnnouncements(this.model.announcements);
  }

  private renderCard(card: ICard | null): void {
    const node = this.cardNode;
    node.replaceChildren();
    const h = document.createElement('h2');
    h.textContent = 'Batch job';
    node.appendChild(h);
    if (!card) {
      const p = document.createElement('p');
      p.textContent = this.model.error ? `No job card: ${this.model.error}` : 'Loading…';
      node.appendChild(p);
      return;
    }
    const job = card.job;
    if (!job) {
      const p = document.createElement('p');
      p.textContent = 'This server has no batch job.';
      node.appendChild(p);
      return;
    }
    const table = document.createElement('table');
    row(table, 'Job id', job.id, 'id');
    row(table, 'State', job.native_state ? `${job.state} (${job.native_state})` : job.state, 'state');
    if (job.state === 'pending') {
      row(table, 'Waiting because', job.reason_text ?? job.reason ?? 'unknown', 'reason');
      row(table, 'Expected start', formatDateTime(job.expected_start), 'expected_start');
    }
    row(table, 'Cluster', card.cluster ?? 'default', 'cluster');
    if (card.profile) {
      row(table, 'Profile', card.profile, 'profile');
    }
    row(table, 'Partition', job.partition ?? 'unknown', 'partition');
    row(table, 'Nodes', job.nodes.length ? job.nodes.join(', ') : 'unknown', 'nodes');
    row(table, 'Cores', job.cores === null ? 'unknown' : String(job.cores), 'cores');
    row(table, 'Memory', formatBytes(job.memory_bytes), 'memory');
    row(table, 'GPUs', job.gpus === null ? 'unknown' : String(job.gpus), 'gpus');
    row(table, 'Start', formatDateTime(job.start_time), 'start');
    row(table, 'Scheduler end time', formatDateTime(job.end_time), 'end');
    const tr = document.createElement('tr');
    tr.dataset.field = 'remaining';
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = 'Time remaining';
    tr.append(th, this.remainingCell);
    table.appendChild(tr);
    node.appendChild(table);
    for (const m of card.maintenance) {
      const p = document.createElement('p');
      p.className = 'jp-hpc-maintenance';
      p.textContent =
        `Maintenance ${m.name}: ${formatDateTime(m.start)} to ${formatDateTime(m.end)}` +
        (m.crosses_job ? ' (your job ends at its start)' : '');
      node.appendChild(p);
    }
    this.updateRemaining();
  }

  private updateRemaining(): void {
    const remaining = this.model.remainingSeconds();
    this.remainingCell.textContent = remaining === null ? 'unknown' : formatRemaining(remaining);
  }

  private renderAnnouncements(list: IAnnouncement[]): void {
    const node = this.listNode;
    node.replaceChildren();
    const h = document.createElement('h2');
    h.textContent = 'Announcements';
    node.appendChild(h);
    if (!list.length) {
      const p = document.createElement('p');
      p.textContent = 'No announcements.';
      node.appendChild(p);
      return;
    }
    for (const a of list) {
      const article = document.createElement('article');
      article.className = `jp-hpc-announcement jp-hpc-severity-${a.severity}`;
      article.dataset.id = a.id;
      const title = document.createElement('h3');
      title.textContent = a.title;
      const body = document.createElement('div');
      body.className = 'jp-hpc-announcement-body';
      // sanitised by the service already; JupyterLab's sanitizer again, as defence in depth
      body.innerHTML = this.sanitizer.sanitize(a.body_html);
      article.append(title, body);
      if (a.dismissible && !a.required) {
        const button = document.createElement('button');
        button.className = 'jp-mod-styled jp-hpc-dismiss';
        button.textContent = 'Dismiss';
        button.addEventListener('click', async () => {
          button.disabled = true;
          try {
            await dismissAnnouncement(a.id);
            await this.model.refresh();
          } catch (err) {
            button.disabled = false;
            console.warn('jupyterhub-hpc: dismiss', err);
          }
        });
        article.appendChild(button);
      }
      node.appendChild(article);
    }
  }
}
