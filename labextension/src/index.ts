// @jupyterhub-hpc/labextension: the batch job inside JupyterLab (issue 14, docs/lab.md).
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, ISanitizer, MainAreaWidget, Sanitizer } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Signal } from '@lumino/signaling';

import { ActivityReporter } from './activity';
import { newBatchKernel } from './batchkernel';
import { KernelJobNotices } from './kerneljobs';
import { KernelJobStatusItem } from './kernelstatus';
import { CardModel } from './model';
import { ModuleFailures, ModulesPanel, recordModuleSets } from './modules';
import { Notices } from './notices';
import { CardPanel, ISanitizerLike } from './panel';
import { JobStatusItem } from './status';

const OPEN = 'jupyterhub-hpc:open-card';
const STOP = 'jupyterhub-hpc:stop-server';
const MODULES = 'jupyterhub-hpc:open-modules';
const NEW_BATCH_KERNEL = 'jupyterhub-hpc:new-batch-kernel';
const CATEGORY = 'Batch job';

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@jupyterhub-hpc/labextension:plugin',
  description: 'The batch job card, walltime warnings and announcements of jupyterhub-hpc.',
  autoStart: true,
  optional: [IStatusBar, ICommandPalette, ISanitizer, ILabShell, INotebookTracker],
  activate: (
    app: JupyterFrontEnd,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null,
    sanitizer: ISanitizerLike | null,
    labShell: ILabShell | null,
    notebooks: INotebookTracker | null
  ) => {
    const model = new CardModel();
    const safe = sanitizer ?? new Sanitizer();
    let panel: MainAreaWidget<CardPanel> | null = null;

    const openPanel = (): void => {
      if (!panel || panel.isDisposed) {
        panel = new MainAreaWidget({ content: new CardPanel(model, safe) });
        panel.id = 'jupyterhub-hpc-card-panel';
        panel.title.label = 'Batch job';
        panel.title.caption = 'The batch job of this server and the announcements';
      }
      if (!panel.isAttached) {
        app.shell.add(panel, 'main');
      }
      app.shell.activateById(panel.id);
      void model.refresh();
    };
    const activity = new ActivityReporter(); // user input for the idle policy (activity.ts)
    const notices = new Notices(model, app.commands, openPanel, () => void activity.report());

    app.commands.addCommand(OPEN, {
      label: 'Show the batch job card',
      caption: 'Job id, nodes, resources, end time and announcements',
      execute: openPanel
    });
    app.commands.addCommand(STOP, {
      label: 'Stop this server and release the batch job…',
      isEnabled: () => model.card !== null,
      execute: () => notices.confirmStop()
    });
    // software modules (issue 15): the panel, failed loads as notifications, notebooks' module sets
    let modulesPanel: MainAreaWidget<ModulesPanel> | null = null;
    const specs = app.serviceManager.kernelspecs;
    app.commands.addCommand(MODULES, {
      label: 'Software modules',
      caption: 'Search the module catalogue, make kernels from module sets, collections',
      execute: () => {
        if (!modulesPanel || modulesPanel.isDisposed) {
          const content = new ModulesPanel(app.commands, () => specs.refreshSpecs());
          modulesPanel = new MainAreaWidget({ content });
          modulesPanel.id = 'jupyterhub-hpc-modules-panel';
          modulesPanel.title.label = 'Software modules';
        } else {
          void modulesPanel.content.refresh();
        }
        if (!modulesPanel.isAttached) {
          app.shell.add(modulesPanel, 'main');
        }
        app.shell.activateById(modulesPanel.id);
      }
    });
    const kernelNames = (): Map<string, string> => {
      const names = new Map<string, string>();
      for (const s of app.serviceManager.sessions.running()) {
        if (s.kernel) {
          names.set(s.kernel.id, s.path);
        }
      }
      return names;
    };
    const failures = new ModuleFailures(kernelNames, status => {
      if (modulesPanel && !modulesPanel.isDisposed) {
        modulesPanel.content.setStatus(status);
      }
    });
    if (notebooks) {
      recordModuleSets(notebooks, specs);
    }
    // kernels as batch jobs (issue 16): the queued kernel job's reason, then its node and end
    const kernelJobs = new KernelJobNotices(specs, app.serviceManager.kernels, notebooks);
    app.commands.addCommand(NEW_BATCH_KERNEL, {
      label: 'New batch kernel…',
      caption: 'A kernel that runs as its own batch job with the resources you pick',
      execute: () => newBatchKernel(() => specs.refreshSpecs())
    });
    palette?.addItem({ command: NEW_BATCH_KERNEL, category: 'Kernel' });
    palette?.addItem({ command: MODULES, category: 'Software modules' });
    palette?.addItem({ command: OPEN, category: CATEGORY });
    palette?.addItem({ command: STOP, category: CATEGORY });

    if (statusBar) {
      const item = new JobStatusItem(model, openPanel);
      const activeChanged = new Signal<JobStatusItem, void>(item);
      let wasActive = item.active;
      model.changed.connect(() => {
        if (item.active !== wasActive) {
          wasActive = item.active;
          activeChanged.emit();
        }
      });
      statusBar.registerStatusItem('@jupyterhub-hpc/labextension:status', {
        item,
        align: 'left',
        rank: 1000,
        isActive: () => item.active,
        activeStateChanged: activeChanged
      });
    }
    if (statusBar && notebooks) {
      // the batch kernel of the notebook in front: its job's node and time left (issue 16)
      const kernelItem = new KernelJobStatusItem(notebooks, specs, model);
      statusBar.registerStatusItem('@jupyterhub-hpc/labextension:kernel-status', {
        item: kernelItem,
        align: 'left',
        rank: 1001,
        isActive: () => kernelItem.active,
        activeStateChanged: kernelItem.activeStateChanged
      });
    }
    void labShell; // ILabShell is optional: the panel also works in other shells (Notebook 7)

    model.start();
    activity.start();
    // toasts emitted before the shell is restored land in the notification centre only
    void app.restored.then(() => {
      notices.start();
      failures.start();
      kernelJobs.start();
    });
  }
};

export default plugin;
