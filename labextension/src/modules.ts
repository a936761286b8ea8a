// Software modules (issue 15): the modules panel (search the catalogue, the server's modules with
// the sticky ones marked, each kernel's modules, a kernel made or changed from a module set,
// collections), a notification with the module tool's own message when a kernel's modules fail
// to load, and the module set of our kernels recorded in the notebook's metadata.
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { KernelSpec } from '@jupyterlab/services';
import { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';

import {
  IModule,
  IModulesInfo,
  IModuleSet,
  IStatus,
  createKernel,
  deleteCollection,
  deleteKernel,
  fetchModules,
  fetchStatus,
  saveCollection,
  updateKernel
} from './modulesapi';

const POLL_MS = 4000;
const MAX_SHOWN = 200;
const MAX_MESSAGE = 140;
const SEEN_KEY = 'jupyterhub-hpc:module-failures-seen';
/** The notebook metadata key (metadata.jupyterhub_hpc.modules). */
export const METADATA_KEY = 'jupyterhub_hpc';

function clip(text: string): string {
  return text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE - 1)}…` : text;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function button(label: string, action: string, onClick: () => void, title = ''): HTMLButtonElement {
  const b = el('button', { className: 'jp-mod-styled jp-hpc-modules-button', textContent: label, title });
  b.dataset.action = action;
  b.addEventListener('click', onClick);
  return b;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The module set of a kernelspec of ours (its metadata), or null for other kernels. */
export function moduleSetOf(spec: KernelSpec.ISpecModel | undefined): IModuleSet | null {
  const meta = (spec?.metadata as { [key: string]: unknown } | undefined)?.[METADATA_KEY] as
    | { modules?: unknown; purge?: unknown }
    | undefined;
  if (!meta || !Array.isArray(meta.modules)) {
    return null;
  }
  return { modules: meta.modules.map(String), purge: meta.purge === true };
}

export class ModulesPanel extends Widget {
  info: IModulesInfo | null = null;
  private selected: string[] = [];
  private purge = false;
  private editing: { name: string; display_name: string } | null = null;
  private query = '';
  /** what was typed in the name fields (kept across re-renders) */
  private draftName = '';
  private draftCollection = '';
  private message = '';
  private readonly search = el('input', {
    type: 'search',
    className: 'jp-mod-styled jp-hpc-modules-search',
    placeholder: 'Search modules (name or description)'
  });
  private readonly body = el('div');

  constructor(
    private readonly commands: CommandRegistry,
    private readonly specsChanged: () => Promise<void>
  ) {
    super();
    this.id = 'jupyterhub-hpc-modules';
    this.addClass('jp-hpc-panel');
    this.addClass('jp-hpc-modules');
    this.title.label = 'Software modules';
    this.title.closable = true;
    this.search.addEventListener('input', () => {
      this.query = this.search.value.trim().toLowerCase();
      this.render();
    });
    this.node.append(el('h2', { textContent: 'Software modules' }), this.search, this.body);
    void this.refresh();
  }

  async refresh(): Promise<void> {
    try {
      this.info = await fetchModules();
    } catch (err) {
      this.message = `Could not read the modules: ${errorText(err)}`;
    }
    this.render();
  }

  /** The running kernels' modules, from the watcher's polls. */
  setStatus(status: IStatus): void {
    if (this.info && JSON.stringify(this.info.running) !== JSON.stringify(status.running)) {
      this.info = { ...this.info, ...status };
      this.render();
    }
  }

  private render(): void {
    const info = this.info;
    this.body.replaceChildren();
    if (this.message) {
      this.body.append(el('p', { className: 'jp-hpc-modules-message', textContent: this.message }));
    }
    if (!info) {
      this.body.append(el('p', { textContent: 'Loading…' }));
      return;
    }
    this.body.append(this.serverSection(info));
    if (!info.available) {
      this.body.append(el('p', { className: 'jp-hpc-modules-error', textContent: `No module catalogue: ${info.error}` }));
    } else {
      this.body.append(this.catalogueSection(info.catalogue ?? []), this.kernelForm());
    }
    this.body.append(this.collectionsSection(info), this.kernelsSection(info), this.runningSection(info));
  }

  private serverSection(info: IModulesInfo): HTMLElement {
    const list = el('ul', { className: 'jp-hpc-modules-server' });
    const names = [...new Set([...info.server.sticky, ...info.server.modules])];
    for (const name of names) {
      const sticky = info.server.sticky.includes(name);
      const li = el('li', { textContent: name });
      li.dataset.module = name;
      if (sticky) {
        li.classList.add('jp-hpc-sticky');
        li.title = 'Sticky: loaded for the whole server and in every kernel, it cannot be unloaded';
        li.append(el('span', { className: 'jp-hpc-badge', textContent: 'sticky' }));
      }
      list.append(li);
    }
    const section = el('section', {}, el('h3', { textContent: "This server's modules" }));
    section.append(names.length ? list : el('p', { textContent: 'None.' }));
    if (info.system) {
      section.append(el('p', { textContent: `Module system: ${info.system}${info.cluster ? ` on ${info.cluster}` : ''}` }));
    }
    return section;
  }

  private catalogueSection(catalogue: IModule[]): HTMLElement {
    const q = this.query;
    const matches = catalogue.filter(
      m => !q || m.name.toLowerCase().includes(q) || m.description.toLowerCase().includes(q)
    );
    const list = el('ul', { className: 'jp-hpc-modules-catalogue' });
    for (const m of matches.slice(0, MAX_SHOWN)) {
      const box = el('input', { type: 'checkbox', checked: this.selected.includes(m.name) });
      box.dataset.module = m.name;
      box.addEventListener('change', () => {
        this.selected = box.checked ? [...this.selected, m.name] : this.selected.filter(n => n !== m.name);
        this.render();
      });
      const label = el('label', {}, box, ` ${m.name}`);
      if (m.default) {
        label.append(el('span', { className: 'jp-hpc-badge', textContent: 'default' }));
      }
      const li = el('li', {}, label, el('span', { className: 'jp-hpc-module-description', textContent: ` ${m.description}` }));
      li.dataset.module = m.name;
      list.append(li);
    }
    const section = el('section', {}, el('h3', { textContent: `Catalogue (${matches.length} of ${catalogue.length})` }));
    if (this.info?.catalogue_error) {
      section.append(
        el('p', { className: 'jp-hpc-modules-error', textContent: `The hub could not read the catalogue: ${this.info.catalogue_error}` })
      );
    }
    section.append(list);
    if (matches.length > MAX_SHOWN) {
      section.append(el('p', { textContent: `${matches.length - MAX_SHOWN} more: refine the search.` }));
    }
    return section;
  }

  private kernelForm(): HTMLElement {
    const section = el('section', { className: 'jp-hpc-modules-form' });
    section.append(el('h3', { textContent: this.editing ? `Edit kernel “${this.editing.display_name}”` : 'New kernel' }));
    const chosen = el('p', { className: 'jp-hpc-modules-selected' });
    chosen.textContent = this.selected.length ? `Selected: ${this.selected.join(', ')}` : 'Selected: none (tick modules above)';
    const name = el('input', {
      className: 'jp-mod-styled jp-hpc-modules-name',
      placeholder: 'Kernel name, e.g. Python 3.11 + PyTorch',
      value: this.draftName || (this.editing?.display_name ?? '')
    });
    name.addEventListener('input', () => (this.draftName = name.value));
    const purge = el('input', { type: 'checkbox', checked: this.purge, className: 'jp-hpc-modules-purge' });
    purge.addEventListener('change', () => (this.purge = purge.checked));
    section.append(chosen, name, el('label', {}, purge, ' Purge the server’s modules first (sticky ones stay)'));
    const set = (): IModuleSet => ({ modules: this.selected, purge: this.purge });
    if (this.editing) {
      const editing = this.editing;
      section.append(
        el('p', {
          className: 'jp-hpc-modules-warning',
          textContent: 'Applying restarts every running kernel of this kind with the new modules: their variables and state are lost.'
        }),
        button('Apply and restart its kernels', 'apply', () =>
          void this.act(async () => {
            const result = await updateKernel(editing.name, name.value || editing.display_name, set());
            this.editing = null;
            return `Kernel “${result.display_name}” changed; restarted ${result.restarted.length} running kernel(s).`;
          })
        ),
        button('Cancel', 'cancel', () => {
          this.editing = null;
          this.render();
        })
      );
    } else {
      section.append(
        button('Create kernel', 'create', () =>
          void this.act(async () => {
            const spec = await createKernel(name.value, set());
            return `Kernel “${spec.display_name}” created: pick it for a notebook, or “New notebook” below.`;
          })
        )
      );
    }
    const collection = el('input', {
      className: 'jp-mod-styled jp-hpc-collection-name',
      placeholder: 'Collection name',
      value: this.draftCollection
    });
    collection.addEventListener('input', () => (this.draftCollection = collection.value));
    section.append(
      el('div', {}, collection, button('Save as collection', 'save-collection', () =>
        void this.act(async () => {
          await saveCollection(collection.value, set());
          return `Collection “${collection.value}” saved.`;
        })
      ))
    );
    return section;
  }

  private collectionsSection(info: IModulesInfo): HTMLElement {
    const section = el('section', {}, el('h3', { textContent: 'Collections' }));
    const names = Object.keys(info.collections).sort();
    if (!names.length) {
      section.append(el('p', { textContent: 'No saved collections.' }));
    }
    for (const cname of names) {
      const c = info.collections[cname];
      const row = el('div', { className: 'jp-hpc-collection', textContent: `${cname}: ${c.modules.join(', ')} ` });
      row.dataset.collection = cname;
      row.append(
        button('Restore', 'restore', () => {
          this.selected = [...c.modules];
          this.purge = c.purge;
          this.render();
        }, 'Select these modules'),
        button('Delete', 'delete-collection', () => void this.act(async () => {
          await deleteCollection(cname);
          return `Collection “${cname}” deleted.`;
        }))
      );
      section.append(row);
    }
    return section;
  }

  private kernelsSection(info: IModulesInfo): HTMLElement {
    const section = el('section', {}, el('h3', { textContent: 'Kernels with modules' }));
    for (const spec of info.kernelspecs) {
      const row = el('div', { className: 'jp-hpc-kernelspec' });
      row.dataset.kernelspec = spec.name;
      row.append(
        el('strong', { textContent: spec.display_name }),
        ` (${spec.kind === 'preset' ? 'preset' : 'yours'}): ${spec.modules.join(', ') || 'no modules'}${spec.purge ? ', purged first' : ''} `,
        button('New notebook', 'new-notebook', () =>
          // the kernelspec may be new to this tab (made in another one): refresh the list first
          void this.specsChanged().then(() => this.commands.execute('notebook:create-new', { kernelName: spec.name }))
        )
      );
      if (spec.kind === 'user') {
        row.append(
          button('Edit', 'edit', () => {
            this.editing = { name: spec.name, display_name: spec.display_name };
            this.draftName = '';
            this.selected = [...spec.modules];
            this.purge = spec.purge;
            this.render();
          }),
          button('Delete', 'delete-kernel', () => void this.act(async () => {
            await deleteKernel(spec.name);
            return `Kernel “${spec.display_name}” deleted (running ones keep running).`;
          }))
        );
      }
      section.append(row);
    }
    return section;
  }

  private runningSection(info: IModulesInfo): HTMLElement {
    const section = el('section', {}, el('h3', { textContent: 'Running kernels' }));
    if (!info.running.length) {
      section.append(el('p', { textContent: 'No running kernel with modules.' }));
    }
    for (const k of info.running) {
      const row = el('div', {
        className: 'jp-hpc-running-kernel',
        textContent: `${k.display_name} (${k.id.slice(0, 8)}, ${k.execution_state ?? 'unknown'}): ${k.modules.join(', ')}`
      });
      row.dataset.kernelId = k.id;
      section.append(row);
    }
    return section;
  }

  private async act(work: () => Promise<string>): Promise<void> {
    try {
      this.message = await work();
      this.draftName = this.draftCollection = '';
      await this.specsChanged();
    } catch (err) {
      this.message = `Failed: ${errorText(err)}`;
    }
    await this.refresh();
  }
}

/** Polls the failed loads and shows each once per tab with the tool's message. */
export class ModuleFailures {
  private readonly seen: Set<string>;
  private timer: number | undefined;

  constructor(
    private readonly names: () => Map<string, string>,
    private readonly onStatus: (status: IStatus) => void
  ) {
    let keys: string[] = [];
    try {
      keys = JSON.parse(window.sessionStorage.getItem(SEEN_KEY) ?? '[]');
    } catch {
      keys = [];
    }
    this.seen = new Set(Array.isArray(keys) ? keys : []);
  }

  start(): void {
    void this.poll();
  }

  async poll(): Promise<void> {
    window.clearTimeout(this.timer);
    try {
      const status = await fetchStatus();
      this.onStatus(status);
      for (const f of status.failures) {
        const key = `${f.kernel_id}:${f.message}`;
        if (this.seen.has(key)) {
          continue;
        }
        this.seen.add(key);
        window.sessionStorage.setItem(SEEN_KEY, JSON.stringify([...this.seen].slice(-200)));
        const where = this.names().get(f.kernel_id);
        // the tool's own words first (JupyterLab cuts toasts at 140 characters; Details has all)
        const text = `The kernel's modules did not load: ${f.message.replace(/\s+/g, ' ').trim()}`;
        Notification.error(clip(text), {
          autoClose: false,
          data: { source: 'jupyterhub-hpc', kind: 'module-load', kernel: f.kernel_id },
          actions: [
            {
              label: 'Details',
              callback: () =>
                void showDialog({
                  title: `The kernel${where ? ` of ${where}` : ''} could not load its modules`,
                  body: new Widget({
                    node: el('pre', {
                      className: 'jp-hpc-module-failure',
                      textContent: `${f.modules.join(' ')}\n\n${f.message}`
                    })
                  }),
                  buttons: [Dialog.okButton()]
                })
            }
          ]
        });
      }
    } catch {
      // no modules routes here (another server) or a failed poll: try again later
    }
    this.timer = window.setTimeout(() => void this.poll(), POLL_MS);
  }
}

/** Records our kernels' module sets in metadata.jupyterhub_hpc of their notebooks, when they are
 * saved (so that opening a notebook or starting its kernel does not make it "unsaved"); a notebook
 * saved with another kernel loses a set recorded before. */
export function recordModuleSets(tracker: INotebookTracker, specs: KernelSpec.IManager): void {
  const record = (panel: NotebookPanel): void => {
    const name = panel.sessionContext.session?.kernel?.name;
    const model = panel.content.model;
    if (!name || !model) {
      return;
    }
    const set = moduleSetOf(specs.specs?.kernelspecs[name]);
    if (!set) {
      if (model.getMetadata(METADATA_KEY) !== undefined) {
        model.deleteMetadata(METADATA_KEY);
      }
      return;
    }
    const old = (model.getMetadata(METADATA_KEY) ?? {}) as { [key: string]: unknown };
    const value = { ...old, modules: set.modules, purge: set.purge, kernelspec: name };
    if (JSON.stringify(old) !== JSON.stringify(value)) {
      model.setMetadata(METADATA_KEY, value);
    }
  };
  tracker.widgetAdded.connect((_, panel) => {
    // 'started' comes before the document's content is taken for the save
    panel.context.saveState.connect((_, state) => {
      if (state === 'started') {
        record(panel);
      }
    });
  });
}
